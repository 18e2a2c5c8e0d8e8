"""rustybt benchmarks (issue 2), optionally beside the peer engines of ../shared/bench-peers.

    .venv/bin/python benches/run_benchmarks.py [--rows 1000000] [--peers]

Prints one table and writes benches/results/latest.json. Figures: bars/s of algorithms/sma_cross.py
(built-in SMAs) and sma_cross_arrays.py (Python) over 1M one-minute bars, ns per bar with an empty
on_tick, ns per ctx.history() call at 1k and at 1M bars of history, the cost per bar of one
indicator by kind (built-in, custom update, custom calculate, talib.SMA by name), and the peak
memory (max RSS) of the sma_cross_arrays run. The whole process of `rustybt run` on sma_cross.py
(start-up, loading, backtest, results; median of --repeat runs) is reported as bars/s and peak RSS,
and with --peers beside the peers' whole processes on the same file.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("RUSTYBT_BIN", ROOT / "target" / "release" / "rustybt"))
PEERS = ROOT.parent / "shared" / "bench-peers"
DATA_DIR = ROOT / "bench-data"


def run_measured(argv: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float, int]:
    """Runs a command; returns the result, wall seconds and peak RSS in MiB (os.wait4)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, **kwargs)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        result = subprocess.CompletedProcess(argv, code, out.read(), err.read())
    if code != 0:
        sys.exit(f"benchmark command failed ({code}): {' '.join(argv)}\n{result.stderr}")
    return result, wall, usage.ru_maxrss // 1024


def make_data(rows: int) -> Path:
    path = DATA_DIR / f"bars_{rows}.csv"
    if path.exists():
        return path
    DATA_DIR.mkdir(exist_ok=True)
    maker = PEERS / "make_data.py"
    if maker.exists():  # the peers' generator, so every engine reads the very same file
        subprocess.run([sys.executable, maker, "--rows", str(rows), "--out", path], check=True)
    else:
        sys.path.insert(0, str(ROOT / "pylib"))
        from rustybt_api.testing import generate_bars, write_csv

        write_csv(path, generate_bars(rows, seed=42, start=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)))
    return path


