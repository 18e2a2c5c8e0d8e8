"""Benchmark of `rustybt optimize` (issue 16): a 16-combination SMA grid over the 1M-bar file.

    .venv/bin/python benches/optimize.py [--rows 1000000] [--peer-rows 1000000] [--no-peer]

Runs `rustybt optimize --algo algorithms/sma_cross.py --param fast=5:20:5 --param slow=30:60:10`
with -j 1 and -j 2 (the whole process: loading the data once, forking the workers, every trial),
and, in the same command, backtesting.py's `Backtest.optimize` on the same grid and data
(`../shared/bench-peers/optimize_backtesting.py`, its own multiprocessing on all cores, in the
/tmp/peers venv that benches/run_benchmarks.py --peers makes). Prints aggregate bars/s, the
speed-up from 1 to 2 workers, the ratio to backtesting.py, each worker's unique memory during
the grid (USS: the pages only that worker holds; the bars and the interpreter it forked with are
the parent's, shared), and what the second worker adds to the whole study's memory.
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


GRID_TRIALS = 16


def stored_trials(db_path: Path) -> int:
    """Trials the study has stored so far (0 before its store exists or while it is locked)."""
    import sqlite3
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=0.05) as db:
            return int(db.execute("SELECT count(*) FROM trials").fetchone()[0])
    except sqlite3.Error:
        return 0


class MemoryWatch:
    """Samples the study's processes every 0.2 s: each worker's unique memory (USS: the pages only
    it holds) while the grid runs and while the best trial is rerun (a plain run's records, into
    STUDY/best), and the whole process tree's proportional memory (PSS summed: the memory the
    study really takes, a shared page counted once)."""

    def __init__(self, pid: int, db_path: Path) -> None:
        self.parent = psutil.Process(pid)
        self.db_path = db_path
        self.grid_uss: dict[int, int] = {}
        self.rerun_uss: dict[int, int] = {}
        self.grid_tree_pss = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            # Read before sampling: a sample taken while fewer trials were stored is of the grid.
            in_grid = stored_trials(self.db_path) < GRID_TRIALS
            tree_pss = 0
            try:
                tree_pss += self.parent.memory_full_info().pss
                for child in self.parent.children():
                    info = child.memory_full_info()
                    tree_pss += info.pss
                    peaks = self.grid_uss if in_grid else self.rerun_uss
                    peaks[child.pid] = max(peaks.get(child.pid, 0), info.uss)
            except psutil.Error:
                pass
            if in_grid:
                self.grid_tree_pss = max(self.grid_tree_pss, tree_pss)
            time.sleep(0.2)

    def join(self) -> None:
        self.stop.set()
        self.thread.join()


def run_study(data: Path, jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study"
        argv = [str(BIN), "optimize", "--algo", str(ROOT / "algorithms" / "sma_cross.py"), "--data", str(data),
                *GRID, "-j", str(jobs), "--study", str(study)]
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        watch = MemoryWatch(proc.pid, study / "study.sqlite")
        _, err = proc.communicate()
        wall = time.perf_counter() - started
        watch.join()
        if proc.returncode != 0:
            raise SystemExit(f"rustybt optimize failed:\n{err.decode()}")
        import sqlite3
        with sqlite3.connect(study / "study.sqlite") as db:
            trials, bars = db.execute(
                "SELECT count(*), sum(json_extract(metrics, '$.num_equity_points')) FROM trials").fetchone()
            trial_seconds = [d for (d,) in db.execute("SELECT duration_s FROM trials")]
    mib = 2**20
    # The best trial is rerun once more into STUDY/best: count it too.
    return {"jobs": jobs, "trials": trials, "wall_s": wall, "bars_per_s": (trials + 1) * bars / trials / wall,
            "grid_bars_per_s": bars / wall, "mean_trial_s": sum(trial_seconds) / len(trial_seconds),
            "worker_uss_mib": sorted(v / mib for v in watch.grid_uss.values()),
            "rerun_uss_mib": max(watch.rerun_uss.values(), default=0) / mib,
            "tree_pss_mib": watch.grid_tree_pss / mib}


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
              f"(grid only {r['grid_bars_per_s']:,.0f}), mean trial {r['mean_trial_s']:.2f} s")
        uss = ", ".join(f"{v:.1f}" for v in r["worker_uss_mib"])
        print(f"  memory during the grid: peak USS per worker {uss} MiB; the study's processes together "
              f"(PSS) {r['tree_pss_mib']:.1f} MiB; best-trial rerun (a plain run's records) "
              f"USS {r['rerun_uss_mib']:.1f} MiB")
    print(f"1 -> 2 workers: {results[1]['wall_s'] / results[2]['wall_s']:.2f}x  [target >= 1.8x]")
    added = (results[2]["tree_pss_mib"] - results[1]["tree_pss_mib"]) * 2**20 / 1e6
    print(f"the second worker adds {added:.1f} MB to the study (PSS of all its processes, -j 2 minus -j 1); "
          f"a worker's own pages peak at {max(results[2]['worker_uss_mib']) * 2**20 / 1e6:.1f} MB  "
          f"[target <= 50 MB per extra worker]")
    if not args.no_peer:
        peer = run_peer(data, args.peer_rows or args.rows)
        if peer:
            print(f"backtesting.py optimize ({peer['rows']} rows, all cores): {peer['seconds']:.1f} s, "
                  f"{peer['bars_per_s']:,.0f} bars/s")
            print(f"rustybt -j 2 / backtesting.py: {results[2]['grid_bars_per_s'] / peer['bars_per_s']:.1f}x  "
                  f"[target >= 18x; rustybt >= 2,000,000 bars/s]")


if __name__ == "__main__":
    main()
