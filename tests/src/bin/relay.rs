//! The `shidao-server` command, built in the test package so tests can run it as a process.

fn main() -> std::process::ExitCode {
    shidao_server::cli::main()
}
