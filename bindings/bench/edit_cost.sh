#!/usr/bin/env bash
# Measures the cost of one answer edit through the Kotlin binding against the same edit in Rust.
#
# Usage: bindings/bench/edit_cost.sh
#
# Builds the release library and Kotlin bindings (bindings/generate.sh --release), compiles them
# with kotlinc, runs edit_cost.kts on the JVM (JNA) and the Rust example edit_cost.rs, which
# makes the same edits straight on the core and through the bindings' Rust API. Needs what
# scripts/install-test-deps.sh installs. Overhead per call = Kotlin median - Rust core median.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/install-test-deps.sh

bindings/generate.sh --release >/dev/null
out=target/edit-cost
mkdir -p "$out"
kotlinc -nowarn -d "$out/shidao.jar" -classpath "$CLASSPATH" generated/kotlin/uniffi/shidao/shidao.kt
JAVA_OPTS="$JAVA_OPTS -Djna.library.path=$PWD/target/release" \
    kotlinc -nowarn -classpath "$out/shidao.jar:$CLASSPATH" -script bindings/bench/edit_cost.kts
cargo run --release -q -p shidao-bindings --example edit-cost
