"""`rustybt data fetch --source ccxt:binance` against the local Binance stand-in, release binary.

    .venv/bin/python benches/data_fetch.py [--bars 200000] [--repeat 3]

The stand-in (tests/support/fake_binance.py, in this process) serves --bars one-minute candles
of BTC/USDT in pages of 1000; the whole process (start, Python and ccxt import, markets, every
page through ccxt's rate limiter at Binance's 50 ms, validation, batched catalog commits) is
timed into a fresh catalog each time. Prints the median seconds and bars/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("RUSTYBT_BIN", ROOT / "target" / "release" / "rustybt"))
sys.path.insert(0, str(ROOT))
from tests.support.fake_binance import FakeBinance, Market, generate_history  # noqa: E402

T0 = 1_704_067_200_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fake = FakeBinance(markets=[Market("BTCUSDT", "BTC", "USDT")], now_ms=T0 + args.bars * 60_000, time_follows_clock=True)
    fake.add_candles("BTCUSDT", "1m", generate_history(T0, args.bars, "1m"))
    walls = []
    with fake:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                argv = [str(BIN), "data", "--catalog", tmp, "fetch", "--source", "ccxt:binance", "--symbols", "BTC/USDT",
                        "--timeframe", "1m", "--start", "2024-01-01", "--exchange-url", fake.url, "--no-progress"]
                started = time.perf_counter()
                proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
                walls.append(time.perf_counter() - started)
                if proc.returncode != 0 or f"fetched {args.bars} bars" not in proc.stdout:
                    sys.exit(f"failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    wall = statistics.median(walls)
    pages = -(-args.bars // 1000)
    print(f"data fetch of {args.bars} bars ({pages} pages): {wall:.2f} s median of {args.repeat}, "
          f"{args.bars / wall:,.0f} bars/s ({' '.join(f'{w:.2f}' for w in walls)} s)")


if __name__ == "__main__":
    main()
