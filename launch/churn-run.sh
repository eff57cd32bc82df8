#!/usr/bin/env bash
# launch/churn-run.sh — a seeded, randomized churn run on real `loco train` workers: a long
# DiLoCo run (4 workers under launch/loco-mpirun) goes through EVENTS kill -9 / SIGSTOP (longer
# than ft.op_deadline and transport.peer_timeout: evicted, or lost if it hosted the coordinator) / SIGTERM (leave) / join events, keeping between MIN and MAX
# workers, then every result is checked from loco's own files: the run finished, the survivors'
# parameter and shared-state digests are equal, run.json's membership counts match the events,
# every process ended (no hang). Before that, KILLS kill -9s mid-collective (train.kill_at_step)
# measure the time from a kill to training resuming and the extra time of the step that lost a
# peer, for ddp and diloco.
#
#   launch/churn-run.sh [--events 100] [--seed 1] [--kills 5] [--out /tmp/loco-churn]
#                       [--loco build/loco] [--min 3] [--max 6] [--steps 6000]
#
# Prints a summary and writes OUT/summary.json. Exit 0: zero divergence and zero hangs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 - "$here" "$@" <<'PY'
import argparse, json, os, random, signal, socket, statistics, subprocess, sys, time

here = sys.argv[1]
ap = argparse.ArgumentParser(prog="launch/churn-run.sh")
ap.add_argument("--events", type=int, default=100)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--kills", type=int, default=5, help="measured kills per strategy (0: none)")
ap.add_argument("--out", default="/tmp/loco-churn")
ap.add_argument("--loco", default=os.path.join(here, "..", "build", "loco"))
ap.add_argument("--min", type=int, default=3, dest="min_w")
ap.add_argument("--max", type=int, default=6, dest="max_w")
ap.add_argument("--steps", type=int, default=0, help="training steps (0: 200 per event)")
ap.add_argument("--deadline", type=float, default=2.0, help="ft.op_deadline in seconds")
ap.add_argument("--peer-timeout", type=float, default=3.0, dest="peer_timeout",
                help="transport.peer_timeout in seconds (a stopped coordinator host is lost after it)")
a = ap.parse_args(sys.argv[2:])
a.steps = a.steps or 200 * a.events
src = os.path.abspath(os.path.join(here, ".."))
loco = os.path.abspath(a.loco)
mpirun = os.path.join(src, "launch", "loco-mpirun")
os.makedirs(a.out, exist_ok=True)
rng = random.Random(a.seed)
env = dict(os.environ, LOCO_LOG=os.environ.get("LOCO_LOG", "warn"))

def log(msg):
    print(f"[churn {time.strftime('%H:%M:%S')}] {msg}", flush=True)

