"""A panel of many symbols in one CSV (``symbol,timestamp,open,high,low,close,volume``).

Deterministic random walks with 2-decimal prices, rows in time order (every symbol's bar at one
time, then the next time). One-minute bars cover weekday sessions of 390 minutes (14:30 to 21:00
UTC); ``--daily`` gives one bar per weekday instead. Used by ``benches/cross_section.py`` and
``tests/python/test_rust_strategy.py``.

    python examples/make_panel_data.py --symbols 500 --sessions 20 --out panel.csv
    python examples/make_panel_data.py --symbols 500 --sessions 2520 --daily --out daily.csv
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np

MINUTES_PER_SESSION = 390
SESSION_OPEN = dt.timedelta(hours=14, minutes=30)


def session_days(sessions: int, start: dt.date = dt.date(2024, 1, 2)) -> list[dt.date]:
    days, day = [], start
    while len(days) < sessions:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def bar_times_ns(sessions: int, daily: bool) -> np.ndarray:
    """Open times of the bars, UTC nanoseconds."""
    epoch = dt.datetime(1970, 1, 1)
    starts = []
    for day in session_days(sessions):
        midnight = int((dt.datetime.combine(day, dt.time()) - epoch).total_seconds()) * 10**9
        starts.append(midnight if daily else midnight + int(SESSION_OPEN.total_seconds()) * 10**9)
    starts = np.array(starts, dtype=np.int64)
    if daily:
        return starts
    minutes = np.arange(MINUTES_PER_SESSION, dtype=np.int64) * 60 * 10**9
    return (starts[:, None] + minutes[None, :]).ravel()


def write_panel(path: Path, symbols: int, sessions: int, daily: bool = False, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    times = bar_times_ns(sessions, daily)
    volatility = 0.01 if daily else 0.001
    # Prices in cents: a geometric random walk per symbol, rounded to the cent.
    start = rng.uniform(20, 200, symbols)
    walk = np.exp(np.cumsum(rng.normal(0, volatility, (len(times), symbols)), axis=0))
    close = np.maximum(np.round(start * walk * 100), 1).astype(np.int64)
    open_ = np.vstack([np.round(start * 100).astype(np.int64)[None, :], close[:-1]])
    spread = np.round(np.abs(rng.normal(0, volatility, (len(times), symbols))) * close).astype(np.int64)
    high = np.maximum(open_, close) + spread
    low = np.maximum(np.minimum(open_, close) - spread, 1)
    volume = rng.integers(1, 10_000, (len(times), symbols))
    names = np.array([f"S{i:03d}" for i in range(symbols)])
    stamps = np.datetime_as_string(times.astype("datetime64[ns]").astype("datetime64[s]")) + "Z"

    def cents(a: np.ndarray) -> np.ndarray:
        a = a.ravel()
        return np.char.add(np.char.add((a // 100).astype(str), "."), np.char.zfill((a % 100).astype(str), 2))

    columns = [
        np.tile(names, len(times)),
        np.repeat(stamps, symbols),
        cents(open_), cents(high), cents(low), cents(close),
        volume.ravel().astype(str),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write("symbol,timestamp,open,high,low,close,volume\n")
        chunk = 200_000
        for at in range(0, len(columns[0]), chunk):
            part = [c[at : at + chunk] for c in columns]
            f.write("\n".join(",".join(row) for row in zip(*part)))
            f.write("\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--daily", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_panel(args.out, args.symbols, args.sessions, args.daily, args.seed)


if __name__ == "__main__":
    main()
