"""Reading a catalog dataset's partition files directly, as a user's pandas or pyarrow would."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_bars(folder: Path) -> list[list[Any]]:
    """Every partition in `folder` in order, read with pyarrow: [open time ms, open, high, low,
    close, volume], the values as `decimal.Decimal`."""
    import pyarrow.parquet as pq

    rows: list[list[Any]] = []
    for f in sorted(folder.glob("*.parquet")):
        t = pq.read_table(f)
        times = [int(x.value // 1_000_000) for x in t.column("time")]
        cols = [t.column(c).to_pylist() for c in ("open", "high", "low", "close", "volume")]
        rows += [[times[i], *(c[i] for c in cols)] for i in range(len(times))]
    return rows
