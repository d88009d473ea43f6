//! The bindings as the apps use them: Kotlin and Python scripts run against the generated code
//! and the built library by uniffi's foreign-language test harness, syncing with a real
//! `shidao-server` on loopback.
//!
//! The harness needs `kotlinc` on PATH, the JNA jar in `CLASSPATH` and `-Djna.nosys=false` in
//! `JAVA_OPTS` (Debian's JNA), and `python3`: `scripts/test.sh` sources
//! `scripts/install-test-deps.sh`, which installs them and exports that environment. Swift has no
//! compiler on Linux; `UNIFFI_TESTS_DISABLE_EXTENSIONS=swift` is set there too.
//!
//! How one script runs: `kotlin_app_flow` (or `python_app_flow`) starts the relay in this
//! process (`common::Loopback`: programme, school, two inspectors with one-time codes, a control
//! endpoint that revokes a device, a server that never answers), then runs this same test binary
//! again for one `#[ignore]`d test, `script::kotlin` (or `script::python`), with the relay's
//! address and the codes in its environment (`SHIDAO_TEST_*`). That test calls uniffi's harness
//! (`uniffi::kotlin_test::run_test`), whose `kotlinc`/`python3` subprocess inherits the
//! environment. The second process exists so that the environment is set per script without
//! `std::env::set_var` (unsafe, and racy between tests running in parallel), and so that
//! kotlinx-coroutines (which the generated Kotlin of `async` calls needs) can be added to the
//! script's `CLASSPATH`: it ships with kotlinc, in `lib/kotlinx-coroutines-core-jvm.jar`.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// Says what to do when the environment is not set up, instead of a bare "kotlinc not found".
#[test]
fn foreign_test_environment_is_set_up() {
    let kotlinc = kotlinc().is_some();
    let classpath = std::env::var("CLASSPATH").unwrap_or_default();
    let java_opts = std::env::var("JAVA_OPTS").unwrap_or_default();
    assert!(
        kotlinc && classpath.contains("jna") && java_opts.contains("jna.nosys=false"),
        "the Kotlin test needs kotlinc on PATH (found: {kotlinc}), JNA in CLASSPATH ({classpath:?}) and \
         -Djna.nosys=false in JAVA_OPTS ({java_opts:?}): run scripts/test.sh, or \
         `. scripts/install-test-deps.sh` before cargo test"
    );
    assert!(coroutines_jar().is_some(), "kotlinx-coroutines-core-jvm.jar is neither in CLASSPATH nor in kotlinc's lib/ folder");
}

fn kotlinc() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("kotlinc")).find(|p| p.is_file())
}

/// kotlinx-coroutines for the generated Kotlin's `suspend` functions: from CLASSPATH if it is
/// there, else the copy in the Kotlin distribution kotlinc belongs to.
fn coroutines_jar() -> Option<String> {
    let classpath = std::env::var("CLASSPATH").unwrap_or_default();
    if let Some(jar) = classpath.split(':').find(|p| p.contains("kotlinx-coroutines-core")) {
        return Some(jar.to_string());
    }
    let home = std::fs::canonicalize(kotlinc()?).ok()?.parent()?.parent()?.to_path_buf();
    let jar = home.join("lib").join("kotlinx-coroutines-core-jvm.jar");
    jar.is_file().then(|| jar.display().to_string())
}

