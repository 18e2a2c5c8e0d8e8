"""Any TA-Lib function as an ``Indicator``: ``self.indicator("talib.KAMA", symbol, timeperiod=30)``.

The engine calls the real TA-Lib once per closed bar over the last ``window`` bars only, never
over the whole history, and ``window`` is chosen so the value equals TA-Lib's over the full
history (each choice is checked at attach on seeded synthetic data):

* When the lookback alone determines the value (SMA, STOCH, BBANDS, WILLR, candlestick
  patterns...), ``window`` is the lookback + 1 bars and the values are TA-Lib's (to the
  rounding of its running sums, 1e-12 of the output's scale).
* When every earlier bar counts with a geometrically decaying weight (EMA-based: EMA, RSI, ATR,
  ADX, MACD, KAMA, T3...), ``window`` adds ``settle`` bars (default: 20 time constants of the
  slowest smoothing, e.g. 20 x (lookback + 1), about 4,800 for KAMA), which leaves about e^-20
  (2e-9) of the seed's influence; kept only if it reproduces the full-history value within 1e-9
  of the output's scale on the probe.
* Running sums and stop-and-reverse state (OBV, AD, SAR, SAREXT), or anything that does not
  converge, run over the whole history: exact, but O(history) per bar. The built-in OBV is O(1).

``window=N`` sets it by hand; ``price="open"`` runs a one-price function on another column.
"""

from __future__ import annotations

import math
from .errors import IndicatorError
from .indicator import Indicator

TYPE_CHECKING = False  # not `typing`'s: importing it (with `re`) costs ~4 ms of every start
if TYPE_CHECKING:
    from typing import Any

    import numpy as np
    import numpy.typing as npt

    from .types import Bars

__all__ = ["TalibFunction", "talib_function"]

_COLUMNS = ("open", "high", "low", "close", "volume")


class TalibFunction(Indicator):
    """The TA-Lib function ``name`` with ``params`` (TA-Lib's parameter names)."""

    def __init__(self, name: str, window: int | None = None, settle: int | None = None,
                 price: str | None = None, **params: Any) -> None:
        # Parameters here are TA-Lib's, checked against the function's own list.
        try:
            import importlib  # here: `import rustybt_api` need not load it

            # Untyped on purpose: TA-Lib's stubs type neither get_functions nor abstract.Function.
            talib: Any = importlib.import_module("talib")
            abstract: Any = importlib.import_module("talib.abstract")
        except ImportError as error:  # pragma: no cover - TA-Lib is a pinned dependency
            raise IndicatorError(
                "talib.<FUNC> indicators need the TA-Lib package: .venv/bin/pip install TA-Lib"
            ) from error
        function_name = name.upper()
        if function_name not in talib.get_functions():
            raise IndicatorError(
                f"TA-Lib has no function `{name}`; see talib.get_functions() for the "
                f"{len(talib.get_functions())} it offers"
            )
        meta = abstract.Function(function_name)
        accepted = dict(meta.info["parameters"])
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            names = ", ".join(accepted) or "no parameters"
            raise IndicatorError(
                f"talib.{function_name} has no parameter {', '.join(unknown)}; it accepts {names}"
            )
        settings = {k: _parameter(function_name, k, v, accepted[k]) for k, v in params.items()}
        meta.set_parameters(**settings)
        inputs: list[str] = []
        for input_name, columns in meta.info["input_names"].items():
            for column in [columns] if isinstance(columns, str) else list(columns):
                if input_name == "price" and price is not None:
                    column = price
                if column not in _COLUMNS:
                    raise IndicatorError(
                        f"talib.{function_name} needs the input `{column}`, which bars do not "
                        f"have; it can run on {', '.join(_COLUMNS)}"
                    )
                inputs.append(column)
        lookback = int(meta.lookback)
        function = getattr(talib, function_name)
        # Choices that change the values are part of the repr, which keys the engine's sharing.
        self._choices = {k: v for k, v in (("price", price), ("window", window), ("settle", settle)) if v is not None}
        if window is None and settle is not None:
            window = lookback + 1 + int(settle)  # the user's choice: not second-guessed
        elif window is None:
            window = _choose_window(function_name, function, tuple(inputs), settings, lookback, settle)
        elif int(window) < lookback + 1:
            raise IndicatorError(
                f"talib.{function_name}: window={window} is shorter than its lookback + 1 "
                f"({lookback + 1} bars)"
            )
        self.name = function_name
        self.params = settings
        self.inputs = tuple(inputs)
        self.lookback = lookback
        self._function = function
        # Per-instance settings the engine reads like class attributes.
        self.window = None if window is None else int(window)  # type: ignore[misc]
        self.warm_up = lookback + 1  # type: ignore[misc]
        self.outputs = tuple(meta.info["output_names"])  # type: ignore[misc]

    def calculate(self, bars: Bars) -> npt.NDArray[np.float64] | tuple[Any, ...]:
        columns = [getattr(bars, column) for column in self.inputs]
        result = self._function(*columns, **self.params)
        return tuple(result) if isinstance(result, (list, tuple)) else result

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in {**self.params, **self._choices}.items())
        return f"talib.{self.name}({settings})"


