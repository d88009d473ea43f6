#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another, and prints the
# final libFuzzer figures of each. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Crashes land in fuzz/artifacts/<target>/; copy each into
# fuzz/regressions/<target>/ once fixed, where tests/tests/fuzz_regressions.rs replays it in
# the ordinary test run.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=${*:-protocol envelope template expression ingest}

cargo +nightly fuzz build -O >/dev/null

# Seed corpora from the product's own material: built-in templates, their expressions, and
# protocol messages.
mkdir -p corpus/template corpus/expression corpus/protocol corpus/envelope corpus/ingest logs
cp ../core/templates/*.json corpus/template/
python3 - <<'PY'
import base64, glob, gzip, json, os
n = 0
def walk(x):
    global n
    if isinstance(x, dict):
        for k, v in x.items():
            if isinstance(v, str) and k in ("compute", "required", "expr", "relevant", "constraint"):
                n += 1
                open(f"corpus/expression/t{n}", "w").write(v)
            walk(v)
    elif isinstance(x, list):
        for v in x:
            walk(v)
for f in glob.glob("../core/templates/*.json"):
    walk(json.load(open(f)))
req = {"protocol": 1, "request_id": "r1", "cursor": 7, "scope": "v1", "reference": None,
       "push": [{"record": "00000000-0000-4000-8000-000000000001",
                 "changes": base64.b64encode(b"\x85\x6f\x4a\x83" + bytes(40)).decode(), "heads": ["ab" * 32]}],
       "max_pull_bytes": 1048576}
resp = {"results": [{"record": "r", "outcome": "refused", "code": "sealed", "reason": "x"}],
        "pulls": [{"record": "r", "changes": "AAAA"}], "cursor": 9, "more": False}
for i, m in enumerate([req, resp]):
    raw = json.dumps(m).encode()
    open(f"corpus/protocol/m{i}", "wb").write(raw)
    open(f"corpus/protocol/m{i}.gz", "wb").write(gzip.compress(raw))
for t in range(3):
    for mode in range(8):
        open(f"corpus/ingest/s{t}{mode}", "wb").write(bytes([t, mode % 3, mode]) + os.urandom(64))
PY

for t in $targets; do
  mkdir -p "artifacts/$t"
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=4096 -max_len=65536 -timeout=30 \
    >"logs/$t.log" 2>&1 || echo "$t: crashed, see fuzz/logs/$t.log and fuzz/artifacts/$t/"
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo 0)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*' || echo 0)
  echo "fuzz target=$t seconds=$secs runs=$runs execs_per_sec=$speed coverage=$cov crashes=$(ls "artifacts/$t" | wc -l)"
done
rm -rf /dev/shm/shidao-fuzz-* 2>/dev/null || true
