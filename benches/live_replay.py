"""Live paper replay speed and tick-to-order latency (docs/performance.md, "Live").

Runs `rustybt live --broker paper --feed replay:FILE --speed 0` (the release binary unless
RUSTYBT_BIN says otherwise) with RUSTYBT_LIVE_STATS, which makes the session write its loop
figures: bars, the loop's seconds (first bar received to the end of the feed) and, for every
order, the time from its bar being received to the order being handed to the broker (the
order's intent journaled; an exchange's round trip is not in it).

    .venv/bin/python benches/live_replay.py                      # the sample, sma_cross
    .venv/bin/python benches/live_replay.py --bars 200000 --runs 5
    .venv/bin/python benches/live_replay.py --bars 200000 --api --api-load   # the control API on,
                                  # a client polling /status, /metrics, /orders and streaming /events

Prints the machine, the date, bars/s of the loop and of the whole process (wall time, and per
CPU second), and the latency percentiles (p50/p99/max) over all orders of all runs.
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
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pylib"))


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs"


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[k])


API_TOKEN = "bench-token-0123456789abcdef"


def load_api(proc: subprocess.Popen[str], lines: list[str], counts: dict[str, int]) -> None:
    """Once the API is up, a busy dashboard until the session ends: /status, /metrics and
    /orders 10 times a second each, and the /events stream (counts what it got)."""
    import websocket  # websocket-client

    while proc.poll() is None and not any(l.startswith("control API on ") for l in lines):
        time.sleep(0.01)
    url = next((l.split()[3] for l in lines if l.startswith("control API on ")), None)
    if url is None:
        return
    headers = {"Authorization": f"Bearer {API_TOKEN}"}

    def stream() -> None:
        try:
            socket = websocket.create_connection(url.replace("http", "ws") + "/events?from=0",
                                                 header=[f"Authorization: Bearer {API_TOKEN}"], timeout=60)
            while socket.recv():
                counts["events"] += 1
        except Exception:
            pass

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    while proc.poll() is None:
        time.sleep(0.1)
        for path in ("/status", "/metrics", "/orders"):
            try:
                with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers), timeout=10) as r:
                    r.read()
                counts["requests"] += 1
            except Exception:
                pass
    streamer.join(timeout=10)


def run_session(argv: list[str], env: dict[str, str], load: bool) -> tuple[int, str, dict[str, int]]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    counts = {"requests": 0, "events": 0}

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    loader = threading.Thread(target=load_api, args=(proc, lines, counts), daemon=True)
    if load:
        loader.start()
    reader.join()
    proc.wait()
    if load:
        loader.join()
    return proc.returncode, "\n".join(lines), counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.environ.get("RUSTYBT_BIN", str(ROOT / "target/release/rustybt")))
    parser.add_argument("--algo", default=str(ROOT / "algorithms/sma_cross.py"))
    parser.add_argument("--data", default=str(ROOT / "examples/data/sample/SYNA.csv"))
    parser.add_argument("--symbol", default="SYNA")
    parser.add_argument("--bars", type=int, default=0, help="generate a random walk of this many 1m bars instead")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state-dir", default=None, help="where the state folders go (default: a temporary folder)")
    parser.add_argument("--api", action="store_true", help="serve the control API (--api 127.0.0.1:0)")
    parser.add_argument("--api-load", action="store_true", help="with --api: a client polls and streams meanwhile")
    args = parser.parse_args()

    python = os.environ.get("RUSTYBT_PYTHON", str(ROOT / ".venv/bin/python"))
    env = {**os.environ, "NO_COLOR": "1", "RUSTYBT_PYTHON": python, "RUSTYBT_HOME": str(ROOT)}
    with tempfile.TemporaryDirectory(dir=args.state_dir) as tmp_name:
        tmp = Path(tmp_name)
        data, symbol = Path(args.data), args.symbol
        if args.bars:
            from rustybt_api.testing import generate_bars, write_csv

            data, symbol = write_csv(tmp / "bars.csv", list(generate_bars(args.bars, seed=7))), "BARS"
        loop_rates, process_rates, cpu_rates, latencies = [], [], [], []
        bars = orders = 0
        api_requests = api_events = 0
        tokens = tmp / "api-tokens"
        tokens.write_text(f"bench:{API_TOKEN}\n")
        tokens.chmod(0o600)
        for run in range(args.runs):
            stats = tmp / f"stats{run}.json"
            argv = [args.bin, "live", "--algo", args.algo, "--broker", "paper", "--feed", f"replay:{data}",
                    "--symbols", symbol, "--timeframe", "1m", "--speed", "0", "--quiet",
                    "--state", str(tmp / f"state{run}"), "--out", str(tmp / f"out{run}")]
            if args.api:
                argv += ["--api", "127.0.0.1:0", "--api-token-file", str(tokens), "--api-rate-limit", "1000000"]
            started = time.perf_counter()
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            returncode, stderr, counts = run_session(argv, {**env, "RUSTYBT_LIVE_STATS": str(stats)},
                                                     args.api and args.api_load)
            elapsed = time.perf_counter() - started
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
            api_requests += counts["requests"]
            api_events += counts["events"]
            if returncode != 0:
                print(stderr, file=sys.stderr)
                return returncode
            figures = json.loads(stats.read_text())
            bars = figures["bars"]
            orders = len(figures["tick_to_order_ns"])
            loop_rates.append(bars / figures["loop_seconds"])
            process_rates.append(bars / elapsed)
            cpu_rates.append(bars / cpu)
            latencies += figures["tick_to_order_ns"]
    print(f"machine: {machine()}")
    print(f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"replay: {data.name if not args.bars else f'{args.bars} generated bars'}, {Path(args.algo).name}, "
          f"{bars} bars, {orders} orders per run, {args.runs} runs")
    print(f"loop bars/s: median {statistics.median(loop_rates):,.0f} (runs: "
          f"{', '.join(f'{r:,.0f}' for r in loop_rates)})")
    print(f"whole process bars/s: median {statistics.median(process_rates):,.0f} (Python start and results included)")
    print(f"whole process bars per CPU second: median {statistics.median(cpu_rates):,.0f} "
          f"(user + system time: what a loaded machine does not distort)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.api and args.api_load:
        print(f"control API on, a dashboard polling /status, /metrics, /orders 10/s each and streaming /events: "
              f"{api_requests / args.runs:,.0f} requests and {api_events / args.runs:,.0f} events per run")
    elif args.api:
        print("control API on, no client")
    if latencies:
        us = [v / 1000 for v in latencies]
        print(f"tick-to-order latency: p50 {percentile(us, 0.5):,.0f} µs, p99 {percentile(us, 0.99):,.0f} µs, "
              f"max {max(us):,.0f} µs over {len(us)} orders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
