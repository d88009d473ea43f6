//! Writes the 听课评价表 (lesson evaluation) XLSForm workbook that `tests/forms/tingke-pingjia.xlsx`
//! (at the repository root) is a copy of:
//! `cargo run -p shidao-xlsform --example tingke-pingjia -- tests/forms/tingke-pingjia.xlsx`.
//!
//! The workbook itself is defined once, in `tests/support/mod.rs`; this only saves it.

#[path = "../tests/support/mod.rs"]
mod support;

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tingke-pingjia.xlsx".to_string());
    let bytes = support::tingke_pingjia();
    std::fs::write(&path, &bytes)?;
    println!("wrote {path} ({} bytes)", bytes.len());
    Ok(())
}
