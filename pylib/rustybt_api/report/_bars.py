"""The run's bar data, read again for the report: closes for prices, the benchmark and exposure.

Reads the files listed in metrics.json's ``run.data_files`` (CSV or Parquet, a ``symbol`` column
or one symbol per file named by its stem), as the engine does for the usual layouts. A file that
is gone or unreadable leaves its symbols without prices: the report says so and draws the rest.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

TIME_NAMES = ("timestamp", "time", "datetime", "date", "open_time")


class Closes:
    """Close prices by symbol: ``times_ns`` (bar close time, sorted: when the close is known,
    as the equity is stamped) and ``close`` arrays."""

    def __init__(self) -> None:
        self.series: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
        self.notes: list[str] = []

    def asof(self, symbol: str, times_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """The last close at or before each time (NaN before the first bar)."""
        times, close = self.series[symbol]
        at = np.searchsorted(times, times_ns, side="right") - 1
        out = np.where(at >= 0, close[np.clip(at, 0, None)], np.nan)
        return out.astype(np.float64)


def _time_ns(column: Any) -> npt.NDArray[np.int64]:
    pd: Any = importlib.import_module("pandas")
    values = column
    if np.issubdtype(np.asarray(values).dtype, np.number):
        raw = np.asarray(values, dtype=np.int64)
        top = int(np.abs(raw).max()) if len(raw) else 0
        # epoch in s, ms, us or ns: pick the unit that gives a date after 1990
        scale = 1 if top > 10**17 else 1_000 if top > 10**14 else 1_000_000 if top > 10**11 else 1_000_000_000
        return raw * scale
    parsed = pd.to_datetime(pd.Series(values), utc=True, format="ISO8601")
    return np.asarray(parsed.array.asi8, dtype=np.int64)


def read_file(path: Path, symbols: list[str], closes: Closes) -> None:
    pa_csv: Any = importlib.import_module("pyarrow.csv")
    pq: Any = importlib.import_module("pyarrow.parquet")
    pa: Any = importlib.import_module("pyarrow")
    if path.suffix.lower() in (".parquet", ".pq"):
        table = pq.read_table(path)
    else:
        table = _read_csv(path, pa, pa_csv)
    names = {name.strip().lower(): name for name in table.column_names}
    time_name = next((names[n] for n in TIME_NAMES if n in names), None)
    if time_name is None or "close" not in names:
        closes.notes.append(f"{path.name}: no time or close column; its prices are not drawn")
        return
    close_col = table.column(names["close"])
    if not pa.types.is_floating(close_col.type):
        close_col = close_col.cast(pa.float64())
    close = close_col.to_numpy(zero_copy_only=False).astype(np.float64)
    time_col = table.column(time_name)
    if pa.types.is_timestamp(time_col.type):
        times = time_col.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    else:
        times = _time_ns(time_col.to_numpy(zero_copy_only=False))
    if "symbol" in names:
        symbol_values = np.asarray(table.column(names["symbol"]).to_numpy(zero_copy_only=False)).astype(str)
        for symbol in np.unique(symbol_values):
            mask = symbol_values == symbol
            _add(closes, str(symbol), times[mask], close[mask])
    else:
        stem = path.stem
        symbol = stem if stem in symbols or len(symbols) != 1 else symbols[0]
        _add(closes, symbol, times, close)


def _read_csv(path: Path, pa: Any, pa_csv: Any) -> Any:
    """Only the time, close and symbol columns; ISO times parsed by Arrow when they are."""
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    by_lower = {name.strip().lower(): name for name in header}
    wanted = [by_lower[n] for n in (*TIME_NAMES, "close", "symbol") if n in by_lower]
    types = {by_lower["close"]: pa.float64()} if "close" in by_lower else {}
    time_name = next((by_lower[n] for n in TIME_NAMES if n in by_lower), None)
    try:
        if time_name is not None:
            types[time_name] = pa.timestamp("ns", tz="UTC")
        return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(include_columns=wanted, column_types=types))
    except pa.ArrowInvalid:  # epoch numbers or another layout: parsed below instead
        if time_name is not None:
            del types[time_name]
        return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(include_columns=wanted, column_types=types))


def _add(closes: Closes, symbol: str, times: Any, close: Any) -> None:
    order = np.argsort(times, kind="stable")
    times, close = np.asarray(times)[order].astype(np.int64), np.asarray(close)[order]
    if symbol in closes.series:
        old_t, old_c = closes.series[symbol]
        times, close = np.concatenate([old_t, times]), np.concatenate([old_c, close])
        order = np.argsort(times, kind="stable")
        times, close = times[order], close[order]
    closes.series[symbol] = (times, close)


def load_closes(files: list[str], symbols: list[str], interval_ns: int) -> Closes:
    """Closes of every readable file, stamped at bar close (open time + ``interval_ns``)."""
    closes = Closes()
    for name in files:
        path = Path(name)
        if not path.is_file():
            closes.notes.append(f"data file {name} is gone; its prices are not drawn")
            continue
        try:
            read_file(path, symbols, closes)
        except Exception as err:  # noqa: BLE001 - any unreadable file only loses its charts
            closes.notes.append(f"cannot read {name} ({type(err).__name__}: {err}); its prices are not drawn")
    for symbol, (times, close) in closes.series.items():
        closes.series[symbol] = (times + interval_ns, close)
    return closes
