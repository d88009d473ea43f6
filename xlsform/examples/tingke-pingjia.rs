//! Writes the 听课评价表 (lesson evaluation) XLSForm workbook that `tests/forms/tingke-pingjia.xlsx`
//! (at the repository root) is a copy of:
//! `cargo run -p shidao-xlsform --example tingke-pingjia -- tests/forms/tingke-pingjia.xlsx`.
//!
//! With `--v2` it writes the next version of the form (one question more).
//! The workbook itself is defined once, in `tests/support/mod.rs`; this only saves it.

#[path = "../tests/support/mod.rs"]
mod support;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let v2 = args.iter().any(|a| a == "--v2");
    let path = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "tingke-pingjia.xlsx".to_string());
    let bytes = if v2 { support::tingke_pingjia_v2() } else { support::tingke_pingjia() };
    std::fs::write(&path, &bytes)?;
    println!("wrote {path} ({} bytes)", bytes.len());
    Ok(())
}
