//! The bindings as the apps use them: Kotlin and Python scripts run against the generated code
//! and the built library by uniffi's foreign-language test harness.
//!
//! The harness needs `kotlinc` on PATH, the JNA jar in `CLASSPATH` and `-Djna.nosys=false` in
//! `JAVA_OPTS` (Debian's JNA), and `python3`: `scripts/test.sh` sources
//! `scripts/install-test-deps.sh`, which installs them and exports that environment. Swift has no
//! compiler on Linux; `UNIFFI_TESTS_DISABLE_EXTENSIONS=swift` is set there too.

uniffi::build_foreign_language_testcases!("tests/bindings/app_flow.kts", "tests/bindings/app_flow.py");

/// Says what to do when the environment is not set up, instead of a bare "kotlinc not found".
#[test]
fn foreign_test_environment_is_set_up() {
    let path = std::env::var("PATH").unwrap_or_default();
    let kotlinc = std::env::split_paths(&path).any(|dir| dir.join("kotlinc").is_file());
    let classpath = std::env::var("CLASSPATH").unwrap_or_default();
    let java_opts = std::env::var("JAVA_OPTS").unwrap_or_default();
    assert!(
        kotlinc && classpath.contains("jna") && java_opts.contains("jna.nosys=false"),
        "the Kotlin test needs kotlinc on PATH (found: {kotlinc}), JNA in CLASSPATH ({classpath:?}) and \
         -Djna.nosys=false in JAVA_OPTS ({java_opts:?}): run scripts/test.sh, or \
         `. scripts/install-test-deps.sh` before cargo test"
    );
}

/// Swift cannot be compiled here, but its sources come from the same generator and library as
/// the Kotlin and Python ones (what `bindings/generate.sh` runs): they must generate.
#[test]
fn swift_sources_generate_from_the_built_library() -> Result<(), Box<dyn std::error::Error>> {
    use std::env::consts::{DLL_EXTENSION, DLL_PREFIX};
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).ok_or("test binary outside target/<profile>/deps")?;
    let library = profile_dir.join(format!("{DLL_PREFIX}shidao_bindings.{DLL_EXTENSION}"));
    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("swift-generated");
    let _ = std::fs::remove_dir_all(&out_dir);
    uniffi::generate(uniffi::GenerateOptions {
        languages: vec![uniffi::TargetLanguage::Swift],
        source: library.to_str().ok_or("library path is not UTF-8")?.into(),
        out_dir: out_dir.to_str().ok_or("out dir is not UTF-8")?.into(),
        ..Default::default()
    })?;
    let swift = std::fs::read_to_string(out_dir.join("shidao.swift"))?;
    for api in ["class ShidaoStore", "class FormRecord", "enum AnswerValue", "enum ShidaoError", "protocol ChangeListener"] {
        assert!(swift.contains(api), "generated Swift lacks `{api}`");
    }
    assert!(out_dir.join("shidaoFFI.h").is_file() && out_dir.join("shidaoFFI.modulemap").is_file());
    Ok(())
}
