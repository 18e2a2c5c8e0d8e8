"""Regenerates the bundled SYNTHETIC sample data in examples/data/sample/.

Three made-up symbols (SYNA, SYNB, SYNC), one week of 1-minute bars each, from a seeded
geometric random walk (see rustybt_api.testing.generate_bars). Not real market data.

    python examples/make_sample_data.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pylib"))

from rustybt_api.testing import generate_bars, write_csv  # noqa: E402

ROWS = 7 * 24 * 60
SAMPLES = {
    "SYNA": dict(seed=1, start_price=100.0, volatility=0.0010),
    "SYNB": dict(seed=2, start_price=250.0, volatility=0.0015),
    "SYNC": dict(seed=3, start_price=40.0, volatility=0.0020),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "data" / "sample")
    out = parser.parse_args().out
    for symbol, params in SAMPLES.items():
        path = write_csv(out / f"{symbol}.csv", generate_bars(ROWS, **params))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
