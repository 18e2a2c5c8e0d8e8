"""Deterministic synthetic bar data for examples and tests.

Pure Python (``random.Random`` only), so the same seed gives the same bars on every machine and
Python version. The data is synthetic: a geometric random walk, not any real market.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import math
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .indicator import Indicator
    from .types import Bar as EngineBar

__all__ = [
    "BacktestResult",
    "Bar",
    "BarArrays",
    "BarValues",
    "backtest",
    "generate_bars",
    "normalize_outputs",
    "run_indicator",
    "write_csv",
]

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Bar:
    timestamp: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


def _normal(rng: random.Random) -> float:
    # Box-Muller on random(), whose stream is stable across Python versions.
    u1 = max(rng.random(), 1e-300)
    u2 = rng.random()
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _price(value: float) -> Decimal:
    return max(Decimal(repr(value)).quantize(_CENT, rounding=ROUND_HALF_EVEN), _CENT)


def generate_bars(
    rows: int,
    seed: int,
    start: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    interval: dt.timedelta = dt.timedelta(minutes=1),
    start_price: float = 100.0,
    volatility: float = 0.001,
    drift: float = 0.0,
) -> Iterator[Bar]:
    """``rows`` bars of a geometric random walk with 2-decimal prices.

    Invariants: ``low <= min(open, close) <= max(open, close) <= high``, volume in [1, 10000],
    timestamps (bar open times) strictly increasing by ``interval``.
    """
    rng = random.Random(seed)
    level = start_price
    close = _price(level)
    for i in range(rows):
        open_ = close
        level *= math.exp(drift + volatility * _normal(rng))
        close = _price(level)
        top = max(open_, close)
        bottom = min(open_, close)
        high = top + _price(abs(_normal(rng)) * volatility * 0.5 * float(top)) - _CENT
        low = bottom - (_price(abs(_normal(rng)) * volatility * 0.5 * float(bottom)) - _CENT)
        low = max(low, _CENT)
        volume = 1 + int(rng.random() * 10000) % 10000
        yield Bar(start + i * interval, open_, max(high, top), min(low, bottom), close, volume)


def write_csv(path: str | Path, bars: Iterator[Bar] | list[Bar], symbol: str | None = None) -> Path:
    """Writes bars as ``timestamp,open,high,low,close,volume`` (plus ``symbol`` if given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        header = ["timestamp", "open", "high", "low", "close", "volume"]
        writer.writerow(header + (["symbol"] if symbol else []))
        for bar in bars:
            row = [
                bar.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                str(bar.open),
                str(bar.high),
                str(bar.low),
                str(bar.close),
                str(bar.volume),
            ]
            writer.writerow(row + ([symbol] if symbol else []))
    return path


_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class BarArrays:
    """Bars as NumPy arrays with the members of the engine's ``Bars`` (``types.Bars``), for
    running an ``Indicator`` outside the engine."""

    time_ns: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    timeframe: str = "base"
    symbol: str = "TEST"
    #: Base bars per bar, for a higher timeframe's bars; None for base bars, as in the engine.
    count: npt.NDArray[np.int64] | None = None

    @classmethod
    def from_bars(cls, bars: Sequence[Bar]) -> BarArrays:
        """Float arrays of ``generate_bars`` output (or any objects with the same fields)."""
        import numpy as np

        def column(name: str) -> npt.NDArray[np.float64]:
            return np.array([float(getattr(b, name)) for b in bars], dtype=np.float64)

        times = np.array(
            [int(b.timestamp.timestamp()) * 1_000_000_000 for b in bars], dtype=np.int64
        )
        return cls(times, column("open"), column("high"), column("low"), column("close"),
                   column("volume"))

    def __len__(self) -> int:
        return len(self.close)

    @property
    def time(self) -> npt.NDArray[np.datetime64]:
        """Open times as ``datetime64[ns]`` (a view of ``time_ns``, no copy)."""
        return self.time_ns.view("datetime64[ns]")

    def decimal(self, field: str, index: int = -1) -> Decimal:
        """The value of one bar as ``Decimal``: the shortest decimal that reads back as the
        float, equal to the data's value for data of up to 15 significant digits (the engine
        returns the data's exact value at the column's scale: ``100.00``, not ``100.0``)."""
        if field not in _FIELDS:
            raise ValueError(f"unknown field `{field}`; use open, high, low, close or volume")
        column: npt.NDArray[np.float64] = getattr(self, field)
        n = len(column)
        position = n + index if index < 0 else index
        if not 0 <= position < n:
            raise IndexError(f"bar index {index} out of range for {n} closed bars")
        return Decimal(repr(float(column[position])))

    def to_pandas(self) -> object:
        """A pandas DataFrame of these bars indexed by UTC open time. This one copies."""
        pd: Any = importlib.import_module("pandas")  # no type information without pandas-stubs
        index = pd.DatetimeIndex(self.time).tz_localize("UTC")
        return pd.DataFrame({name: getattr(self, name) for name in _FIELDS}, index=index, copy=True)

    def window(self, start: int, stop: int) -> BarArrays:
        """Bars ``start:stop`` (views, no copy)."""
        return BarArrays(
            self.time_ns[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
            self.timeframe,
            self.symbol,
            None if self.count is None else self.count[start:stop],
        )

    def bar(self, index: int) -> BarValues:
        return BarValues(
            int(self.time_ns[index]),
            float(self.open[index]),
            float(self.high[index]),
            float(self.low[index]),
            float(self.close[index]),
            float(self.volume[index]),
            index,
        )


@dataclass(frozen=True)
class BarValues:
    """One closed bar as ``Indicator.update`` receives it."""

    time_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    #: Position of the bar in its timeframe's history (0 = first bar).
    index: int


def normalize_outputs(indicator: Indicator, result: Any, length: int | None) -> list[Any]:
    """The per-output values of a ``calculate`` (``length`` = bars) or ``update`` (None) result,
    in ``outputs`` order; raises ``ValueError`` naming what is wrong."""
    import numpy as np

    names = tuple(indicator.outputs)
    if isinstance(result, dict):
        missing = [n for n in names if n not in result]
        if missing:
            raise ValueError(f"result lacks output(s) {', '.join(missing)}")
        values = [result[n] for n in names]
    elif isinstance(result, tuple) or (
        length is None and isinstance(result, list)
    ):
        values = list(result)
    else:
        values = [result]
    if len(values) != len(names):
        raise ValueError(f"result has {len(values)} output(s), expected {len(names)} {names}")
    if length is None:  # None is "no value for this bar", as in the engine
        return [math.nan if v is None else float(v) for v in values]
    arrays = [np.asarray(v, dtype=np.float64) for v in values]
    for name, array in zip(names, arrays):
        if array.shape != (length,):
            raise ValueError(
                f"output `{name}` has shape {array.shape}, expected ({length},): one value per bar"
            )
    return arrays


def run_indicator(indicator: Indicator, bars: BarArrays, mode: str = "engine") -> dict[str, Any]:
    """The values ``indicator`` produces for each bar of ``bars``, by output name.

    ``mode``: ``"engine"`` does what the engine does (``update`` per bar when defined, otherwise
    ``calculate`` over the last ``window`` bars per bar); ``"update"`` and ``"calculate"`` force
    one of those; ``"vectorized"`` is one ``calculate`` over all bars. Comparing ``"update"``
    with ``"vectorized"`` is the test that an incremental indicator matches its vectorized form.
    """
    import numpy as np

    names = tuple(indicator.outputs)  # per instance, as the engine reads them
    n = len(bars)
    if mode == "engine":
        mode = "update" if hasattr(indicator, "update") else "calculate"
    if mode == "vectorized":
        arrays = normalize_outputs(indicator, indicator.calculate(bars), n)
        return dict(zip(names, arrays))
    out = {name: np.full(n, np.nan) for name in names}
    window = indicator.window
    for i in range(n):
        if mode == "update":
            bar: EngineBar = bars.bar(i)  # BarValues stands in for the engine's Bar: mypy checks it
            values = normalize_outputs(indicator, indicator.update(bar), None)
        elif mode == "calculate":
            start = 0 if window is None else max(0, i + 1 - window)
            part = bars.window(start, i + 1)
            values = [a[-1] for a in normalize_outputs(indicator, indicator.calculate(part), len(part))]
        else:
            raise ValueError(f"unknown mode `{mode}`; use engine, update, calculate or vectorized")
        for name, value in zip(names, values):
            out[name][i] = value
    return out


# --- Running an algorithm on the real engine ----------------------------------------------------

_DECIMAL_COLUMNS = {
    "quantity", "qty", "limit", "stop", "fill_quantity", "fill_price", "filled_quantity",
    "price", "fee", "max_qty", "pnl", "fees", "cash", "equity", "amount", "base", "annual_rate",
}


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """A results CSV as dicts: money and quantities as Decimal, times as aware datetimes."""
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key in _DECIMAL_COLUMNS:
                    row[key] = Decimal(value) if value != "" else None
                elif key == "time" or key.endswith("_time"):
                    row[key] = _parse_time(value) if value else None
                elif key == "order_id":
                    row[key] = int(value) if value else None  # carry rows have no order
                else:
                    row[key] = value
            rows.append(row)
    return rows


@dataclass
class RunError:
    """Why a run stopped early: the algorithm's exception and where it was raised."""

    phase: str
    exception: str
    message: str
    summary: str
    traceback: str
    time: str | None = None
    file: str | None = None
    line: int | None = None


@dataclass
class BacktestResult:
    """What ``backtest`` produced. Amounts are ``Decimal``; times are UTC datetimes.

    ``orders`` has one dict per order in its final state (``status``, ``filled_quantity``,
    ``average_price``); ``order_events`` every state change, as in ``orders.csv``; ``fills``,
    ``trades``, ``equity`` and ``costs`` the rows of ``fills.csv``, ``trades.csv``, ``equity.csv``
    and ``costs.csv`` (commission, slippage, borrow and financing charges)
    (``fills`` also under the key ``quantity``); ``positions`` the open quantities by symbol.
    """

    status: str
    error: RunError | None
    out: Path | None  # None: the temporary results folder was removed (see backtest's keep)
    algorithm: Any
    bars: int
    ticks: int
    wall_seconds: float
    cash: Decimal
    positions: dict[str, Decimal]
    orders: list[dict[str, Any]]
    order_events: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    trades: list[dict[str, Any]]
    equity: list[dict[str, Any]]
    costs: list[dict[str, Any]]
    metrics: dict[str, Any]
    log: list[str]
    hook_timings: dict[str, tuple[int, int]]

    @property
    def ok(self) -> bool:
        return self.status == "complete"

    def orders_for(self, symbol: str) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["symbol"] == symbol]


def _final_orders(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    orders: dict[int, dict[str, Any]] = {}
    for event in events:
        order = orders.setdefault(
            event["order_id"],
            {
                key: event[key]
                for key in ("order_id", "symbol", "side", "type", "quantity", "limit", "stop", "tif")
            }
            | {"created": event["time"], "filled_quantity": Decimal(0), "_notional": Decimal(0)},
        )
        order["status"] = event["status"]
        order["updated"] = event["time"]
        order["reason"] = event["reason"] or order.get("reason", "")
        if event["fill_quantity"] is not None and event["fill_price"] is not None:
            order["filled_quantity"] += event["fill_quantity"]
            order["_notional"] += event["fill_quantity"] * event["fill_price"]
    for order in orders.values():
        notional = order.pop("_notional")
        filled = order["filled_quantity"]
        order["average_price"] = notional / filled if filled else None
    return list(orders.values())


def _data_files(data: Any, folder: Path, symbol: str | None) -> list[str]:
    """Paths as given; bars (a list of ``Bar`` or ``{symbol: bars}``) written to CSV files."""
    if isinstance(data, (str, Path)):
        return [str(data)]
    if isinstance(data, dict):
        return [str(write_csv(folder / f"{name}.csv", bars, symbol=name)) for name, bars in data.items()]
    items = list(data)
    if items and all(isinstance(item, Bar) for item in items):
        name = symbol or "TEST"
        return [str(write_csv(folder / f"{name}.csv", items, symbol=name))]
    if all(isinstance(item, (str, Path)) for item in items):
        return [str(item) for item in items]
    raise TypeError("data must be a path, a list of paths, a list of Bar, or {symbol: [Bar, ...]}")


def _run_and_read(
    run: Any, instance: Any, folder: Path, data: Any, symbol: str | None, settings: dict[str, Any]
) -> BacktestResult:
    """Runs the engine into ``folder`` and reads every result back into memory."""
    import json

    files = _data_files(data, folder / "data", symbol)
    raw = run(instance, files, str(folder), **settings)
    events = _read_rows(folder / "orders.csv")
    fills = _read_rows(folder / "fills.csv")
    for fill in fills:
        fill["quantity"] = fill["qty"]
    metrics_path = folder / "metrics.json"
    return BacktestResult(
        status=raw["status"],
        error=RunError(**raw["error"]) if raw["error"] else None,
        out=folder,
        algorithm=instance,
        bars=raw["bars"],
        ticks=raw["ticks"],
        wall_seconds=raw["wall_seconds"],
        cash=raw["cash"],
        positions=dict(raw["positions"]),
        orders=_final_orders(events),
        order_events=events,
        fills=fills,
        trades=_read_rows(folder / "trades.csv"),
        equity=_read_rows(folder / "equity.csv"),
        costs=_read_rows(folder / "costs.csv"),
        metrics=json.loads(metrics_path.read_text()) if metrics_path.exists() else {},
        log=list(raw["log"]),
        hook_timings=dict(raw["hook_timings"]),
    )


def backtest(
    algorithm: Any,
    data: Any,
    *,
    cash: str | Decimal | int = "100000",
    params: dict[str, Any] | None = None,
    symbol: str | None = None,
    bar_interval: str | None = None,
    config: str | Path | None = None,
    start: str | None = None,
    end: str | None = None,
    timezone: str | None = None,
    session_open: str | None = None,
    session_close: str | None = None,
    out: str | Path | None = None,
    keep: bool = False,
    echo: bool = False,
    raise_on_error: bool = True,
) -> BacktestResult:
    """Runs ``algorithm`` (an ``Algorithm`` subclass or instance) on the real engine.

    Works inside the rustybt host: ``rustybt test`` (pytest) and ``rustybt validate``. Settings
    are those of ``rustybt run`` (``config`` is a TOML settings file). ``params`` sets parameters
    (class attributes) on the instance. The results folder is written to ``out`` and read back
    into the returned ``BacktestResult``; without ``out`` it goes to a temporary folder that is
    removed once read (``result.out`` is then None) unless ``keep=True``. When the algorithm
    raises, ``AlgorithmFailed`` is raised with its traceback, unless ``raise_on_error=False``,
    which returns the partial result with ``error`` set.
    """
    import shutil
    import tempfile

    from .algorithm import Algorithm, parameter_space_of
    from .errors import AlgorithmFailed, BacktestError, NotAttachedError

    try:
        # The host's native module, registered by the rustybt binary (no file to find).
        run: Callable[..., dict[str, Any]] = importlib.import_module("_rustybt").backtest
    except (ImportError, AttributeError):
        raise NotAttachedError(
            "testing.backtest runs the real engine, which lives in the rustybt binary: "
            "run the tests with `rustybt test` instead of `python -m pytest`"
        ) from None
    instance = algorithm() if isinstance(algorithm, type) else algorithm
    if not isinstance(instance, Algorithm):
        raise BacktestError(f"{type(instance).__name__} is not a rustybt_api.Algorithm")
    known = parameter_space_of(type(instance))
    for name, value in (params or {}).items():
        if name not in known:
            listed = ", ".join(known) or "none"
            raise BacktestError(f"unknown parameter `{name}` for `{type(instance).__name__}` (parameters: {listed})")
        try:
            known[name].check(value)
        except ValueError as err:
            raise BacktestError(f"invalid value for parameter `{name}`: {err}") from None
        setattr(instance, name, value)
    temporary = out is None and not keep
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="rustybt-backtest-"))
    try:
        result = _run_and_read(run, instance, folder, data, symbol, dict(
            cash=str(cash),
            symbol=symbol,
            bar_interval=bar_interval,
            config=None if config is None else str(config),
            start=start,
            end=end,
            timezone=timezone,
            session_open=session_open,
            session_close=session_close,
            echo=echo,
        ))
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    if temporary:
        result.out = None
    if result.status == "interrupted":
        raise KeyboardInterrupt
    if result.error is not None and raise_on_error:
        raise AlgorithmFailed(f"{result.error.summary}\n{result.error.traceback}".rstrip(), result)
    return result
