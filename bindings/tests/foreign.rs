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
