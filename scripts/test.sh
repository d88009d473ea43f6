#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, scenario and end-to-end tests.
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install-test-deps.sh # kotlinc, JNA, python3, chromium, chromedriver, openssl; exports CLASSPATH, JAVA_OPTS
# The build and the tests need a few GB; say how much there is, so that a full disk is recognised.
df -h . 2>/dev/null | awk 'NR == 2 { print "test.sh: " $4 " free on " $6 }' >&2 || true
cargo test --workspace --locked "$@"
