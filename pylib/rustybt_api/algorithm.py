"""The ``Algorithm`` base class users subclass."""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal

from ._parameters import Param, ParameterError, class_parameters, convert_text, parameter_space
from .errors import NotAttachedError
from .indicator import Indicator
from .talib_function import talib_function

TYPE_CHECKING = False  # not `typing`'s: importing it (with `re`) costs ~4 ms of every start
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Callable

    from .types import (
        Context, Fill, IndicatorHandle, Logger, MarketOn, Order, OrderEvent, Price, Quantities, Quantity, Side,
        TimeInForce,
        _Engine, _Schedules,
    )

__all__ = [
    "Algorithm", "Scheduled", "apply_parameters", "convert_parameter", "parameter_space_of", "parameters_of",
]


class Algorithm:
    """Base class of a trading algorithm.

    Parameters are public class attributes (``fast = 10``, or ``fast = Param(10, low=5,
    high=50, step=5)`` to declare the space ``rustybt optimize`` searches); ``rustybt run
    --param fast=5`` overrides them per run. State is ordinary instance attributes and persists between ticks.

    The engine calls, in order: ``initialize(ctx)`` once, then per timestamp ``on_fill(fill)``
    for each execution since the last tick and ``on_tick(ctx)``, and ``on_stop(ctx)`` at the end.
    Orders placed at a tick fill no earlier than the next bar of their symbol.
    """

    # Set by the engine before ``initialize``; the channel for orders and logs.
    _rustybt: _Engine | None = None

    #: Bars of history a live session loads before its first live bar (``rustybt live``'s
    #: warm-up), so ``ctx.history()`` and indicators are ready at once. ``None``: as many as
    #: the indicators declared in ``initialize`` need. Declared on a subclass it is also a
    #: parameter (``--param warmup=300``). Backtests start at the data's first bar and ignore it.
    warmup: int | None = None

    def initialize(self, ctx: Context) -> None:
        """Called once before the first bar. Set up state here."""

    def on_tick(self, ctx: Context) -> None:
        """Called once per timestamp, after the bars closing at ``ctx.time`` are in history."""

    def on_fill(self, fill: Fill) -> None:
        """Called for each execution, before the ``on_tick`` of the tick it is reported at."""

    def on_order(self, event: OrderEvent) -> None:
        """Called for each order state change (accepted, triggered, partially_filled, filled,
        cancelled, rejected, expired), before ``on_fill`` and ``on_tick`` of the tick."""

    def on_stop(self, ctx: Context) -> None:
        """Called once after the last bar (also after Ctrl-C, not after an exception)."""

    def _engine(self) -> _Engine:
        engine = self._rustybt
        if engine is None:
            raise NotAttachedError(
                "this Algorithm is not attached to a rustybt engine; "
                "run it with `rustybt run --algo FILE`"
            )
        return engine

    def set_slippage(self, model: Any) -> None:
        """Prices this run's fills with ``model``, a :class:`SlippageModel` instance, instead of
        the configured slippage. Only in ``initialize``; ``[execution] slippage_model`` in the
        config file wins over it."""
        from .slippage import SlippageModel

        if getattr(self, "_rustybt_started", False):
            raise RuntimeError("set_slippage() can only be called in initialize()")
        if not isinstance(model, SlippageModel):
            raise TypeError(
                f"set_slippage() needs a rustybt_api.SlippageModel instance, got {type(model).__name__}"
            )
        self._slippage_model = model

    def buy(
        self,
        symbol: str,
        quantity: Quantity,
        *,
        limit: Price | None = None,
        stop: Price | None = None,
        trail: Price | None = None,
        trail_percent: Price | None = None,
        tif: TimeInForce | None = None,
        good_till: _dt.datetime | int | None = None,
        at: MarketOn | None = None,
    ) -> Order:
        """Buys ``quantity`` (Decimal, int or str) of ``symbol``.

        A market order by default; ``limit=`` a limit order, ``stop=`` a stop, both a
        stop-limit, ``trail=`` (an amount) or ``trail_percent=`` (a fraction, 0.02 = 2%) a
        trailing stop, ``at="open"``/``"close"`` market-on-open/close. ``tif``: ``"gtc"``
        (default), ``"day"``, ``"ioc"``, ``"fok"``, or ``"gtd"`` with ``good_till``. Orders fill
        no earlier than the next bar. Breaking the instrument's rules or buying power gives an
        order with status ``"rejected"`` and its ``reason`` (and an ``on_order`` event).
        """
        if limit is None and stop is None and trail is None and trail_percent is None and tif is None \
                and good_till is None and at is None and self._rustybt is not None:
            return self._rustybt.submit(symbol, "buy", quantity)  # a plain market order: one call
        return self._submit(symbol, "buy", quantity, limit, stop, trail, trail_percent, tif, good_till, at)

    def sell(
        self,
        symbol: str,
        quantity: Quantity,
        *,
        limit: Price | None = None,
        stop: Price | None = None,
        trail: Price | None = None,
        trail_percent: Price | None = None,
        tif: TimeInForce | None = None,
        good_till: _dt.datetime | int | None = None,
        at: MarketOn | None = None,
    ) -> Order:
        """Sells ``quantity`` of ``symbol`` (opens a short when flat); options as :meth:`buy`."""
        if limit is None and stop is None and trail is None and trail_percent is None and tif is None \
                and good_till is None and at is None and self._rustybt is not None:
            return self._rustybt.submit(symbol, "sell", quantity)
        return self._submit(symbol, "sell", quantity, limit, stop, trail, trail_percent, tif, good_till, at)

    def _submit(self, symbol: str, side: Side, quantity: Quantity, limit: Price | None, stop: Price | None,
                trail: Price | None, trail_percent: Price | None, tif: TimeInForce | None,
                good_till: _dt.datetime | int | None, at: MarketOn | None) -> Order:
        if isinstance(good_till, _dt.datetime):
            if good_till.tzinfo is None:
                raise ValueError("good_till must be timezone-aware (e.g. UTC)")
            good_till = int(good_till.timestamp() * 1_000_000) * 1000
        return self._engine().submit(
            symbol, side, quantity, limit, stop, trail, trail_percent, tif, good_till, at
        )

    def bracket(
        self,
        symbol: str,
        side: Side,
        quantity: Quantity,
        *,
        take_profit: Price,
        stop_loss: Price,
        limit: Price | None = None,
        tif: TimeInForce | None = None,
    ) -> tuple[Order, Order, Order]:
        """An entry (market, or limit with ``limit=``) with a take-profit limit and a stop-loss
        stop on the other side. The exits wait until the entry fills, for the quantity that
        filled, and cancel each other. Returns ``(entry, take_profit, stop_loss)``."""
        return self._engine().bracket(symbol, side, quantity, take_profit, stop_loss, limit, tif)

    def oco(self, *orders: Order) -> None:
        """Links open orders so that a fill of one cancels the others (one-cancels-other)."""
        self._engine().oco(list(orders))

    def order_many(self, quantities: Quantities, symbols: Sequence[str] | None = None) -> list[Order]:
        """Market orders for many symbols in one call, for cross-sectional strategies:
        ``quantities[i]`` of ``symbols[i]`` (default: every symbol, in ``ctx.symbols`` order),
        bought when positive, sold when negative, nothing when zero. ``quantities`` is an integer
        NumPy array (``np.int64``) or a sequence of Decimal, int or str; a float array is
        refused (round it first). Each order is the one ``buy``/``sell`` would place, with the
        same checks, placed in order; the engine is crossed once instead of once per order.
        Returns the orders placed."""
        return self._engine().submit_many(quantities, None if symbols is None else list(symbols))

    def close(self, symbol: str) -> Order | None:
        """Market order that flattens ``symbol``; ``None`` when already flat."""
        return self._engine().close(symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders not yet filled or cancelled, of one symbol or of all."""
        return self._engine().open_orders(symbol)

    def indicator(
        self,
        name: str | type[Indicator] | Indicator,
        symbol: str,
        timeframe: str | None = None,
        **params: Any,
    ) -> IndicatorHandle:
        """Attaches an indicator to ``symbol`` and returns its handle.

        ``name`` is one of:

        * a built-in (Rust, equal to TA-Lib) by TA-Lib name: ``"SMA"``, ``"RSI"``, ``"MACD"``...,
          with TA-Lib's parameter names (``timeperiod=14``; ``period`` is accepted too);
        * ``"talib.<FUNC>"``: any TA-Lib function, computed by the real TA-Lib over the last
          bars it needs (see ``rustybt_api.talib_function``);
        * a custom ``Indicator`` subclass (``params`` override its parameters) or instance.

        With a ``timeframe`` (``"1h"``, ``"1d"``...) it runs on that timeframe's closed bars, so an
        algorithm ticking on minutes reads an hourly value that never sees the forming hour; a
        custom class's own ``timeframe`` attribute is the default. Call it in ``initialize``: the
        engine updates it once per closed bar and ``.value`` is then an attribute read. Attaching
        the same indicator (same settings) twice returns the same one.
        """
        engine = self._engine()
        if isinstance(name, str) and not name.lower().startswith("talib."):
            return engine.indicator(name, symbol, params, timeframe)
        if isinstance(name, str):
            instance: Indicator = talib_function(name, **params)
        elif isinstance(name, type) and issubclass(name, Indicator):
            instance = name(**params)
        elif isinstance(name, Indicator):
            if params:
                raise TypeError("pass parameters to the Indicator's constructor, not here")
            instance = name
        else:
            raise TypeError(
                "indicator() takes a built-in name (\"RSI\"), \"talib.<FUNC>\", or an "
                f"Indicator subclass or instance, not {type(name).__name__}"
            )
        if timeframe is None:
            timeframe = type(instance).timeframe
        cls = type(instance)
        key = f"{cls.__module__}.{cls.__qualname__}|{instance!r}|{symbol}|{timeframe}"
        if isinstance(name, Indicator):
            key += f"|{id(name)}"
        # Lets the indicator record values (Indicator.record) into this run's results.
        instance._rustybt = engine
        return engine.custom_indicator(instance, symbol, timeframe, key)

    def schedule(
        self,
        callback: Callable[[Context], None],
        *,
        every: str | None = None,
        at: str | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        name: str | None = None,
    ) -> Scheduled:
        """Calls ``callback(ctx)`` on a schedule, before ``on_tick`` of the first tick at or
        after each occurrence. Give one of ``every="15m"`` (multiples of the period since the
        epoch, UTC), ``at="09:30"`` (daily, local time) or ``cron="*/5 9-16 * * 1-5"`` (five-field
        POSIX cron, local time). ``timezone`` defaults to the market's (``--timezone``).
        Occurrences missed between two ticks fire once. Returns a handle with ``cancel()``.
        """
        schedules = self._engine().schedules
        return Scheduled(schedules, schedules.add(callback, self, every, at, cron, timezone, name))

    def record(self, name: str, value: float | int | Decimal) -> None:
        """Records ``value`` (a number) under ``name`` at the current simulated time.

        Each name is a series in the results (``records.csv`` / ``records.parquet``:
        ``time,name,value``, read by ``results.load(dir).records``); the report draws it under
        the price of the symbol the name mentions (``"SPY.zscore"``, ``"spread SPY"``) or in a
        chart of its own. Values are stored as floats: record signals, not money.
        """
        if not isinstance(name, str):
            raise TypeError(f"record() needs a str name, got {type(name).__name__}")
        self._engine().record(name, float(value))

    @property
    def log(self) -> Logger:
        """Logger whose lines carry the simulated time (``self.log.info("x=%s", x)``)."""
        return self._engine().log

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The class's parameters and their default values."""
        return parameters_of(cls)


class Scheduled:
    """A scheduled callback: ``name``, ``next_time`` (UTC datetime, ``None`` when cancelled or
    exhausted), ``fired`` (calls so far) and ``cancel()``."""

    __slots__ = ("_schedules", "id")

    def __init__(self, schedules: _Schedules, schedule_id: int) -> None:
        self._schedules = schedules
        self.id = schedule_id

    def _info(self) -> tuple[str, int | None, int] | None:
        return self._schedules.info(self.id)

    @property
    def name(self) -> str | None:
        info = self._info()
        return None if info is None else info[0]

    @property
    def next_time(self) -> _dt.datetime | None:
        info = self._info()
        if info is None or info[1] is None:
            return None
        epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        return epoch + _dt.timedelta(microseconds=info[1] // 1000)

    @property
    def fired(self) -> int:
        info = self._info()
        return 0 if info is None else info[2]

    @property
    def active(self) -> bool:
        return self._info() is not None

    def cancel(self) -> bool:
        """Stops the schedule; ``False`` if it was already cancelled."""
        return self._schedules.cancel(self.id)

    def __repr__(self) -> str:
        return f"Scheduled(name={self.name!r}, next_time={self.next_time}, fired={self.fired})"


def parameters_of(cls: type) -> dict[str, Any]:
    """Public, non-callable class attributes of ``cls`` and its bases below ``Algorithm``, with
    their default values (a ``Param``'s default)."""
    return {name: p.default for name, p in parameter_space_of(cls).items()}


def parameter_space_of(cls: type) -> dict[str, Param[Any]]:
    """Every parameter of ``cls`` as a ``Param`` (a plain class attribute is a fixed one)."""
    return parameter_space(class_parameters(cls, Algorithm))


def convert_parameter(name: str, text: str, default: Any) -> Any:
    """Converts command-line text to the type of the parameter's default value."""
    return convert_text(text, default)


def apply_parameters(instance: Algorithm, overrides: list[tuple[str, str]]) -> dict[str, str]:
    """Sets ``--param name=text`` overrides on ``instance`` (converted to the default's type and
    checked against a ``Param``'s space); returns every parameter's effective value as repr."""
    cls = type(instance)
    space = parameter_space_of(cls)
    for name, text in overrides:
        param = space.get(name)
        if param is None:
            raise ParameterError(
                f"unknown parameter `{name}` for `{cls.__name__}`",
                f"parameters of `{cls.__name__}`: {', '.join(space)}" if space
                else f"`{cls.__name__}` declares no parameters (public class attributes)",
            )
        try:
            value = param.parse(text)
        except ValueError as err:
            raise ParameterError(f"invalid value for parameter `{name}`: {err}") from None
        setattr(instance, name, value)
    return {name: repr(getattr(instance, name)) for name in space}
