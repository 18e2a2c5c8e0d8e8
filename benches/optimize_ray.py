"""The overhead per trial of `rustybt optimize` through Ray on one node, against local workers
(issue 16: at most 15% for trials of about a second).

    .venv/bin/python benches/optimize_ray.py [--rows 1000000] [--workers 2] [--repeat 3]

The trials: `algorithms/sma_cross.py` over a grid of 8 (fast 5-20, slow 30-60) on a file of
`--rows` one-minute bars (1M bars: about a second per trial here). A one-node Ray cluster with
`--workers` CPUs is started for the run (tests/support/ray_cluster.py) and stopped afterwards.

Two measurements:
- executor: the same trial requests through `--workers` plain `rustybt optimize worker` processes
  (the JSON-lines protocol of the forked local workers, without Ray) and through
  `rustybt_api._ray_executor.RayExecutor` (what `--executor ray` calls), by one driver loop. Every
  worker first runs one untimed trial (it loads the data); the timed part is from the first
  request to the last answer. The results must equal the local study's.
- cli (when the binary has `--executor`): whole `rustybt optimize -j W` commands, local against
  `--executor ray --address`, start-up included, and their trial tables compared.

The script runs in a session of its own, with its local workers, as Ray's workers run in the
cluster's: with Linux's autogroup scheduling a busy machine shares its CPUs between sessions, not
processes, so workers left in a shell's busy session would get less CPU than Ray's (or, each in a
session of its own, more). Local and Ray rounds alternate, both sets of workers started once.

Overhead = Ray time / local time - 1 (medians of `--repeat` alternate runs); on a busy machine the
transport figure (per trial: answer - submission - the trial's own duration, Ray less local, as a
share of a trial) is the steadier one. Prints a table and
writes benches/results/optimize_ray.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "pylib"))
sys.path.insert(0, str(ROOT / "benches"))

from run_benchmarks import BIN, make_data  # noqa: E402
from rustybt_api._ray_executor import RayExecutor  # noqa: E402
from tests.support.ray_cluster import start_cluster  # noqa: E402

PYTHON = Path(os.environ.get("RUSTYBT_PYTHON") or ROOT / ".venv" / "bin" / "python")
SPACE = ["--param", "fast=5:20:5", "--param", "slow=30:60:30"]
RESULTS = ROOT / "benches" / "results"


class Executor(Protocol):
    def slots(self) -> list[int]: ...
    def submit(self, slot: int, request: str) -> None: ...
    def next(self, timeout_s: float) -> tuple[int, str | None, str | None] | None: ...
    def close(self) -> None: ...


class LocalWorkers:
    """`rustybt optimize worker` processes on stdin/stdout: the same protocol, no Ray."""

    def __init__(self, study: Path, workers: int) -> None:
        env = {**os.environ, "RUSTYBT_PYTHON": str(PYTHON)}
        self.procs = [subprocess.Popen([str(BIN), "optimize", "worker", "--study", str(study)], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                      for _ in range(workers)]
        self.answers: queue.Queue[tuple[int, str | None, str | None]] = queue.Queue()

    def slots(self) -> list[int]:
        return list(range(len(self.procs)))

    def submit(self, slot: int, request: str) -> None:
        proc = self.procs[slot]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(request + "\n")
        proc.stdin.flush()
        stdout = proc.stdout

        def read() -> None:
            line = stdout.readline()
            self.answers.put((slot, line.rstrip("\n"), None) if line else (slot, None, "exited"))

        threading.Thread(target=read, daemon=True).start()

    def next(self, timeout_s: float) -> tuple[int, str | None, str | None] | None:
        try:
            return self.answers.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()


def drive(executor: Executor, requests: list[str]) -> tuple[float, dict[int, dict[str, Any]], list[float]]:
    """Runs `requests` asynchronously (a free slot takes the next at once): wall seconds, results,
    and per trial the time from its submission to its answer less the trial's own duration."""
    todo = list(reversed(requests))
    results: dict[int, dict[str, Any]] = {}
    sent: dict[int, float] = {}
    transport: list[float] = []
    started = time.perf_counter()

    def submit(slot: int) -> None:
        sent[slot] = time.perf_counter()
        executor.submit(slot, todo.pop())

    for slot in executor.slots():
        if todo:
            submit(slot)
    while len(results) < len(requests):
        got = executor.next(1.0)
        if got is None:
            continue
        slot, line, why = got
        if line is None:
            sys.exit(f"worker {slot} {why}")
        result = json.loads(line)
        results[result["number"]] = result
        transport.append(time.perf_counter() - sent[slot] - result["duration_s"])
        if todo:
            submit(slot)
    return time.perf_counter() - started, results, transport


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def is_worker(pid: int) -> bool:
    try:
        return b"optimize\0worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def requests_of(study: Path) -> tuple[list[str], dict[int, dict[str, Any]]]:
    with sqlite3.connect(study / "study.sqlite") as db:
        rows = db.execute("SELECT number, params, metrics FROM trials ORDER BY number").fetchall()
    requests = [json.dumps({"number": n, "params": [[k, str(v)] for k, v in json.loads(p).items()], "seed": 0})
                for n, p, _ in rows]
    return requests, {n: json.loads(m) for n, _, m in rows}


