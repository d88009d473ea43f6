//! The bindings as the apps use them: Kotlin and Python scripts run against bindings generated
//! from the library this test run built, syncing with a real `shidao-server` on loopback.
//!
//! They need `kotlinc` on PATH, the JNA jar in `CLASSPATH` and `-Djna.nosys=false` in
//! `JAVA_OPTS` (Debian's JNA), and `python3`: `scripts/test.sh` sources
//! `scripts/install-test-deps.sh`, which installs them and exports that environment. Swift has no
//! compiler on Linux; its sources are generated and checked below, and
//! `UNIFFI_TESTS_DISABLE_EXTENSIONS` (as uniffi's own harness reads it) can switch a language off,
//! which is said aloud.
//!
//! How one script runs: the test starts the relay in this process (`common::Loopback`: programme,
//! school, two inspectors with one-time codes, a control endpoint that revokes a device, a server
//! that never answers), generates the bindings with `uniffi::generate` from the library cargo
//! built for this run (beside this test binary, in `deps/`), copies the library next to them, and
//! runs `kotlinc -script` or `python3` with the relay's address and codes in the child's
//! environment (`SHIDAO_TEST_*`). The generated Kotlin of `async` calls needs kotlinx-coroutines,
//! which ships with kotlinc (`lib/kotlinx-coroutines-core-jvm.jar`).
//!
//! uniffi's own harness (`uniffi::kotlin_test`) is not used: it runs `cargo test --release` of
//! the package to find a library, a second whole build (minutes, and gigabytes of disk) of a
//! library other than the one under test.

mod common;

use std::path::{Path, PathBuf};
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

/// The library cargo built for this test run: beside this binary, in deps/ (the copy in
/// target/<profile>/ is refreshed only by `cargo build`, and may be stale).
fn built_library() -> PathBuf {
    use std::env::consts::{DLL_EXTENSION, DLL_PREFIX};
    let exe = std::env::current_exe().expect("test binary");
    let library = exe.parent().expect("deps folder").join(format!("{DLL_PREFIX}shidao_bindings.{DLL_EXTENSION}"));
    assert!(library.is_file(), "{} was not built with this test", library.display());
    library
}

/// A fresh folder under the test's temp dir with the library and its generated `language`
/// bindings in it.
fn generate(language: uniffi::TargetLanguage, folder: &str) -> PathBuf {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(folder);
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let library = built_library();
    let copy = out_dir.join(library.file_name().expect("file name"));
    std::fs::copy(&library, &copy).expect("copy the library");
    uniffi::generate(uniffi::GenerateOptions {
        languages: vec![language],
        source: copy.to_str().expect("UTF-8 path").into(),
        out_dir: out_dir.to_str().expect("UTF-8 path").into(),
        ..Default::default()
    })
    .expect("generate the bindings");
    out_dir
}

/// Runs `command` to the end, echoing its output (cargo shows it when the test fails).
fn run(what: &str, command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}; its output is above)", out.status);
}

#[test]
fn kotlin_app_flow() {
    if skipped("kts") {
        return;
    }
    let out_dir = generate(uniffi::TargetLanguage::Kotlin, "kotlin-flow");
    let mut classpath = std::env::var("CLASSPATH").unwrap_or_default();
    if let Some(jar) = coroutines_jar().filter(|jar| !classpath.split(':').any(|p| p == jar)) {
        classpath = if classpath.is_empty() { jar } else { format!("{classpath}:{jar}") };
    }
    // The generated code compiles without a warning, as the app's build would demand.
    let jar = out_dir.join("shidao.jar");
    run(
        "kotlinc (the generated bindings)",
        Command::new("kotlinc")
            .args(["-nowarn", "-Werror", "-d"])
            .arg(&jar)
            .args(["-classpath", &classpath])
            .arg(out_dir.join("uniffi/shidao/shidao.kt")),
    );
    let java_opts = format!("{} -Djna.library.path={}", std::env::var("JAVA_OPTS").unwrap_or_default(), out_dir.display());
    let server = common::Loopback::start();
    run(
        "the Kotlin app flow",
        Command::new("kotlinc")
            .args(["-nowarn", "-J-ea", "-Werror", "-classpath"])
            .arg(format!("{}:{classpath}", jar.display()))
            .arg("-script")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bindings/app_flow.kts"))
            .envs(server.env())
            .env("JAVA_OPTS", java_opts),
    );
}

#[test]
fn python_app_flow() {
    if skipped("py") {
        return;
    }
    let out_dir = generate(uniffi::TargetLanguage::Python, "python-flow");
    let server = common::Loopback::start();
    run(
        "the Python app flow",
        Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bindings/app_flow.py"))
            .current_dir(&out_dir)
            .env("PYTHONPATH", &out_dir)
            .envs(server.env()),
    );
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

/// Swift cannot be compiled here, but its sources come from the same generator and library as
/// the Kotlin and Python ones (what `bindings/generate.sh` runs): they must generate.
#[test]
fn swift_sources_generate_from_the_built_library() -> Result<(), Box<dyn std::error::Error>> {
    let library = built_library();
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
        "class FieldEditor",
        "func setInteger(value: Int64) throws",
        "enum AnswerValue",
        "enum ShidaoError",
        "protocol ChangeListener",
        "protocol SyncProgress",
        "class SyncCancel",
        "func sync(progress: SyncProgress? = nil, cancel: SyncCancel? = nil) async throws -> SyncReport",
        "func enrol(serverUrl: String, oneTimeCode: String, deviceName: String, serverCertificate: String? = nil) async throws -> Enrolment",
    ] {
        // Unformatted output: compare without spaces.
        let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert!(squeeze(&swift).contains(&squeeze(api)), "generated Swift lacks `{api}`");
    }
    assert!(out_dir.join("shidaoFFI.h").is_file() && out_dir.join("shidaoFFI.modulemap").is_file());
    Ok(())
}