# data and key
data = os.path.join(a.out, "data")
if not os.path.exists(os.path.join(data, "train.tok")):
    f = "/usr/share/games/fortunes"
    subprocess.run([loco, "data", "prepare", "--out", data] +
                   [f"{f}/{t}" for t in ("computers", "science", "wisdom")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
key = os.path.join(a.out, "run.key")
with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fp:
    fp.write(os.urandom(32).hex() + "\n")
TINY = ["model.n_layer=2", "model.n_embd=64", "model.n_head=4", "model.ctx=64", "train.batch=4",
        "train.seq_len=32", "train.eval_batches=2", "optim.warmup_steps=5", f"data.path={data}",
        "train.threads=1", "train.eval_every=0", f"transport.key_file={key}"]

def sets(items):
    out = []
    for s in items:
        out += ["--set", s]
    return out

def records(path):
    out = []
    try:
        with open(path) as fp:
            for line in fp:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written
    except FileNotFoundError:
        pass
    return out

def free_port_block(n):
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)  # not the event seed: ports vary
        ok = True
        for p in range(base, base + n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            s.close()
            if not ok:
                break
        if ok:
            return base
    sys.exit("churn-run: no free block of ports")

def mpi_pids(run_dir, world):
    """rank -> pid of this run's mpirun workers (their command line names run_dir)."""
    found = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
            if not cmd or os.path.basename(cmd[0]) != b"loco" or f"run.dir={run_dir}".encode() not in cmd:
                continue
            envs = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for e in envs:
            if e.startswith(b"OMPI_COMM_WORLD_RANK="):
                found[int(e.split(b"=")[1])] = int(p)
    return found

def alive(pid):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fp:
            return fp.read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False

summary = {"seed": a.seed, "events": a.events, "machine": "shared 2-core VM, loopback"}

# ---------------------------------------------------------------------------------------------
# 1. kill -> resume, measured: a worker kills itself mid-collective (train.kill_at_step)
def measure(strategy, extra, i):
    d = os.path.join(a.out, f"kill-{strategy}-{i}")
    subprocess.run(["rm", "-rf", d])
    victim = rng.randrange(0, 4)
    cmd = [mpirun, "-np", "4", loco, "train", os.path.join(src, "configs", f"{strategy}.yaml")] + \
        sets(TINY + extra + ["train.steps=60", "optim.total_steps=60", f"run.dir={d}",
                             "train.kill_at_step=30", f"train.fault_members={victim}",
                             f"transport.links={victim}->-1 rate=200mbit"])
    with open(d + ".out", "w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(env, LOCO_MPIRUN_TIMEOUT="120"))
    fault = json.load(open(f"{d}/member.{victim}.fault.json"))
    run = json.load(open(f"{d}/run.json"))
    assert run["status"] == "ok" and len({w["param_digest"] for w in run["workers"]}) == 1, d
    recs = records(f"{d}/metrics.jsonl")
    resumed = [r for r in recs if r["event"] == "resumed"]
    recover = [r for r in recs if r["event"] == "recover"]
    steps = [r["step_seconds"] for r in recs if r["event"] == "step" and r["step"] > 5]
    res = {"victim": victim,
           "kill_to_resume_s": max(r["wall"] for r in resumed) - fault["wall"] if resumed else None,
           "kill_to_detect_s": min(r["fail_wall"] for r in recover) - fault["wall"] if recover else None,
           "recover_s": max(r["seconds"] for r in recover) if recover else None,
           "lost_step_s": max(r["step_seconds"] for r in resumed) if resumed else None,
           "median_step_s": statistics.median(steps)}
    return res

if a.kills > 0:
    kills = {}
    for strategy, extra in (("ddp", []), ("diloco", ["sync.h=5"])):
        kills[strategy] = [measure(strategy, extra, i) for i in range(a.kills)]
        rs = [k for k in kills[strategy] if k["kill_to_resume_s"] is not None]
        if rs:
            log(f"{strategy}: kill -> resume median {statistics.median(k['kill_to_resume_s'] for k in rs):.3f} s "
                f"(max {max(k['kill_to_resume_s'] for k in rs):.3f}), recover median "
                f"{statistics.median(k['recover_s'] for k in rs):.3f} s, step that lost a peer median "
                f"{statistics.median(k['lost_step_s'] for k in rs):.3f} s vs median step "
                f"{statistics.median(k['median_step_s'] for k in rs):.3f} s ({len(rs)} of {a.kills} kills resumed in a step)")
    summary["measured_kills"] = kills

# ---------------------------------------------------------------------------------------------
# 2. the randomized churn run
run_dir = os.path.join(a.out, "run")
subprocess.run(["rm", "-rf", run_dir])
# ports: [base, base + n) coordinator listeners, [base + n, base + 2n) data listeners (a member's
# data listener sends a joiner on to the coordinator, wherever it is by then)
n_ports = 4 + a.events
base = free_port_block(2 * n_ports)
common = TINY + [f"train.steps={a.steps}", f"optim.total_steps={a.steps}", "sync.h=10",
                 f"ft.op_deadline={a.deadline}s", f"transport.peer_timeout={a.peer_timeout}s",
                 "ft.sync_timeout=20s",  # a stopped coordinator host gives up this long after waking
                 "train.log_every=10", f"run.dir={run_dir}",
                 "ft.join_timeout=60s"]
cfg = os.path.join(src, "configs", "diloco.yaml")
mpi_out = open(os.path.join(a.out, "mpirun.out"), "w")
mpi = subprocess.Popen([mpirun, "-np", "4", loco, "train", cfg] +
                       sets(common + [f"ft.coordinator_port={base}", f"transport.listen=127.0.0.1:{base + n_ports}"]),
                       stdout=mpi_out, stderr=subprocess.STDOUT,
                       env=dict(env, LOCO_MPIRUN_TIMEOUT=str(3600)))
metrics = os.path.join(run_dir, "metrics.jsonl")
workers = {}  # name -> {pid, port, popen or None}
t0 = time.time()
while len(workers) < 4:
    if time.time() - t0 > 120:
        sys.exit("churn-run: the 4 workers did not start")
    for r, pid in mpi_pids(run_dir, 4).items():
        workers.setdefault(f"rank{r}", {"pid": pid, "port": base + n_ports + r, "popen": None, "since": time.time()})
    time.sleep(0.2)

def current_step():
    try:
        with open(metrics, "rb") as fp:
            fp.seek(0, 2)
            fp.seek(max(0, fp.tell() - 16384))
            tail = fp.read().decode(errors="replace").splitlines()[1:]
    except FileNotFoundError:
        return 0
    best = 0
    for line in tail:
        if '"event":"step"' in line:
            try:
                best = max(best, json.loads(line)["step"])
            except ValueError:
                pass
    return best

def joined_count():
    return sum(1 for r in records(metrics) if r["event"] == "membership" and r.get("joined_here"))

def live():
    return [n for n, w in workers.items() if alive(w["pid"]) and not w.get("gone")]

tally = {"kill": 0, "stop": 0, "leave": 0, "join": 0}
events, hangs = [], []
targets = [int(a.steps * (0.05 + 0.85 * i / a.events)) for i in range(a.events)]
n_joined = 0
for i, target in enumerate(targets):
    t_wait = time.time()
    while current_step() < target:
        if mpi.poll() is not None and not any(w["popen"] and w["popen"].poll() is None for w in workers.values()):
            break
        if time.time() - t_wait > 300:
            hangs.append(f"no progress to step {target} in 300 s")
            break
        time.sleep(0.05)
    if hangs:
        break
    names = live()
    kinds = []
    if len(names) > a.min_w:
        kinds += ["kill", "stop", "leave"]
    if len(names) < a.max_w:
        kinds += ["join", "join"]
    kind = rng.choice(kinds)
    ev = {"i": i, "kind": kind, "step": current_step(), "wall": time.time()}
    if kind == "join":
        port = base + n_ports + 4 + i
        via = workers[rng.choice(names)]["port"]
        name = f"join{i}"
        out = open(os.path.join(a.out, f"{name}.out"), "w")
        p = subprocess.Popen([loco, "train", cfg] +
                             sets(common + [f"ft.coordinator_port={base + 4 + i}",
                                            f"transport.listen=127.0.0.1:{port}"]) +
                             ["--join", f"127.0.0.1:{via}"], stdout=out, stderr=subprocess.STDOUT, env=env)
        workers[name] = {"pid": p.pid, "port": port, "popen": p, "since": time.time()}
        ev.update(worker=name, via=via)
        # admitted at the next sync point (a round): wait for it before the next event
        t_join = time.time()
        while joined_count() <= n_joined and time.time() - t_join < 90:
            if p.poll() is not None:
                break
            time.sleep(0.05)
        if joined_count() > n_joined:
            n_joined = joined_count()
            ev["admitted_s"] = time.time() - t_join
        else:
            hangs.append(f"joiner {name} not admitted (exit {p.poll()})")
            ev["failed"] = True
    else:
        name = rng.choice(names)
        w = workers[name]
        ev["worker"] = name
        if kind == "kill":
            os.kill(w["pid"], signal.SIGKILL)
        elif kind == "leave":
            os.kill(w["pid"], signal.SIGTERM)
        else:
            os.kill(w["pid"], signal.SIGSTOP)
            time.sleep(max(a.deadline, a.peer_timeout) + 1.5)  # late even as the coordinator's host
            os.kill(w["pid"], signal.SIGCONT)
        w["gone"] = True  # it must end by itself (left, or evicted when it wakes): checked at the end
        w["gone_kind"], w["gone_wall"] = kind, time.time()
    tally[kind] += 1
    events.append(ev)
    log(f"event {i + 1}/{a.events}: {kind} {ev.get('worker')} at step {ev['step']} ({len(live())} workers)")

# the end: every process must exit by itself
t_end = time.time()
deadline = t_end + 600
ended = []
for n, w in workers.items():
    while alive(w["pid"]) and time.time() < deadline:
        if w["popen"]:
            w["popen"].poll()
        time.sleep(0.1)
    if alive(w["pid"]):
        hangs.append(f"{n} still running 600 s after the last event")
        os.kill(w["pid"], signal.SIGKILL)
    elif "gone_kind" in w and w["gone_kind"] != "kill":
        # upper bound of how long it took to end (polled in order after the last event)
        ended.append(time.time() - w["gone_wall"])
try:
    mpi.wait(timeout=max(1, deadline - time.time()))
except subprocess.TimeoutExpired:
    hangs.append("mpirun did not end")
    mpi.kill()
for w in workers.values():
    if w["popen"]:
        w["popen"].wait()

# ---------------------------------------------------------------------------------------------
# verdict from loco's own files
problems = list(hangs)
try:
    run = json.load(open(os.path.join(run_dir, "run.json")))
except (OSError, ValueError) as e:
    run = {"status": f"no run.json ({e})", "workers": [], "membership": {}}
if run["status"] != "ok":
    problems.append(f"run.json status {run['status']}: {run.get('error')}")
ws = run["workers"]
digests = {w["param_digest"] for w in ws}
states = {w["state_digest"] for w in ws}
if len(digests) != 1 or len(states) != 1:
    problems.append(f"divergence: parameter digests {digests}, state digests {states}")
if len({w["steps"] for w in ws}) > 1:
    problems.append("survivors at different steps")
m = run.get("membership", {})
if m.get("joined") != tally["join"] or m.get("left") != tally["leave"] or \
        m.get("died", 0) + m.get("evicted", 0) != tally["kill"] + tally["stop"]:
    problems.append(f"membership {m} does not match the events {tally}")
outcomes = {}
for f in os.listdir(run_dir):
    if f.startswith("member.") and f.endswith(".json") and "fault" not in f:
        o = json.load(open(os.path.join(run_dir, f)))["outcome"]
        outcomes[o] = outcomes.get(o, 0) + 1
recs = records(metrics)
recovers = [r for r in recs if r["event"] == "recover"]
joins = [r for r in recs if r["event"] == "membership" and r.get("joined_here")]
summary.update({
    "churn": {"workers_start": 4, "min": a.min_w, "max": a.max_w, "steps": a.steps,
              "events": tally, "membership": m, "outcomes": outcomes,
              "survivors": len(ws), "param_digests": sorted(digests), "hangs": hangs,
              "recoveries": len(recovers),
              "recover_s_median": statistics.median(r["seconds"] for r in recovers) if recovers else None,
              "recover_s_max": max((r["seconds"] for r in recovers), default=None),
              "join_state_bytes": statistics.median(j["state_bytes_received"] for j in joins) if joins else None,
              "join_seconds_median": statistics.median(j["seconds"] for j in joins) if joins else None,
              "admitted_s_median": statistics.median(e["admitted_s"] for e in events if "admitted_s" in e)
              if any("admitted_s" in e for e in events) else None,
              "wall_s": time.time() - t0},
    "problems": problems,
    "event_log": events})
json.dump(summary, open(os.path.join(a.out, "summary.json"), "w"), indent=1)
c = summary["churn"]
log(f"churn: {sum(tally.values())} events {tally}; membership {m}; outcomes {outcomes}; "
    f"{len(ws)} survivors, {len(digests)} parameter digest(s); {len(recovers)} recoveries "
    f"(median {c['recover_s_median']}, max {c['recover_s_max']} s); joins admitted in median "
    f"{c['admitted_s_median']} s; {c['wall_s']:.0f} s wall")
if problems:
    log("PROBLEMS: " + "; ".join(problems))
    sys.exit(1)
log("zero divergence, zero hangs")
PY
