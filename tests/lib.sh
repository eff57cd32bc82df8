# tests/lib.sh — helpers for shell tests (sourced). ctest provides $LOCO, $LOCO_SRC, $LOCO_TMP.
set -euo pipefail
: "${LOCO:?run under ctest (LOCO is the loco binary)}"
: "${LOCO_SRC:?}"
: "${LOCO_TMP:?}"
rm -rf "$LOCO_TMP"
mkdir -p "$LOCO_TMP"
export LOCO_LOG=${LOCO_LOG:-warn}

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# expect_rc RC CMD...: run CMD, require exit code RC; stderr is kept in $LOCO_TMP/last.err.
expect_rc() {
  local want=$1; shift
  local rc=0
  "$@" >"$LOCO_TMP/last.out" 2>"$LOCO_TMP/last.err" || rc=$?
  [ "$rc" -eq "$want" ] || { cat "$LOCO_TMP/last.err" >&2; fail "exit $rc, expected $want: $*"; }
}

# expect_err TEXT: the last command's stderr contains TEXT.
expect_err() {
  grep -qF -- "$1" "$LOCO_TMP/last.err" || { cat "$LOCO_TMP/last.err" >&2; fail "stderr lacks: $1"; }
}

# json_get FILE KEY: a top-level scalar of a JSON file (python3 is part of the base system).
json_get() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# tiny_data DIR: a small dataset from three fortunes topics (fast to train on).
tiny_data() {
  local f=/usr/share/games/fortunes
  [ -d "$f" ] || f=${LOCO_CORPUS_ROOT:-}$f
  [ -f "$f/computers" ] || fail "fortunes is not installed (run launch/setup.sh)"
  "$LOCO" data prepare --out "$1" "$f/computers" "$f/science" "$f/wisdom" >/dev/null 2>&1 \
    || fail "loco data prepare failed"
}

# A small model for fast runs; pass further --set options after it.
TINY=(--set model.n_layer=2 --set model.n_embd=64 --set model.n_head=4 --set model.ctx=64
      --set train.batch=4 --set train.seq_len=32 --set train.eval_batches=2 --set train.log_every=1
      --set optim.warmup_steps=5)
