"""`rustybt live` bar lag on the websocket (candles, trades) and REST feeds (docs/performance.md,
"Live: websocket data"): the release binary against the fake Binance (1 s bars appearing exactly
at their close, each bar's trades at 0.1, 0.35, 0.6 and 0.85 s into it, no drops), 40 bars per
feed; the lag of bar n is the wall time its ``BAR n`` log line was audited
minus the bar's close time (so it includes the algorithm's step).

Usage: python benches/live_ws_lag.py   (needs target/release/rustybt, or RUSTYBT_BIN)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "python"), str(ROOT)]
os.environ.setdefault("RUSTYBT_BIN", str(ROOT / "target" / "release" / "rustybt"))

from test_live_exchange import FLIP, Live, script, write_config  # noqa: E402
from test_live_ws import WsFake  # noqa: E402

BARS = 40


def lags_ms(folder: Path, start_ms: int) -> list[float]:
    out = []
    for line in (folder / "state" / "audit.jsonl").read_text().splitlines():
        event = json.loads(line)
        message = event["fields"].get("message", "")
        if "Flip: BAR " in message:
            # candle k of the path closes at 64000 + k + 0.10, at start + (k + 1) s (the close
            # names the candle: a slow start's first bar is not candle 0)
            k = int(float(message.split(" close ")[1]) - 64000)
            audited = dt.datetime.fromisoformat(event["time"][:26]).replace(tzinfo=dt.timezone.utc).timestamp()
            out.append((audited - (start_ms + (k + 1) * 1000) / 1000) * 1000)
    return out


def main() -> None:
    binary = Path(os.environ["RUSTYBT_BIN"])
    for mode in ("poll", "ws", "ws-trades"):
        folder = Path(tempfile.mkdtemp(prefix=f"rustybt-ws-lag-{mode}-"))
        scenario = script(path=[f"{64000 + i}.10" for i in range(BARS + 5)])
        scenario["clock"]["align_to_wall"] = True
        scenario["websocket"] = {}
        fake = WsFake(scenario, folder)
        try:
            live = Live(binary, fake, folder / "state", write_config(folder), folder, FLIP)
            argv = live.argv(max_bars=BARS, params={"buy_at": 0, "sell_at": 0}, out=folder / "out")
            argv += ["--feed-mode", mode, "--exchange-ws-url", fake.ws_url]
            run = subprocess.run(argv, capture_output=True, text=True, env=live.env(), cwd=folder, timeout=120)
            assert run.returncode == 0, run.stderr
            lags = sorted(lags_ms(folder, scenario["clock"]["start_ms"]))
            p90 = statistics.quantiles(lags, n=10)[8]
            print(f"{mode}: {len(lags)} bars, lag median {statistics.median(lags):.1f} ms, p90 {p90:.1f} ms, max {lags[-1]:.1f} ms")
        finally:
            fake.stop()


if __name__ == "__main__":
    main()
