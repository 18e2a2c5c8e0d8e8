"""A results folder in pandas, for notebooks and scripts; no engine needed.

.. code-block:: python

    from rustybt_api import results

    r = results.load("runs/sma")          # a folder `rustybt run` wrote
    r.metrics["max_drawdown"]            # a pandas Series of metrics.json
    r.equity["equity"]                   # Decimal values on a UTC DatetimeIndex
    results.as_float(r.trades)["pnl"].sum()
    r                                    # a notebook shows a summary table
    r.report()                           # the interactive HTML report, inline

    r2 = results.run(algo="algorithms/sma_cross.py", params={"fast": 5})  # runs the binary

Money columns hold ``decimal.Decimal`` values exactly as written (object dtype);
:func:`as_float` converts them for plotting and arithmetic that may round. Frames are indexed
by a UTC ``DatetimeIndex`` named ``time``: the tick time (equity), the fill or order event time,
the cost's time, and for trades the exit time (when the PnL is realized; ``entry_time`` stays a
column). The frames are read on first access and kept.
"""

from __future__ import annotations

import functools
import html
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

__all__ = ["Results", "ResultsError", "as_float", "load", "run", "MONEY_COLUMNS"]

#: Columns that hold exact decimal amounts in the CSV files (prices, quantities, money, rates).
MONEY_COLUMNS = frozenset({
    "cash", "equity", "qty", "quantity", "price", "fee", "fees", "pnl", "max_qty", "limit", "stop",
    "fill_quantity", "fill_price", "filled_quantity", "amount", "base", "annual_rate", "mae", "mfe",
})
#: Columns that hold RFC 3339 UTC times.
TIME_COLUMNS = ("time", "entry_time", "exit_time")
#: The tables of a results folder: file stem -> column used as the index.
TABLES = {
    "equity": "time", "fills": "time", "trades": "exit_time", "orders": "time", "costs": "time",
    "records": "time",
}


class ResultsError(Exception):
    """A results folder that cannot be read (missing, incomplete, or a run that failed)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _pd() -> Any:
    return importlib.import_module("pandas")  # no type information without pandas-stubs


def _decimal(text: Any) -> Any:
    if text is None or text == "" or (isinstance(text, float) and text != text):
        return None
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return None


def as_float(frame: Any) -> Any:
    """A copy of ``frame`` (DataFrame or Series) with its Decimal columns as float64."""
    pd = _pd()
    if isinstance(frame, pd.Series):
        return pd.to_numeric(frame.map(lambda v: None if v is None else float(v)), errors="coerce")
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype == object and column.map(lambda v: isinstance(v, Decimal)).any():
            out[name] = as_float(column)
    return out


def _metric_value(value: Any) -> Any:
    """metrics.json writes money as decimal strings and ratios as numbers."""
    if isinstance(value, str):
        number = _decimal(value)
        return number if number is not None else value
    return value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        out[prefix] = value
    else:
        out[prefix] = _metric_value(value)


@dataclass
class Results:
    """One results folder (see the module documentation)."""

    path: Path
    #: metrics.json as written (nested dicts, money as strings).
    raw: dict[str, Any]

    @functools.cached_property
    def metrics(self) -> Any:
        """Every metric of metrics.json as a pandas Series (money as Decimal, ``null`` as None);
        nested groups flattened as ``costs.commission``, ``orders.rejected``. Run information is
        in :attr:`info`, the reasons for missing metrics in :attr:`unavailable`."""
        flat: dict[str, Any] = {}
        for key, value in self.raw.items():
            if key not in ("run", "unavailable"):
                _flatten(key, value, flat)
        return _pd().Series(flat, dtype=object, name="metrics")

    @property
    def info(self) -> dict[str, Any]:
        """The ``run`` section of metrics.json: algorithm, parameters, data files, symbols..."""
        run = self.raw.get("run")
        return run if isinstance(run, dict) else {}

    @property
    def unavailable(self) -> dict[str, str]:
        """Why a metric is null, by metric name."""
        reasons = self.raw.get("unavailable")
        return reasons if isinstance(reasons, dict) else {}

    def table(self, name: str, money: str = "decimal", columns: Sequence[str] | None = None) -> Any:
        """The DataFrame of ``name`` (``equity``, ``fills``, ``trades``, ``orders``, ``costs``,
        ``records``), money as ``"decimal"`` or ``"float"``; empty when the file is absent.
        ``columns`` reads only those (and the index) from a Parquet file."""
        if money not in ("decimal", "float"):
            raise ValueError(f"money must be 'decimal' or 'float', got {money!r}")
        wanted = tuple(columns) if columns is not None else None
        return _read_table(self.path, name, money == "float", wanted).copy()

    @functools.cached_property
    def equity(self) -> Any:
        """Cash and equity after every tick."""
        return self.table("equity")

    @functools.cached_property
    def fills(self) -> Any:
        """Every execution: symbol, side, qty, price, fee, order_id."""
        return self.table("fills")

    @functools.cached_property
    def trades(self) -> Any:
        """Closed round trips, indexed by exit time: symbol, direction, max_qty, entry_time,
        exit_time, pnl, fees (and MAE/MFE when the run wrote them)."""
        return self.table("trades")

    @functools.cached_property
    def orders(self) -> Any:
        """Every order state change (one row per event): status, fills, rejection reason."""
        return self.table("orders")

    @functools.cached_property
    def costs(self) -> Any:
        """Every commission, slippage, borrow and financing charge."""
        return self.table("costs")

    @functools.cached_property
    def records(self) -> Any:
        """Values the algorithm recorded with ``self.record(name, value)``: name, value."""
        return self.table("records")

    def report(self, path: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        """Writes the HTML report (``report.html`` in the folder unless ``path``) and returns an
        object a notebook displays inline (an iframe of the self-contained page). ``options``
        as :func:`rustybt_api.report.write_report` (``benchmark``, ``window``)."""
        from .report import write_report

        out = write_report(self.path, Path(path) if path else None, **options)
        return _InlineReport(out)

    def _repr_html_(self) -> str:
        info = self.info
        rows = [
            ("Algorithm", f"{info.get('class_name', '?')} ({Path(str(info.get('algorithm', '?'))).name})"),
            ("Parameters", ", ".join(f"{k}={v}" for k, v in (info.get("parameters") or {}).items()) or "none"),
            ("Period", f"{self.raw.get('start_time')} .. {self.raw.get('end_time')}"),
            ("Status", str(self.raw.get("status"))),
        ]
        for key in ("final_equity", "net_profit", "total_return", "sharpe", "max_drawdown", "num_trades",
                    "win_rate"):
            if key in self.raw:
                rows.append((key, _format(self.raw[key])))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<table><caption>rustybt results: {html.escape(str(self.path))}</caption>{body}</table>"

    def __repr__(self) -> str:
        return f"Results({str(self.path)!r}, status={self.raw.get('status')!r})"


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class _InlineReport:
    """The report file; Jupyter shows it in an iframe (its scripts stay inside the page)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _repr_html_(self) -> str:
        page = html.escape(self.path.read_text(encoding="utf-8"), quote=True)
        return f'<iframe srcdoc="{page}" style="width:100%;height:900px;border:0"></iframe>'

    def __repr__(self) -> str:
        return f"report: {self.path}"


