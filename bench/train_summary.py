#!/usr/bin/env python3
"""bench/train_summary.py RUNS_DIR — one JSON object summarising the `loco train` runs under
RUNS_DIR (each a run.dir with run.json and metrics.jsonl) and the gpu_worker outputs
(gpu_workerN.txt) that bench/gpu_device.sh's train stage leaves there.

Per run: workers, tokens/s per worker (steady state: every logged window after the first,
combined as total tokens over total time, i.e. the harmonic mean of the windows, which includes
the sync steps' cost), the total over workers, final validation loss, syncs, megabytes the
syncs sent per worker, seconds blocked in collectives, the loss curve of rank 0 (every logged
step) and the validation curve. gpu_worker: its final line, parsed."""
import json
import os
import re
import sys


def train_run(d):
    run = json.load(open(os.path.join(d, "run.json")))
    recs = [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]
    world = run["world_size"]
    per_worker = []
    for r in range(world):
        windows = [x["tokens_per_s"] for x in recs
                   if x["event"] == "step" and x["rank"] == r and x["tokens_per_s"] > 0][1:]
        if windows:
            per_worker.append(len(windows) / sum(1.0 / t for t in windows))
    syncs = [x for x in recs if x["event"] == "sync" and x["rank"] == 0]
    out = {
        "status": run["status"],
        "strategy": run["strategy"],
        "workers": world,
        "steps": run["steps"],
        "tokens_per_s_per_worker": sum(per_worker) / max(len(per_worker), 1),
        "tokens_per_s_total": sum(per_worker),
        "final_val_loss": run["final_val_loss"],
        "wall_s": run["wall_seconds"],
        "syncs": len(syncs),
        "sync_mb_sent_per_worker": sum(x["op_bytes_sent"] for x in syncs) / 1e6,
        "comm_wait_s": max(w["comm_wait_s"] for w in run["workers"]),
        "identical_params": len({w["param_digest"] for w in run["workers"]}) == 1,
        "loss_curve": [[x["step"], round(x["loss"], 4)] for x in recs
                       if x["event"] == "step" and x["rank"] == 0],
        "val_curve": [[x["step"], round(x["val_loss"], 4)] for x in recs if x["event"] == "eval"],
    }
    if run["status"] != "ok":
        out["error"] = run.get("error")
    return out


def main():
    root = sys.argv[1]
    result = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.isfile(os.path.join(path, "run.json")):
            try:
                result[name] = train_run(path)
            except (OSError, ValueError, KeyError) as e:
                result[name] = {"error": repr(e)}
        elif name.startswith("gpu_worker") and name.endswith(".txt"):
            text = open(path).read()
            m = re.search(r"GPUs (\d+), tokens/s (\d+) \(([\d.]+) ms/step\).*identical (\w+), "
                          r"final loss ([\d.]+)", text)
            result[name[:-4]] = ({"gpus": int(m.group(1)), "tokens_per_s_total": int(m.group(2)),
                                  "ms_per_step": float(m.group(3)), "identical": m.group(4),
                                  "final_loss": float(m.group(5))}
                                 if m else {"error": text.strip() or "no output"})
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
