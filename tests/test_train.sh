#!/usr/bin/env bash
# Single-process training end to end: outputs, falling loss, bit-identical resume, and the bad
# inputs (config, data, checkpoint, non-finite losses) ending in clear errors.
source "$(dirname "$0")/lib.sh"
cfg=$LOCO_SRC/configs/single.yaml
data=$LOCO_TMP/data
tiny_data "$data"
common=("${TINY[@]}" --set data.path="$data" --set train.eval_every=10)

# 1. a short run writes every output and the loss falls
run=$LOCO_TMP/run
expect_rc 0 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=40 --set run.dir="$run"
for f in config.yaml metrics.jsonl run.json checkpoints/latest; do
  [ -f "$run/$f" ] || fail "missing $f"
done
[ "$(json_get "$run/run.json" status)" = ok ] || fail "run.json status"
[ "$(json_get "$run/run.json" steps)" = 40 ] || fail "run.json steps"
python3 - "$run/metrics.jsonl" <<'PY' || fail "loss did not fall"
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"event":"step"' in l]
evals = [json.loads(l) for l in open(sys.argv[1]) if '"event":"eval"' in l]
assert len(steps) == 40 and all('loss' in s and 'tokens_per_s' in s for s in steps)
first = sum(s['loss'] for s in steps[:5]) / 5
last = sum(s['loss'] for s in steps[-5:]) / 5
assert last < first - 0.5, (first, last)
assert len(evals) == 4 and evals[-1]['val_loss'] < evals[0]['val_loss'], evals
PY
pass "training writes outputs and the loss falls"

# 2. the resolved config loads again and reproduces the run exactly
expect_rc 0 "$LOCO" train "$run/config.yaml" --set run.dir="$LOCO_TMP/again"
[ "$(json_get "$LOCO_TMP/again/run.json" final_loss)" = "$(json_get "$run/run.json" final_loss)" ] \
  || fail "resolved config does not reproduce the run"
pass "resolved config reproduces the run"

# 3. stop at 20 and resume to 40: bit-identical to the uninterrupted run
part=$LOCO_TMP/part
expect_rc 0 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=20 --set optim.total_steps=40 \
  --set run.dir="$part"
expect_rc 0 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=40 --set run.dir="$part" --resume
d1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["workers"][0]["param_digest"])' "$run/run.json")
d2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["workers"][0]["param_digest"])' "$part/run.json")
[ "$d1" = "$d2" ] || fail "resumed run differs: $d1 vs $d2"
pass "resume is bit-identical ($d1)"

# 4. bad inputs
bad=$LOCO_TMP/bad.yaml
printf 'model:\n  n_layer: 2\n  n_heads: 4\n' > "$bad"
expect_rc 2 "$LOCO" train "$bad"
expect_err "$bad:3:3: unknown key 'n_heads' in section model"
expect_rc 2 "$LOCO" train "$cfg" --set train.seq_len=512
expect_err "seq_len 512 exceeds model.ctx"
expect_rc 2 "$LOCO" train "$cfg" "${common[@]}" --set model.n_kv_head=3
expect_err "does not divide n_head"
expect_rc 1 "$LOCO" train "$cfg" "${common[@]}" --set data.path="$LOCO_TMP/nodata" \
  --set run.dir="$LOCO_TMP/r4"
expect_err "loco data prepare"
expect_rc 2 "$LOCO" train "$LOCO_TMP/missing.yaml"
expect_rc 1 "$LOCO" train "$cfg" "${common[@]}" --set run.dir="$LOCO_TMP/fresh" --resume
expect_err "has no checkpoint yet"
pass "bad configs, missing data and missing checkpoints are refused"

# 5. a corrupt checkpoint is refused, naming the file
ckpt=$part/checkpoints/$(cat "$part/checkpoints/latest")
python3 - "$ckpt/model.safetensors" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[-10] ^= 0xFF; open(p, 'wb').write(b)
PY
expect_rc 1 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=50 --set run.dir="$part" --resume
expect_err "model.safetensors"
pass "corrupt checkpoint refused"

# 6. non-finite losses skip steps, then stop the run with a clear error
nan=$LOCO_TMP/nan
expect_rc 1 "$LOCO" train "$cfg" "${common[@]}" --set optim.kind=sgd --set optim.lr=90 --set optim.warmup_steps=0 \
  --set optim.grad_clip=0 --set optim.min_lr=0 --set optim.weight_decay=0 --set train.max_nonfinite=2 --set train.steps=200 \
  --set run.dir="$nan"
expect_err "non-finite"
grep -q '"event":"nonfinite"' "$nan/metrics.jsonl" || fail "no nonfinite event in metrics"
[ "$(json_get "$nan/run.json" status)" = "non-finite value" ] || fail "run.json status for NaN"
pass "non-finite losses are skipped, counted and stop the run"

# 7. eval scores the checkpoint (same loss as training's final validation over the same batches);
#    sample generates text with the KV cache
expect_rc 0 "$LOCO" eval "$run" --data "$data" --batch 4 --seq 32 --batches 2
want=$(python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["final_val_loss"])' "$run/run.json")
grep -q "loss $want nats/token" "$LOCO_TMP/last.out" || { cat "$LOCO_TMP/last.out"; fail "eval loss != final val loss $want"; }
expect_rc 0 "$LOCO" sample "$run" --prompt "Computers are" --tokens 100 --seed 7
[ "$(wc -c < "$LOCO_TMP/last.out")" -ge 110 ] || fail "sample printed too little"
expect_rc 0 "$LOCO" sample "$run" --prompt "Computers are" --tokens 100 --seed 7 --temperature 0
cp "$LOCO_TMP/last.out" "$LOCO_TMP/greedy1"
expect_rc 0 "$LOCO" sample "$run" --prompt "Computers are" --tokens 100 --seed 8 --temperature 0
cmp -s "$LOCO_TMP/greedy1" "$LOCO_TMP/last.out" || fail "greedy sampling is not deterministic"
expect_rc 1 "$LOCO" eval "$LOCO_TMP/nowhere"
expect_err "checkpoint $LOCO_TMP/nowhere"
pass "eval and sample work from a run directory"