/// Starts the relay, then runs `script::<name>` in a second process of this test binary with the
/// relay in its environment.
fn run_with_relay(name: &str) {
    let server = common::Loopback::start();
    let mut classpath = std::env::var("CLASSPATH").unwrap_or_default();
    if let Some(jar) = coroutines_jar().filter(|jar| !classpath.split(':').any(|p| p == jar)) {
        classpath = if classpath.is_empty() { jar } else { format!("{classpath}:{jar}") };
    }
    // JNA finds the library through the dynamic loader's path, which cargo sets to
    // target/<profile>/deps and target/<profile>: put deps/ (the library built for this run,
    // beside this binary) first, as target/<profile>/ holds a copy only `cargo build` refreshes.
    let exe = std::env::current_exe().expect("test binary");
    let deps = exe.parent().expect("deps folder").to_path_buf();
    let loader_path = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let loader_path =
        std::env::join_paths(std::iter::once(deps).chain(std::env::split_paths(&loader_path))).expect("loader path");
    let out = Command::new(exe)
        .args([&format!("script::{name}"), "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .envs(server.env())
        .env("CLASSPATH", classpath)
        .env("LD_LIBRARY_PATH", loader_path)
        .output()
        .expect("run the script's test");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the {name} app flow failed (its output is above)");
}

#[test]
fn kotlin_app_flow() {
    if skipped("kts") {
        return;
    }
    run_with_relay("kotlin");
}

#[test]
fn python_app_flow() {
    if skipped("py") {
        return;
    }
    run_with_relay("python");
}

/// `UNIFFI_TESTS_DISABLE_EXTENSIONS` (comma-separated extensions), as uniffi's own test macro
/// reads it; said aloud, never silent.
fn skipped(ext: &str) -> bool {
    let off = std::env::var("UNIFFI_TESTS_DISABLE_EXTENSIONS").is_ok_and(|v| v.split(',').any(|e| e.trim() == ext));
    if off {
        eprintln!("the .{ext} app flow is disabled by UNIFFI_TESTS_DISABLE_EXTENSIONS");
    }
    off
}

/// The scripts, through uniffi's harness; run by the tests above in a second process (alone
/// they fail: they need the relay's environment).
mod script {
    const NEEDS_RELAY: &str = "run by kotlin_app_flow / python_app_flow, which start the relay";

    fn check_environment() {
        assert!(std::env::var("SHIDAO_TEST_SERVER").is_ok(), "{NEEDS_RELAY}");
    }

    #[test]
    #[ignore = "run by kotlin_app_flow, which starts the relay"]
    fn kotlin() -> uniffi::deps::anyhow::Result<()> {
        check_environment();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bindings/app_flow.kts");
        uniffi::kotlin_test::run_test(env!("CARGO_TARGET_TMPDIR"), env!("CARGO_PKG_NAME"), script)
    }

    #[test]
    #[ignore = "run by python_app_flow, which starts the relay"]
    fn python() -> uniffi::deps::anyhow::Result<()> {
        check_environment();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bindings/app_flow.py");
        uniffi::python_test::run_test(env!("CARGO_TARGET_TMPDIR"), env!("CARGO_PKG_NAME"), script)
    }
}

/// Swift cannot be compiled here, but its sources come from the same generator and library as
/// the Kotlin and Python ones (what `bindings/generate.sh` runs): they must generate.
#[test]
fn swift_sources_generate_from_the_built_library() -> Result<(), Box<dyn std::error::Error>> {
    use std::env::consts::{DLL_EXTENSION, DLL_PREFIX};
    // The library cargo built for this test run sits beside the test binary, in deps/ (the copy
    // in target/<profile>/ is refreshed only by `cargo build`, and may be stale).
    let exe = std::env::current_exe()?;
    let deps = exe.parent().ok_or("test binary without a folder")?;
    let library = deps.join(format!("{DLL_PREFIX}shidao_bindings.{DLL_EXTENSION}"));
    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("swift-generated");
    let _ = std::fs::remove_dir_all(&out_dir);
    uniffi::generate(uniffi::GenerateOptions {
        languages: vec![uniffi::TargetLanguage::Swift],
        source: library.to_str().ok_or("library path is not UTF-8")?.into(),
        out_dir: out_dir.to_str().ok_or("out dir is not UTF-8")?.into(),
        ..Default::default()
    })?;
    let swift = std::fs::read_to_string(out_dir.join("shidao.swift"))?;
    for api in [
        "class ShidaoStore",
        "class FormRecord",
        "enum AnswerValue",
        "enum ShidaoError",
        "protocol ChangeListener",
        "protocol SyncProgress",
        "class SyncCancel",
        "func sync(progress: SyncProgress? = nil, cancel: SyncCancel? = nil) async throws -> SyncReport",
        "func enrol(serverUrl: String, oneTimeCode: String, deviceName: String) async throws -> Enrolment",
    ] {
        // Unformatted output: compare without spaces.
        let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert!(squeeze(&swift).contains(&squeeze(api)), "generated Swift lacks `{api}`");
    }
    assert!(out_dir.join("shidaoFFI.h").is_file() && out_dir.join("shidaoFFI.modulemap").is_file());
    Ok(())
}