def rustybt_run(algo: Path, data: Path, *extra: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result, wall, rss = run_measured(
            [str(BIN), "run", "--algo", str(algo), "--data", str(data), "--out", out,
             "--no-progress", "--quiet", "--cash", "1000000", *extra]
        )
        metrics = json.loads((Path(out) / "metrics.json").read_text())
        indicators_csv = Path(out) / "indicators.csv"
        indicators = list(csv.DictReader(indicators_csv.open())) if indicators_csv.exists() else []
        with (Path(out) / "orders.csv").open() as f:
            order_events = sum(1 for _ in f) - 1
    timing = re.search(r"on_tick\s+(\d+) calls\s+([\d.]+) s", result.stderr)
    run = metrics["run"]
    return {
        "bars": run["bars_processed"],
        "loop_seconds": run["wall_seconds"],
        "process_seconds": wall,
        "bars_per_sec": run["bars_processed"] / run["wall_seconds"],
        "process_bars_per_sec": run["bars_processed"] / wall,
        "ns_per_bar": run["wall_seconds"] / run["bars_processed"] * 1e9,
        "on_tick_seconds": float(timing.group(2)) if timing else None,
        "peak_rss_mib": rss,
        "trades": metrics["num_trades"],
        "final_equity": metrics["final_equity"],
        "indicators": indicators,
        "order_events": order_events,
    }


def whole_process(algo: Path, data: Path, repeat: int) -> dict:
    """`rustybt run` timed from start to exit (start-up, load, backtest, results), `repeat`
    times; the median run by process time, with every run's figures."""
    runs = sorted((rustybt_run(algo, data) for _ in range(repeat)), key=lambda r: r["process_seconds"])
    median = dict(runs[len(runs) // 2])
    median["process_seconds_all"] = [round(r["process_seconds"], 3) for r in runs]
    median["loop_bars_per_sec_all"] = [round(r["bars_per_sec"]) for r in runs]
    median["indicators"] = []
    return median


def order_costs(empty: dict, rows: int) -> dict:
    """Orders per bar across three symbols: wall time per order event (submit, accept, fill,
    cancel, expire), over the empty on_tick run on the same data."""
    symbols = [make_symbol_data(rows, seed) for seed in (1, 2, 3)]
    args = [a for path in symbols for a in ("--data", str(path))]
    run = rustybt_run(ROOT / "benches" / "algos" / "order_heavy.py", symbols[0], *args[2:])
    base = rustybt_run(ROOT / "benches" / "algos" / "empty_tick.py", symbols[0], *args[2:])
    events = run["order_events"]
    extra = run["loop_seconds"] - base["loop_seconds"]
    return {
        "bars": run["bars"],
        "order_events": events,
        "seconds": run["loop_seconds"],
        "ns_per_event": extra / max(events, 1) * 1e9,
        "bars_per_sec": run["bars_per_sec"],
    }


def make_symbol_data(rows: int, seed: int) -> Path:
    path = DATA_DIR / f"orders_{rows}_{seed}.csv"
    if not path.exists():
        DATA_DIR.mkdir(exist_ok=True)
        sys.path.insert(0, str(ROOT / "pylib"))
        from rustybt_api.testing import generate_bars, write_csv

        write_csv(path, generate_bars(rows, seed=seed, start=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)),
                  symbol=f"S{seed}")
    return path


def indicator_costs(data: Path, empty: dict) -> dict:
    """Per kind of indicator: the timed call (mean from indicators.csv) and the wall time it
    adds per bar over the empty on_tick run (call + bar object or window view + bookkeeping)."""
    costs = {}
    for kind in ("builtin", "update", "calculate", "talib"):
        run = rustybt_run(ROOT / "benches" / "algos" / "indicator_cost.py", data, "--param", f"kind={kind}")
        (row,) = run["indicators"]
        costs[kind] = {
            "call_mean_ns": float(row["mean_us"]) * 1e3,
            "added_ns_per_bar": (run["loop_seconds"] - empty["loop_seconds"]) / run["bars"] * 1e9,
            "bars_per_sec": run["bars_per_sec"],
        }
    return costs


def peers(data: Path, rows: int) -> list[dict]:
    venv = Path("/tmp/peers")
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "numpy", "pandas", "pyarrow",
                        "backtesting==0.6.6", "backtrader==1.9.78.123"], check=True)
    found = []
    for script in ("run_pure_python.py", "run_backtesting.py", "run_backtrader.py"):
        result, wall, rss = run_measured([str(python), str(PEERS / script), "--data", str(data)], cwd=PEERS)
        for line in result.stdout.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                entry["peak_rss_mib"] = rss
                entry["process_seconds"] = wall
                entry["process_bars_per_sec"] = entry["rows"] / wall
                found.append(entry)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--peers", action="store_true", help="also run the peer engines (needs PyPI)")
    parser.add_argument("--order-rows", type=int, default=50_000, help="bars per symbol of the order-heavy run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the whole-process figure (median)")
    args = parser.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN} is missing: run `make build` first")
    data = make_data(args.rows)
    algos = ROOT / "benches" / "algos"

    sma = rustybt_run(ROOT / "algorithms" / "sma_cross_arrays.py", data)
    builtin = whole_process(ROOT / "algorithms" / "sma_cross.py", data, args.repeat)
    empty = rustybt_run(algos / "empty_tick.py", data)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "history.json"
        rustybt_run(algos / "history_probe.py", data, "--param", f"report={report}",
                    "--param", f"at=[1000, {args.rows}]")
        history = json.loads(report.read_text())

    costs = indicator_costs(data, empty)
    orders = order_costs(empty, args.order_rows)
    engine_only_ns = (empty["loop_seconds"] - (empty["on_tick_seconds"] or 0)) / empty["bars"] * 1e9
    results = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "rows": args.rows,
        "sma_cross_arrays": sma,
        "sma_cross": builtin,
        "empty_on_tick": empty,
        "engine_only_ns_per_bar": engine_only_ns,
        "history": history,
        "indicator_costs": costs,
        "orders": orders,
    }
    lines = [
        f"rustybt benchmarks, {results['date']}, {results['machine']}",
        f"data: {data} ({args.rows} one-minute bars)",
        f"sma_cross_arrays (Python):          {sma['bars_per_sec']:>12,.0f} bars/s  "
        f"(trades {sma['trades']}, final equity {sma['final_equity']})",
        f"sma_cross (built-in SMAs):          {builtin['bars_per_sec']:>12,.0f} bars/s  "
        f"(trades {builtin['trades']}, final equity {builtin['final_equity']})",
        f"sma_cross, whole process:           {builtin['process_bars_per_sec']:>12,.0f} bars/s  "
        f"({builtin['process_seconds']:.3f} s from start to exit, median of {args.repeat}: "
        f"{builtin['process_seconds_all']} s; peak RSS {builtin['peak_rss_mib']} MiB)",
        f"empty on_tick:                      {empty['ns_per_bar']:>12,.0f} ns/bar "
        f"(engine without the Python call: {engine_only_ns:,.0f} ns/bar)",
    ]
    for n, figures in sorted(history.items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"ctx.history() at {int(n):>9,} bars:      {figures['history_ns']:>12,.0f} ns/call "
            f"(+ .close view: {figures['history_close_ns']:,.0f} ns)"
        )
    for kind, cost in costs.items():
        lines.append(
            f"indicator {kind:<10} per bar:      {cost['call_mean_ns']:>12,.0f} ns/call "
            f"(adds {cost['added_ns_per_bar']:,.0f} ns/bar to the empty run)"
        )
    lines.append(
        f"order-heavy (3 symbols, 4 limits/bar each): {orders['order_events']:,} order events, "
        f"{orders['ns_per_event']:,.0f} ns per event (incl. the Python calls that place them)"
    )
    lines.append(f"peak memory, sma_cross_arrays run:       {sma['peak_rss_mib']:>12,} MiB")
    if args.peers:
        results["peers"] = peers(data, args.rows)
        lines.append("whole process on the same file (start to exit, incl. loading and results):")
        lines.append(f"  {'rustybt sma_cross':<24} {builtin['process_bars_per_sec']:>12,.0f} bars/s  "
                     f"peak RSS {builtin['peak_rss_mib']:>5} MiB")
        for peer in results["peers"]:
            lines.append(f"  {peer['engine']:<24} {peer['process_bars_per_sec']:>12,.0f} bars/s  "
                         f"peak RSS {peer['peak_rss_mib']:>5} MiB  "
                         f"rustybt ÷ peer {builtin['process_bars_per_sec'] / peer['process_bars_per_sec']:6.2f}x")
        lines.append("peers on the same file (ratios = rustybt sma_cross / sma_cross_arrays bars/s ÷ peer bars/s):")
        for peer in results["peers"]:
            ratio = sma["bars_per_sec"] / peer["bars_per_sec"]
            ratio_builtin = builtin["bars_per_sec"] / peer["bars_per_sec"]
            lines.append(
                f"  {peer['engine']:<24} {peer['bars_per_sec']:>12,.0f} bars/s  trades {peer['trades']:>6}  "
                f"final {peer['final_value']:>14,.2f}  ratios {ratio_builtin:6.2f}x / {ratio:6.2f}x"
            )
    print("\n".join(lines))
    out = ROOT / "benches" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
