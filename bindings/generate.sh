#!/usr/bin/env bash
# Generates the Kotlin, Swift and Python sources of the bindings from the built library, into
# generated/{kotlin,swift,python}/ (build output: ignored by git, never committed).
#
# Usage: bindings/generate.sh [--release]
#
# It builds the library and the workspace's `uniffi-bindgen` binary (feature `cli`), then runs
#   uniffi-bindgen generate --library target/<profile>/libshidao_bindings.so --language <lang> --out-dir generated/<lang>
# for each language. The sources depend only on the exported API, not on the target: the ones
# generated here serve the Android and iOS builds too (see bindings/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
flags=()
if [ "${1:-}" = "--release" ]; then
    profile=release
    flags=(--release)
fi
case "$(uname -s)" in
    Darwin) ext=dylib ;;
    *) ext=so ;;
esac

cargo build "${flags[@]}" -p shidao-bindings --features cli --lib --bin uniffi-bindgen
lib="target/$profile/libshidao_bindings.$ext"
out=generated
for lang in kotlin swift python; do
    rm -rf "${out:?}/$lang"
    "target/$profile/uniffi-bindgen" generate --no-format --library "$lib" --language "$lang" --out-dir "$out/$lang"
done
find "$out/kotlin" "$out/swift" "$out/python" -type f | sort