def load(path: str | os.PathLike[str]) -> Results:
    """Reads the results folder ``path`` (metrics.json now, the tables on first access)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ResultsError(f"`{folder}` is not a results folder (no such directory)",
                           "give the folder `rustybt run --out` wrote, e.g. runs/<date>-<time>")
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise ResultsError(f"`{folder}` has no metrics.json: the run did not finish writing its results",
                           "rerun the backtest; metrics.json is written last")
    try:
        raw = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ResultsError(f"cannot read `{metrics_path}`: {err}") from None
    if not isinstance(raw, dict):
        raise ResultsError(f"`{metrics_path}` is not a JSON object")
    return Results(path=folder.resolve(), raw=raw)


@functools.lru_cache(maxsize=32)
def _read_cached(folder: str, stamp: float, name: str, as_floats: bool, columns: tuple[str, ...] | None) -> Any:
    return _read(Path(folder), name, as_floats, columns)


def _read_table(folder: Path, name: str, as_floats: bool, columns: tuple[str, ...] | None = None) -> Any:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    files = [folder / f"{name}.parquet", folder / f"{name}.csv"]
    stamp = max((f.stat().st_mtime for f in files if f.exists()), default=0.0)
    return _read_cached(str(folder), stamp, name, as_floats, columns)


def _read(folder: Path, name: str, as_floats: bool, columns: tuple[str, ...] | None = None) -> Any:
    pd = _pd()
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    index = TABLES[name]
    if parquet.is_file():
        pq: Any = importlib.import_module("pyarrow.parquet")
        pa: Any = importlib.import_module("pyarrow")
        if columns is not None:
            present = set(pq.read_schema(parquet).names)
            columns = tuple(c for c in dict.fromkeys((index, *columns)) if c in present)
        table = pq.read_table(parquet, columns=None if columns is None else list(columns))
        if as_floats:
            # Decimal128 to float64 in Arrow, no Python object per value; through the decimal
            # text, whose parsing rounds correctly (a direct cast can be one ulp off).
            arrays = [
                table.column(i).cast(pa.string()).cast(pa.float64()) if pa.types.is_decimal(f.type)
                else table.column(i)
                for i, f in enumerate(table.schema)
            ]
            table = pa.table(arrays, names=table.schema.names)
        frame = table.to_pandas()
    elif csv.is_file():
        frame = _read_csv(csv, as_floats)
    else:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
    if index in frame.columns:
        frame.index = pd.DatetimeIndex(frame[index], name="time")
        if index == "time":
            frame = frame.drop(columns=["time"])
    return frame


def _read_csv(path: Path, as_floats: bool) -> Any:
    """A results CSV through Arrow's reader: times parsed in C++, money as exact Decimal (or
    float64), empty cells as missing."""
    import csv as _csv

    pa: Any = importlib.import_module("pyarrow")
    pa_csv: Any = importlib.import_module("pyarrow.csv")
    pd = _pd()
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(_csv.reader(handle), [])
    types = {name: pa.timestamp("ns", tz="UTC") if name in TIME_COLUMNS else pa.string() for name in header}
    table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
        column_types=types, strings_can_be_null=True, null_values=[""]))
    columns: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if name in MONEY_COLUMNS:
            if as_floats:
                columns[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            else:
                columns[name] = pd.Series([None if v is None else Decimal(v) for v in column.to_pylist()],
                                          dtype=object)
        elif name == "order_id":
            columns[name] = pd.array(column.cast(pa.int64()).to_pylist(), dtype="Int64")
        elif name == "value":
            columns[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            columns[name] = column.to_pandas()
    return pd.DataFrame(columns)


def _binary() -> str:
    """The rustybt binary: $RUSTYBT_BIN, else `rustybt` on PATH, else the checkout's build."""
    explicit = os.environ.get("RUSTYBT_BIN")
    if explicit:
        return explicit
    found = shutil.which("rustybt")
    if found:
        return found
    root = Path(__file__).resolve().parents[2]
    for build in ("release", "debug"):
        candidate = root / "target" / build / "rustybt"
        if candidate.is_file():
            return str(candidate)
    raise ResultsError("cannot find the rustybt binary",
                       "build it with `make build`, put it on PATH, or set RUSTYBT_BIN")


