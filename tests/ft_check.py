#!/usr/bin/env python3
"""tests/ft_check.py — assertions over tests/tools/ft_driver's output directory (member.ID.json
final results and member.ID.log event lines), for tests/test_ft_churn.sh.

    ft_check.py DIR --finished IDS [--left IDS] [--evicted-ids IDS] [--died N] [--evicted N]
                    [--joined N] [--left-count N] [--resume-max S]

Checks, failing with a message naming the member and what differs:
  - the members in --finished finished, with the same final state digest and world size;
  - the run's membership counts (every finished member reports the same ones);
  - no operation committed that did not run everywhere: for every (epoch, seq), all members
    that took part in it and outlived it report the same outcome, and committed results carry
    one digest;
  - with a death, every survivor resumed (finished its recovery) within --resume-max seconds.
Prints the measured kill-to-resume time and the extra time of the step that lost a peer.
"""
import argparse
import glob
import json
import os
import statistics
import sys


def ids(text):
    return sorted(int(x) for x in text.split(",") if x != "") if text else []


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def load(d):
    results, logs = {}, {}
    for path in glob.glob(os.path.join(d, "member.*.json")):
        r = json.load(open(path))
        results[r["id"]] = r
    for path in glob.glob(os.path.join(d, "member.*.log")):
        mid = int(os.path.basename(path).split(".")[1])
        logs[mid] = [json.loads(line) for line in open(path) if line.strip()]
    return results, logs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--finished", type=ids, default=[])
    ap.add_argument("--left", type=ids, default=[])
    ap.add_argument("--evicted-ids", type=ids, default=[])
    ap.add_argument("--died", type=int, default=0)
    ap.add_argument("--evicted", type=int, default=0)
    ap.add_argument("--joined", type=int, default=0)
    ap.add_argument("--left-count", type=int, default=0)
    ap.add_argument("--resume-max", type=float, default=None)
    a = ap.parse_args()
    results, logs = load(a.dir)

    for mid in a.finished:
        if mid not in results or results[mid]["outcome"] != "finished":
            fail(f"member {mid} did not finish: {results.get(mid)}")
    for mid in a.left:
        if mid not in results or results[mid]["outcome"] != "left":
            fail(f"member {mid} did not leave: {results.get(mid)}")
    for mid in a.evicted_ids:
        if mid in results and results[mid]["outcome"] not in ("evicted",):
            fail(f"member {mid} was not evicted: {results.get(mid)}")
    extra = [m for m, r in results.items() if r["outcome"] == "finished" and m not in a.finished]
    if extra:
        fail(f"members {extra} finished too (expected only {a.finished})")
    fin = [results[m] for m in a.finished]
    digests = {r["digest"] for r in fin}
    if len(digests) != 1:
        fail("survivors' final state digests differ: " +
             ", ".join(f"member {r['id']}: {r['digest']}" for r in fin))
    worlds = {r["world"] for r in fin}
    if worlds != {len(a.finished)}:
        fail(f"final world sizes {worlds}, expected {len(a.finished)}")
    want = {"died": a.died, "evicted": a.evicted, "joined": a.joined, "left": a.left_count}
    for r in fin:
        got = {k: r["counts"][k] for k in want}
        if got != want:
            fail(f"member {r['id']} counts {got}, expected {want}")

    # No operation committed that did not run everywhere.
    ops = {}  # (epoch, seq) -> {member: (status, digest, t)}
    last_t = {m: max((e.get("t", 0) for e in ev), default=0) for m, ev in logs.items()}
    for m, ev in logs.items():
        for e in ev:
            if e["event"] == "op":
                ops.setdefault((e["epoch"], e["seq"]), {})[m] = (e["status"], e["digest"], e["t"])
    committed = 0
    for key, per in sorted(ops.items()):
        oks = {m: v for m, v in per.items() if v[0] == "ok"}
        if not oks:
            continue
        committed += 1
        if len({v[1] for v in oks.values()}) != 1:
            fail(f"epoch {key[0]} op {key[1]}: committed with different digests {oks}")
        t_commit = max(v[2] for v in oks.values())
        for m, v in per.items():
            if v[0] != "ok" and last_t.get(m, 0) > t_commit:
                fail(f"epoch {key[0]} op {key[1]}: committed at members {sorted(oks)} but member "
                     f"{m} reports '{v[0]}' and lived on")
    print(f"ok: {len(a.finished)} members finished with digest {digests.pop()}; "
          f"{committed} operations committed everywhere they ran; counts {want}")

    # Kill -> resume, and the extra time of the step that lost a peer.
    deaths = [e["t"] for ev in logs.values() for e in ev if e["event"] == "die"]
    if deaths:
        t_kill = min(deaths)
        resumed = []
        for m in a.finished:  # the first new epoch after the kill: by recovery or sync point
            ev = logs.get(m, [])
            before = [e["epoch"] for e in ev if "epoch" in e and e["t"] <= t_kill]
            epoch0 = before[-1] if before else 0
            rec = [e for e in ev if e["event"] in ("recover", "sync") and e["t"] > t_kill
                   and e["epoch"] > epoch0]
            if rec:
                resumed.append(rec[0]["t"] - t_kill)
        if resumed:
            worst = max(resumed)
            print(f"kill-to-resume: {worst * 1000:.0f} ms (slowest survivor; "
                  f"fastest {min(resumed) * 1000:.0f} ms)")
            if a.resume_max is not None and worst > a.resume_max:
                fail(f"survivors resumed {worst:.2f} s after the kill (limit {a.resume_max} s)")
        steps = [e for e in logs.get(a.finished[0], []) if e["event"] == "step"]
        lost = [s for s in steps if s["t"] > t_kill and s["t"] - s["seconds"] < t_kill + 5]
        normal = [s["seconds"] for s in steps if s not in lost[:1]]
        if lost and normal:
            med = statistics.median(normal)
            print(f"step that lost a peer: {lost[0]['seconds'] * 1000:.0f} ms vs median "
                  f"{med * 1000:.0f} ms (+{(lost[0]['seconds'] - med) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
