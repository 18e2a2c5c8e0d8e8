"""The cost of the Python bridge: the same strategies in Python and in Rust on one engine.

    .venv/bin/python benches/cross_section.py [--repeat 3] [--symbols 500] [--sessions 20]

A. Cross-sectional: `examples/momentum_top_decile.py` (a scheduled NumPy callback every 30
   minutes, no per-bar Python) against `examples/rust_momentum.rs` on 500 symbols × 20 sessions
   of one-minute bars (3.9M bars), then on 500 × 2,520 daily bars rebalancing at every bar.
B. Per bar: `algorithms/sma_cross.py` (built-in SMAs, `on_tick` per bar) against
   `examples/rust_sma_cross.rs` on the peers' 1M one-minute file.

Each pair runs `--repeat` times alternately; the figures are medians. Every run's fills, trades
and equity files are compared byte for byte between the two languages (the script stops if they
differ). Prints a table and writes benches/results/cross_section.json. Needs the release binary and
the examples: `cargo build --release --examples`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "examples"))

from make_panel_data import write_panel  # noqa: E402
from run_benchmarks import BIN, make_data, run_measured  # noqa: E402

EXAMPLES = ROOT / "target" / "release" / "examples"
DATA_DIR = ROOT / "bench-data"
CASH = "1000000"


def python_run(algo: Path, data: Path, out: Path, *extra: str) -> dict:
    result, wall, rss = run_measured(
        [str(BIN), "run", "--algo", str(algo), "--data", str(data), "--out", str(out),
         "--no-progress", "--quiet", "--cash", CASH, *extra]
    )
    run = json.loads((out / "metrics.json").read_text())["run"]
    hook = re.search(r"on_tick\s+(\d+) calls\s+([\d.]+) s", result.stderr)
    return {"bars": run["bars_processed"], "loop_seconds": run["wall_seconds"], "process_seconds": wall,
            "peak_rss_mib": rss, "on_tick_seconds": float(hook.group(2)) if hook else None}


def rust_run(example: str, data: Path, out: Path, *extra: str) -> dict:
    result, wall, rss = run_measured(
        [str(EXAMPLES / example), "--data", str(data), "--out", str(out), "--cash", CASH, *extra]
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return {"bars": report["bars"], "loop_seconds": report["loop_seconds"], "process_seconds": wall,
            "peak_rss_mib": rss}


def same_results(a: Path, b: Path) -> None:
    for name in ("fills.csv", "trades.csv", "equity.csv"):
        if (a / name).read_bytes() != (b / name).read_bytes():
            sys.exit(f"{name} differs between the Python and the Rust run ({a}, {b})")


def pair(name: str, python: tuple, rust: tuple, data: Path, repeat: int) -> dict:
    runs: dict[str, list[dict]] = {"python": [], "rust": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            py_out, rs_out = Path(tmp) / "py", Path(tmp) / "rs"
            runs["python"].append(python_run(python[0], data, py_out, *python[1:]))
            runs["rust"].append(rust_run(rust[0], data, rs_out, *rust[1:]))
            same_results(py_out, rs_out)
    med = {
        side: {key: statistics.median(r[key] for r in rs) for key in ("loop_seconds", "process_seconds", "peak_rss_mib")}
        | {"bars": rs[0]["bars"], "loop_seconds_all": [round(r["loop_seconds"], 4) for r in rs]}
        for side, rs in runs.items()
    }
    hooks = [r["on_tick_seconds"] for r in runs["python"] if r["on_tick_seconds"] is not None]
    if hooks:
        med["python"]["on_tick_seconds"] = statistics.median(hooks)
    med["ratio_loop"] = med["python"]["loop_seconds"] / med["rust"]["loop_seconds"]
    med["ratio_process"] = med["python"]["process_seconds"] / med["rust"]["process_seconds"]
    med["name"] = name
    med["identical_results"] = True
    return med


def panel(symbols: int, sessions: int, daily: bool) -> Path:
    path = DATA_DIR / f"panel_{symbols}x{sessions}_{'1d' if daily else '1m'}.csv"
    if not path.exists():
        write_panel(path, symbols, sessions, daily)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--daily-sessions", type=int, default=2520)
    parser.add_argument("--rows", type=int, default=1_000_000, help="bars of the per-bar benchmark")
    parser.add_argument("--only", choices=["A_minute", "A_daily", "B_sma_cross"], action="append",
                        help="run only these benchmarks (repeatable)")
    args = parser.parse_args()
    for needed in (BIN, EXAMPLES / "rust_momentum", EXAMPLES / "rust_sma_cross"):
        if not needed.exists():
            sys.exit(f"{needed} is missing: run `cargo build --release --examples` first")
    momentum = ROOT / "examples" / "momentum_top_decile.py"
    results = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
    }
    wanted = set(args.only or ["A_minute", "A_daily", "B_sma_cross"])
    if "A_minute" in wanted:
        results["A_minute"] = pair(
            f"A: top-decile momentum, {args.symbols} symbols x {args.sessions} sessions of 1m bars, every 30m",
            (momentum,), ("rust_momentum",), panel(args.symbols, args.sessions, False), args.repeat)
    if "A_daily" in wanted:
        results["A_daily"] = pair(
            f"A': the same, {args.symbols} symbols x {args.daily_sessions} daily bars, every bar",
            (momentum, "--param", "every=bar"), ("rust_momentum", "--every", "bar"),
            panel(args.symbols, args.daily_sessions, True), args.repeat)
    if "B_sma_cross" in wanted:
        results["B_sma_cross"] = pair(
            f"B: sma_cross per bar, {args.rows:,} one-minute bars",
            (ROOT / "algorithms" / "sma_cross.py",), ("rust_sma_cross",), make_data(args.rows), args.repeat)
    results["load_after"] = os.getloadavg()

    lines = [f"Python vs Rust on one engine, {results['date']}, {results['machine']}, "
             f"load {results['load_before'][0]:.2f} -> {results['load_after'][0]:.2f}"]
    for key in ("A_minute", "A_daily", "B_sma_cross"):
        if key not in results:
            continue
        r = results[key]
        py, rs = r["python"], r["rust"]
        lines.append(r["name"])
        lines.append(f"  backtest loop   Python {py['loop_seconds']:.3f} s  Rust {rs['loop_seconds']:.3f} s  "
                     f"ratio {r['ratio_loop']:.3f}  ({py['bars']:,} bars; "
                     f"{py['bars'] / py['loop_seconds']:,.0f} vs {rs['bars'] / rs['loop_seconds']:,.0f} bars/s)")
        lines.append(f"  whole process   Python {py['process_seconds']:.3f} s  Rust {rs['process_seconds']:.3f} s  "
                     f"ratio {r['ratio_process']:.3f}; peak RSS {py['peak_rss_mib']:.0f} / {rs['peak_rss_mib']:.0f} MiB")
        if "on_tick_seconds" in py:
            lines.append(f"  Python on_tick calls (sampled timing): {py['on_tick_seconds']:.3f} s")
        pairs = [round(p / q, 3) for p, q in zip(py["loop_seconds_all"], rs["loop_seconds_all"])]
        lines.append(f"  loop times, all runs: Python {py['loop_seconds_all']}  Rust {rs['loop_seconds_all']}; "
                     f"ratio per pair {pairs}; fills, trades and equity identical")
    print("\n".join(lines))
    out = ROOT / "benches" / "results"
    out.mkdir(exist_ok=True)
    (out / "cross_section.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