def run(
    algo: str | os.PathLike[str],
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    params: Mapping[str, object] | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **options: object,
) -> Results:
    """Backtests ``algo`` with the ``rustybt`` binary and returns its loaded results.

    ``data`` is one bar file or several (default: the bundled sample), ``params`` overrides the
    algorithm's parameters, ``out`` is the results folder (default: a new temporary folder).
    Other options are ``rustybt run`` flags by name: ``cash="50000"``, ``start="2024-01-02"``,
    ``config="costs.toml"``, ``bar_interval="1h"``. A progress bar is shown (in a notebook when
    tqdm is installed, else as text) unless ``progress=False``. A failed run raises
    :class:`ResultsError` with the binary's message.
    """
    command = [_binary(), "run", "--algo", str(algo), "--quiet"]
    files = [] if data is None else [data] if isinstance(data, (str, os.PathLike)) else list(data)
    for file in files:
        command += ["--data", str(file)]
    for name, value in (params or {}).items():
        command += ["--param", f"{name}={value}"]
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="rustybt-run-"))
    command += ["--out", str(folder)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value is not False and value is not None:
            command += [flag, str(value)]
    python = os.environ.get("RUSTYBT_PYTHON")
    env = dict(os.environ, **({"RUSTYBT_PYTHON": python} if python else {}))
    show = _progress_printer() if progress else None
    # The binary draws its bar on stderr only on a terminal: ask for its progress lines instead.
    env["RUSTYBT_PROGRESS"] = "lines" if progress else "off"
    # The summary on stdout is not needed (the metrics are loaded); errors come on stderr.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    stderr_lines: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("progress "):
            if show:
                show(line)
        else:
            stderr_lines.append(line)
    code = process.wait()
    if show:
        show(None)
    if code != 0:
        message = "".join(stderr_lines).strip()
        raise ResultsError(f"rustybt run failed (exit {code}):\n{message}")
    return load(folder)


def _progress_printer() -> Callable[[str | None], None]:
    """Shows `progress DONE TOTAL` lines: tqdm when installed, else one updating text line."""
    state: dict[str, Any] = {}
    try:
        tqdm_module: Any = importlib.import_module("tqdm.auto")
    except ImportError:
        tqdm_module = None

    def show(line: str | None) -> None:
        if line is None:
            bar = state.get("bar")
            if bar is not None:
                bar.close()
            elif state:
                print(file=sys.stderr)
            return
        parts = line.split()
        done, total = int(parts[1]), int(parts[2])
        if tqdm_module is not None:
            bar = state.setdefault("bar", tqdm_module.tqdm(total=total, unit="bar", desc="backtest"))
            bar.update(done - bar.n)
        else:
            state["shown"] = True
            print(f"\rbacktest: {done}/{total} bars ({100 * done // max(total, 1)}%)", end="",
                  file=sys.stderr, flush=True)

    return show
