#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, scenario and end-to-end tests.
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install-test-deps.sh # kotlinc, JNA, python3, chromium, chromedriver, openssl; exports CLASSPATH, JAVA_OPTS
cargo test --workspace --locked "$@"
