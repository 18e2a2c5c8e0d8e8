"""Benchmark of `rustybt report` (issue 15): a 1M-bar run with 20,000 trades.

    .venv/bin/python benches/report.py [--rows 1000000] [--repeat 3]

Runs benches/algos/report_trades.py over --rows one-minute bars (one round trip every 50 bars),
then times `rustybt report` (the whole process: start-up, reading the folder and the data file,
charts, writing), the size of the HTML file, and, in headless Chromium (selenium), the time from
navigation start to the first chart drawn and to the last. Needs Debian's chromium and
chromium-driver (`make browser`). Prints one table; medians of --repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "tests" / "python"))

from run_benchmarks import BIN, make_data, run_measured  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = make_data(args.rows)
    from report_support import chrome, open_report

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        run_measured([str(BIN), "run", "--algo", str(ROOT / "benches" / "algos" / "report_trades.py"), "--data",
                      str(data), "--out", str(out), "--no-progress", "--quiet", "--cash", "1000000"])
        metrics = json.loads((out / "metrics.json").read_text())
        html = out / "report.html"
        walls, cpus = [], []
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            _, wall, rss = run_measured([str(BIN), "report", str(out)])
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        size_mb = html.stat().st_size / 1e6
        driver = chrome()
        firsts, lasts = [], []
        try:
            for _ in range(args.repeat):
                driver.get("about:blank")
                open_report(driver, html)
                first, last, errors = driver.execute_script(
                    "return [window.rustybt.first, Math.max(...Object.values(window.rustybt.drawn)), window.rustybt.errors]")
                assert not errors, errors
                firsts.append(first / 1000)
                lasts.append(last / 1000)
        finally:
            driver.quit()
    print(f"machine: {platform.machine()} {platform.processor() or ''} {platform.platform()}, {os.cpu_count()} CPUs; "
          f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {os.getloadavg()[0]:.1f}")
    print(f"run: {metrics['run']['bars_processed']} bars, {metrics['num_trades']} trades, "
          f"{metrics['num_equity_points']} equity points")
    print(f"report written (whole process, median of {args.repeat}): {statistics.median(walls):.2f} s "
          f"(CPU {statistics.median(cpus):.2f} s, peak RSS {rss} MiB)  [target <= 3 s]")
    print(f"report size: {size_mb:.2f} MB  [target <= 8 MB]")
    print(f"first chart drawn in Chromium: {statistics.median(firsts):.2f} s after navigation start  [target <= 2 s]")
    print(f"all charts drawn: {statistics.median(lasts):.2f} s")


if __name__ == "__main__":
    main()
