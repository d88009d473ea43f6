#!/usr/bin/env bash
# Measures the cost of one answer edit through the Kotlin binding against the same edit in Rust.
#
# Usage: bindings/bench/edit_cost.sh
#
# 1. Builds the release library with the `bench` feature (a Rust-side timed loop Kotlin can call)
#    and generates its Kotlin bindings into target/edit-cost/ (not the app's generated/ folder).
# 2. Runs the Rust example edit_cost.rs: the edit straight on the core against the bindings' Rust
#    API (the thin layer's own cost, no FFI).
# 3. Runs edit_cost.kts on the JVM through JNA: Kotlin `setAnswer` and `FieldEditor.setInteger`
#    calls and the same edits timed inside Rust, interleaved in one process; the difference is the
#    binding's cost per call. Its last line is key=value.
# Needs what scripts/install-test-deps.sh installs.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/install-test-deps.sh

out=target/edit-cost
mkdir -p "$out/lib"
cargo build --release -q -p shidao-bindings --features cli,bench --lib --bin uniffi-bindgen
# Another build without the feature would overwrite target/release/: keep this one aside.
cp target/release/libshidao_bindings.so "$out/lib/"
rm -rf "$out/kotlin"
target/release/uniffi-bindgen generate --no-format --library "$out/lib/libshidao_bindings.so" \
    --language kotlin --out-dir "$out/kotlin" >/dev/null
# The generated Kotlin of the async calls (sync, enrol) needs kotlinx-coroutines, which ships
# with kotlinc.
coroutines="$(dirname "$(dirname "$(readlink -f "$(command -v kotlinc)")")")/lib/kotlinx-coroutines-core-jvm.jar"
CLASSPATH="$CLASSPATH:$coroutines"
kotlinc -nowarn -d "$out/shidao.jar" -classpath "$CLASSPATH" "$out/kotlin/uniffi/shidao/shidao.kt"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
cargo run --release -q -p shidao-bindings --example edit-cost
echo "load average between: $(cut -d' ' -f1-3 /proc/loadavg)"
# Last, so that its final key=value line ends the output.
JAVA_OPTS="$JAVA_OPTS -Djna.library.path=$PWD/$out/lib" \
    kotlinc -nowarn -classpath "$out/shidao.jar:$CLASSPATH" -script bindings/bench/edit_cost.kts
