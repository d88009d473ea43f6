//! `shidao-server`: see [`shidao_server::cli`].

fn main() -> std::process::ExitCode {
    shidao_server::cli::main()
}
