"""Data catalog benchmarks (issue 14), release binary.

    .venv/bin/python benches/data_catalog.py [--rows 1000000] [--repeat 3]

Figures (median of --repeat):
- `rustybt data import` of a --rows CSV in rustybt's layout, and of the same bars in a mapped
  layout (`;`-separated, columns in another order with an extra column, `--columns` by name):
  rows/s of the whole process;
- the whole `rustybt run` of algorithms/sma_cross.py on the CSV (`--data`) and from the catalog
  (`--symbols`): seconds and bars/s;
- the first `on_tick` of a run from the catalog over all --rows bars, after the process
  started (wall clock, an algorithm that stamps its first tick);
- loading the --rows bars from the catalog as a run does, inside one process (wall and CPU,
  best and median of 9): `examples/catalog_load.rs`, when built (`cargo build --release
  --examples`);
- the load average when the figures were taken.

Resolving a request among 10,000 datasets and appending one day to a five-year series are the
Rust tests `catalog::tests::resolve_among_ten_thousand_datasets` and
`append_one_day_to_five_years` (run separately, see docs/performance.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("RUSTYBT_BIN", ROOT / "target" / "release" / "rustybt"))
sys.path.insert(0, str(ROOT / "benches"))
from run_benchmarks import make_data  # noqa: E402


CPU: list[float] = []  # CPU seconds (user + system, all threads) of each timed command


def timed(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr}")
    return wall


def mapped_copy(path: Path, out: Path) -> None:
    with path.open() as f, out.open("w", newline="") as g:
        reader = csv.reader(f)
        writer = csv.writer(g, delimiter=";", lineterminator="\n")
        next(reader)
        writer.writerow(["Close", "Volume", "Note", "Open", "High", "Low", "When"])
        for t, o, h, lo, c, v in reader:
            writer.writerow([c, v, "x", o, h, lo, t])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = make_data(args.rows)
    work = Path(tempfile.mkdtemp(prefix="rustybt-catalog-bench-"))
    try:
        src = work / "BENCH.csv"
        shutil.copy(data, src)
        mapped = work / "MAPPED.csv"
        mapped_copy(src, mapped)
        catalog = work / "catalog"
        imports = []
        import_cpu = []
        for _ in range(args.repeat):
            shutil.rmtree(catalog, ignore_errors=True)
            imports.append(timed([str(BIN), "data", "import", str(src), "--catalog", str(catalog)]))
            import_cpu.append(CPU[-1])
        mapped_imports = []
        for _ in range(args.repeat):
            shutil.rmtree(work / "catalog2", ignore_errors=True)
            mapped_imports.append(
                timed(
                    [str(BIN), "data", "import", str(mapped), "--symbol", "BENCH", "--catalog", str(work / "catalog2"),
                     "--columns", "timestamp=When,open=Open,high=High,low=Low,close=Close,volume=Volume"]
                )
            )
        algo = str(ROOT / "algorithms" / "sma_cross.py")
        csv_runs = [
            timed([str(BIN), "run", "--algo", algo, "--data", str(src), "--no-progress", "--quiet", "--out", str(work / "o1")])
            for _ in range(args.repeat)
        ]
        cat_runs = [
            timed([str(BIN), "run", "--algo", algo, "--symbols", "BENCH", "--catalog", str(catalog), "--no-progress",
                   "--quiet", "--out", str(work / "o2")])
            for _ in range(args.repeat)
        ]
        stamp = work / "first_tick"
        first_ticks = []
        for _ in range(args.repeat):
            started = time.time_ns()
            timed([str(BIN), "run", "--algo", str(ROOT / "benches" / "algos" / "first_tick.py"), "--symbols", "BENCH",
                   "--catalog", str(catalog), "--param", f"stamp={stamp}", "--no-progress", "--quiet",
                   "--out", str(work / "o3")])
            first_ticks.append((int(stamp.read_text()) - started) / 1e9)
        loads = None
        example = BIN.parent / "examples" / "catalog_load"
        if example.exists():  # the load alone, inside one process (`cargo build --release --examples`)
            loads = subprocess.run([str(example), str(catalog), "BENCH", "9"], capture_output=True, text=True,
                                   check=True).stdout.strip()
        med = statistics.median
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"rows: {args.rows}")
        print(f"data import (rustybt layout): {med(imports):.3f} s, {args.rows / med(imports):,.0f} rows/s; "
              f"CPU {med(import_cpu):.3f} s, {args.rows / med(import_cpu):,.0f} rows per CPU-second")
        print(f"data import (mapped ;-separated): {med(mapped_imports):.3f} s, {args.rows / med(mapped_imports):,.0f} rows/s")
        print(f"run sma_cross --data CSV: {med(csv_runs):.3f} s, {args.rows / med(csv_runs):,.0f} bars/s")
        print(f"run sma_cross --symbols (catalog): {med(cat_runs):.3f} s, {args.rows / med(cat_runs):,.0f} bars/s")
        print(f"first on_tick after the process started (catalog, {args.rows} bars): {med(first_ticks) * 1000:.0f} ms")
        if loads:
            print(loads)
        size = sum(p.stat().st_size for p in catalog.rglob("*.parquet"))
        print(f"catalog size: {size / 2**20:.1f} MiB (CSV {src.stat().st_size / 2**20:.1f} MiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