#: Functions whose value depends on every bar since the first (running sums, stop-and-reverse
#: state): they run over the whole history, O(history) per bar.
WHOLE_HISTORY = frozenset({"OBV", "AD", "SAR", "SAREXT"})


def _choose_window(
    name: str,
    function: Any,
    inputs: tuple[str, ...],
    params: dict[str, Any],
    lookback: int,
    settle: int | None,
) -> int | None:
    """The fewest bars that give the full-history value, checked on synthetic data.

    Exact when the lookback alone determines the value; otherwise lookback + ``settle`` bars,
    kept only if that converges to the full-history value within 1e-9 (relative) on the probe;
    None (whole history) for path-dependent functions or when it does not converge.
    """
    if name in WHOLE_HISTORY:
        return None
    exact = lookback + 1
    if _converges(function, inputs, params, exact, tolerance=1e-12):  # rounding of running sums
        return exact
    window = exact + (settle if settle is not None else _settle(name, lookback, params))
    if _converges(function, inputs, params, window, tolerance=1e-9):
        return window
    return None


def _probe_bars(length: int) -> dict[str, Any]:
    """A seeded random walk with valid OHLCV bars, the same on every run."""
    import numpy as np

    rng = np.random.default_rng(20241122)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, length)))
    open_ = np.concatenate(([100.0], close[:-1]))
    spread = np.abs(rng.normal(0.0, 0.005, length)) * close
    return {
        "open": open_,
        "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread,
        "close": close,
        "volume": rng.uniform(1.0, 1000.0, length),
    }


def _converges(
    function: Any, inputs: tuple[str, ...], params: dict[str, Any], window: int, tolerance: float
) -> bool:
    """Whether the value over the last ``window`` bars equals the full-history value."""
    import numpy as np

    length = 2 * window + 50
    bars = _probe_bars(length)
    full = _first(function(*(bars[c] for c in inputs), **params))
    finite = np.abs(full[np.isfinite(full)])
    # Relative to the output's own scale: an oscillator crossing zero has no relative error.
    scale = max(float(finite.max()) if finite.size else 0.0, 1e-300)
    for end in (length - 17, length - 1):
        part = _first(function(*(bars[c][end + 1 - window : end + 1] for c in inputs), **params))
        want, got = float(full[end]), float(part[-1])
        if np.isnan(want) and np.isnan(got):
            continue
        if not abs(want - got) <= tolerance * scale:
            return False
    return True


def _first(result: Any) -> Any:
    """The first output of a TA-Lib result (a list for several outputs)."""
    return result[0] if isinstance(result, (list, tuple)) else result


def _settle(function: str, lookback: int, params: dict[str, Any]) -> int:
    """Bars for an unstable function to forget its seed: 20 time constants of its slowest
    smoothing, so what is left is about e^-20 (2e-9) of the seed's deviation."""
    if function == "KAMA":
        slowest = (2.0 / 31.0) ** 2  # TA-Lib's KAMA smooths at most with a 30-bar EMA, squared
    elif function == "MAMA":
        slowest = float(params.get("slowlimit", 0.05))
    else:  # EMA-style smoothing over about the lookback: alpha >= 1 / (lookback + 1)
        slowest = 1.0 / (lookback + 1)
    return int(math.ceil(20.0 / slowest))


def _parameter(function: str, name: str, value: Any, default: Any) -> Any:
    """TA-Lib wants ints where its default is an int (periods, MA types) and floats otherwise."""
    if isinstance(value, bool):
        raise IndicatorError(f"talib.{function}: `{name}` must be a number, not a bool")
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise IndicatorError(f"talib.{function}: `{name}` must be an integer, got {value}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise IndicatorError(f"talib.{function}: `{name}` must be an integer") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise IndicatorError(f"talib.{function}: `{name}` must be a number") from None


def talib_function(spec: str, **params: Any) -> TalibFunction:
    """``"talib.RSI"`` → ``TalibFunction("RSI", **params)``."""
    return TalibFunction(spec.split(".", 1)[1], **params)