def optimize(data: Path, study: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(BIN), "optimize", "--algo", "algorithms/sma_cross.py", "--data", str(data), *SPACE,
                    "--maximize", "net_profit", "--cash", "1000000", "--study", str(study), *extra],
                   cwd=ROOT, check=True, capture_output=True, env={**os.environ, "RUSTYBT_PYTHON": str(PYTHON)})
    return time.perf_counter() - started


def table_of(study: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(study / "study.sqlite") as db:
        return db.execute("SELECT params, metrics FROM trials ORDER BY number").fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = make_data(args.rows)
    work = Path(tempfile.mkdtemp(prefix="rb-bench-ray-"))
    oracle = work / "oracle"
    optimize(data, oracle, "-j", "1")
    requests, expected = requests_of(oracle)
    with sqlite3.connect(oracle / "study.sqlite") as db:
        trial_s = statistics.mean(r[0] for r in db.execute("SELECT duration_s FROM trials"))
    has_cli = "--executor" in subprocess.run([str(BIN), "optimize", "--help"], capture_output=True, text=True).stdout

    cluster = start_cluster(nodes=1, cpus=args.workers)
    print(f"one-node Ray cluster with {args.workers} CPUs started in {cluster.start_s:.1f} s")
    times: dict[str, list[float]] = {"local": [], "ray": [], "cli_local": [], "cli_ray": []}
    transport: dict[str, list[float]] = {"local": [], "ray": []}
    # CPU seconds per round: the trials' (worker processes) and everything else's (this process
    # with its Ray driver threads, and for Ray the cluster's daemons and actors).
    cpu: dict[str, dict[str, list[float]]] = {k: {"workers": [], "other": []} for k in ("local", "ray")}
    try:
        t0 = time.perf_counter()
        ray = RayExecutor(cluster.address, str(oracle), str(BIN), args.workers, str(PYTHON))
        ray_start = time.perf_counter() - t0  # joining the cluster and starting the actors
        drive(ray, requests[: args.workers])  # warm-up: each worker loads the data
        local = LocalWorkers(oracle, args.workers)
        drive(local, requests[: args.workers])
        try:
            for _ in range(args.repeat):
                for name, executor in (("local", local), ("ray", ray)):
                    ours = [p for p in cluster.processes() if not is_worker(p)] if name == "ray" else []
                    workers = [p.pid for p in local.procs] if name == "local" else [p for p in cluster.processes() if is_worker(p)]
                    before = (cpu_s(workers), cpu_s(ours) + sum(os.times()[:2]))
                    wall, results, moved = drive(executor, requests)
                    cpu[name]["workers"].append(cpu_s(workers) - before[0])
                    cpu[name]["other"].append(cpu_s(ours) + sum(os.times()[:2]) - before[1])
                    assert {n: r["metrics"] for n, r in results.items()} == expected, f"{name}: results differ from the study"
                    times[name].append(wall)
                    transport[name] += moved
        finally:
            local.close()
            ray.close()
        if has_cli:
            for _ in range(args.repeat):
                for name, extra in (("cli_local", []), ("cli_ray", ["--executor", "ray", "--address", cluster.address])):
                    study = work / f"{name}-{len(times[name])}"
                    times[name].append(optimize(data, study, "-j", str(args.workers), *extra))
                    assert table_of(study) == table_of(oracle), f"{name}: the trial table differs from -j 1's"
    finally:
        cluster.stop()

    med = {k: statistics.median(v) for k, v in times.items() if v}
    n = len(requests)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rows": args.rows, "trials": n, "workers": args.workers, "mean_trial_s": round(trial_s, 3),
        "cluster_start_s": round(cluster.start_s, 1), "repeat": args.repeat,
        "executor": {
            "local_s": round(med["local"], 2), "ray_s": round(med["ray"], 2),
            "per_trial_local_s": round(med["local"] * args.workers / n, 3),
            "per_trial_ray_s": round(med["ray"] * args.workers / n, 3),
            "overhead": round(med["ray"] / med["local"] - 1, 3),
            "ray_executor_start_s": round(ray_start, 2),
            # Submission to answer, less the trial's own duration: what carrying a trial costs.
            "transport_local_ms": round(statistics.median(transport["local"]) * 1000, 1),
            "transport_ray_ms": round(statistics.median(transport["ray"]) * 1000, 1),
            "transport_overhead": round((statistics.median(transport["ray"]) - statistics.median(transport["local"])) / trial_s, 4),
            "cpu_per_round_s": {k: {part: round(statistics.median(v), 2) for part, v in parts.items()} for k, parts in cpu.items()},
        },
    }
    if has_cli:
        report["cli"] = {"local_s": round(med["cli_local"], 2), "ray_s": round(med["cli_ray"], 2),
                         "overhead": round(med["cli_ray"] / med["cli_local"] - 1, 3)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "optimize_ray.json").write_text(json.dumps(report, indent=2) + "\n")
    e = report["executor"]
    print(f"{n} trials of ~{trial_s:.2f} s ({args.rows:,} bars) on {args.workers} workers, medians of {args.repeat}:")
    print(f"  executor  local {e['local_s']:.2f} s  ray {e['ray_s']:.2f} s  overhead {e['overhead']:+.1%}"
          f"  (per trial {e['per_trial_local_s']:.3f} s vs {e['per_trial_ray_s']:.3f} s; Ray executor start {e['ray_executor_start_s']:.1f} s)")
    print(f"  transport per trial (answer - submission - trial's own duration, median): local {e['transport_local_ms']:.1f} ms,"
          f" ray {e['transport_ray_ms']:.1f} ms: {e['transport_overhead']:+.2%} of a {trial_s:.2f} s trial")
    c_ = e["cpu_per_round_s"]
    extra = c_["ray"]["other"] - c_["local"]["other"]
    e["cpu_overhead"] = round(extra / c_["ray"]["workers"], 4)
    (RESULTS / "optimize_ray.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"  CPU per round of {n} trials: trials {c_['local']['workers']:.2f} s local / {c_['ray']['workers']:.2f} s ray;"
          f" everything else {c_['local']['other']:.2f} s local / {c_['ray']['other']:.2f} s ray"
          f" (Ray's extra CPU = {e['cpu_overhead']:+.2%} of the trials')")
    if has_cli:
        c = report["cli"]
        print(f"  cli       local {c['local_s']:.2f} s  ray {c['ray_s']:.2f} s  overhead {c['overhead']:+.1%}  (start-up included)")
    else:
        print("  cli       not measured: this binary has no `optimize --executor`")


def in_own_session() -> None:
    """Runs main() in a new session (see the module's doc) and exits with its status."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        try:
            main()
        except SystemExit as stop:
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
            sys.stdout.flush()
            os._exit(stop.code if isinstance(stop.code, int) else 1)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(1)
        sys.stdout.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    in_own_session()
