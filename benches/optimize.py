"""Benchmark of `rustybt optimize` (issue 16): a 16-combination SMA grid over the 1M-bar file.

    .venv/bin/python benches/optimize.py [--rows 1000000] [--peer-rows 1000000] [--no-peer]

Runs `rustybt optimize --algo algorithms/sma_cross.py --param fast=5:20:5 --param slow=30:60:10`
with -j 1 and -j 2 (the whole process: loading the data once, forking the workers, every trial),
and, in the same command, backtesting.py's `Backtest.optimize` on the same grid and data
(`../shared/bench-peers/optimize_backtesting.py`, its own multiprocessing on all cores, in the
/tmp/peers venv that benches/run_benchmarks.py --peers makes). Prints aggregate bars/s, the
speed-up from 1 to 2 workers, the ratio to backtesting.py, and each worker's unique memory
(USS: the pages only that worker holds; the bars it reads are the parent's, shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))

from run_benchmarks import BIN, PEERS, make_data  # noqa: E402

GRID = ["--param", "fast=5:20:5", "--param", "slow=30:60:10", "--maximize", "net_profit"]


def watch_workers(proc: subprocess.Popen[bytes], samples: dict[int, int], stop: threading.Event) -> None:
    """The largest unique memory each child process reached."""
    parent = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            for child in parent.children():
                uss = child.memory_full_info().uss
                samples[child.pid] = max(samples.get(child.pid, 0), uss)
        except psutil.Error:
            pass
        time.sleep(0.2)


def run_study(data: Path, jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(BIN), "optimize", "--algo", str(ROOT / "algorithms" / "sma_cross.py"), "--data", str(data),
                *GRID, "-j", str(jobs), "--study", str(Path(tmp) / "study")]
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        samples: dict[int, int] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=watch_workers, args=(proc, samples, stop))
        watcher.start()
        _, err = proc.communicate()
        wall = time.perf_counter() - started
        stop.set()
        watcher.join()
        if proc.returncode != 0:
            raise SystemExit(f"rustybt optimize failed:\n{err.decode()}")
        import sqlite3
        with sqlite3.connect(Path(tmp) / "study" / "study.sqlite") as db:
            trials, bars = db.execute(
                "SELECT count(*), sum(json_extract(metrics, '$.num_equity_points')) FROM trials").fetchone()
            trial_seconds = [d for (d,) in db.execute("SELECT duration_s FROM trials")]
    # The best trial is rerun once more into STUDY/best: count it too.
    return {"jobs": jobs, "trials": trials, "wall_s": wall, "bars_per_s": (trials + 1) * bars / trials / wall,
            "grid_bars_per_s": bars / wall, "mean_trial_s": sum(trial_seconds) / len(trial_seconds),
            "worker_uss_mib": max(samples.values(), default=0) / 2**20}


def run_peer(data: Path, rows: int) -> dict[str, float] | None:
    python = Path("/tmp/peers/bin/python")
    if not python.exists():
        print("backtesting.py: no /tmp/peers venv (run benches/run_benchmarks.py --peers once)", file=sys.stderr)
        return None
    out = subprocess.run([str(python), str(PEERS / "optimize_backtesting.py"), str(data), str(rows)],
                         capture_output=True, text=True, cwd=PEERS, check=True)
    line = next(l for l in out.stdout.splitlines() if l.startswith("{"))
    result: dict[str, float] = json.loads(line)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--peer-rows", type=int, default=None, help="rows for backtesting.py (default: --rows)")
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    data = make_data(args.rows)
    print(f"machine: {platform.machine()} {platform.platform()}, {os.cpu_count()} CPUs; "
          f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {os.getloadavg()[0]:.1f}")
    print(f"data: {args.rows} one-minute bars; grid: fast 5-20 step 5 x slow 30-60 step 10 (16 trials)")
    results = {jobs: run_study(data, jobs) for jobs in (1, 2)}
    for jobs, r in results.items():
        print(f"rustybt optimize -j {jobs}: {r['wall_s']:.2f} s, {r['bars_per_s']:,.0f} bars/s aggregate "
              f"(grid only {r['grid_bars_per_s']:,.0f}), mean trial {r['mean_trial_s']:.2f} s, "
              f"worker USS {r['worker_uss_mib']:.0f} MiB")
    print(f"1 -> 2 workers: {results[1]['wall_s'] / results[2]['wall_s']:.2f}x  [target >= 1.8x]")
    if not args.no_peer:
        peer = run_peer(data, args.peer_rows or args.rows)
        if peer:
            print(f"backtesting.py optimize ({peer['rows']} rows, all cores): {peer['seconds']:.1f} s, "
                  f"{peer['bars_per_s']:,.0f} bars/s")
            print(f"rustybt -j 2 / backtesting.py: {results[2]['grid_bars_per_s'] / peer['bars_per_s']:.1f}x  "
                  f"[target >= 18x; rustybt >= 2,000,000 bars/s]")


if __name__ == "__main__":
    main()
