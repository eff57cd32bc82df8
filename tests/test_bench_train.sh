#!/bin/bash
# tests/test_bench_train.sh — `loco bench train` runs end to end on a tiny shape and writes its
# JSON record; bad options are usage errors (exit 2). No timing is asserted.
set -euo pipefail
mkdir -p "$LOCO_TMP"
out="$LOCO_TMP/train.json"
rm -f "$out"
"$LOCO" bench train --layers 2 --width 32 --heads 4 --kv-heads 2 --share 2 --seq 16 --batch 2 \
    --steps 2 --warmup 1 --threads 2 --no-torch --json "$out"
python3 - "$out" <<'PY'
import json, sys
rec = json.load(open(sys.argv[1]))[0]
assert rec["bench"] == "train" and rec["unit"] == "tokens/s", rec
assert rec["value"] > 0 and rec["size"] == 32, rec
assert rec["case"] == "L2-C32-H4-KV2-S2-T16-B2-threads2", rec
PY
set +e
"$LOCO" bench train --width 30 --heads 4 --no-torch > /dev/null 2>&1
[ $? -eq 2 ] || { echo "width not divisible by heads must be a usage error"; exit 1; }
"$LOCO" bench train --steps 0 --no-torch > /dev/null 2>&1
[ $? -eq 2 ] || { echo "--steps 0 must be a usage error"; exit 1; }
"$LOCO" bench train --bogus > /dev/null 2>&1
[ $? -eq 2 ] || { echo "unknown option must be a usage error"; exit 1; }
echo "bench train: OK"
