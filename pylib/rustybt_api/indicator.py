"""The ``Indicator`` base class for custom indicators written in Python.

A custom indicator turns closed bars into one or more float series. The engine calls it once per
newly closed bar of its timeframe, stores each value in engine memory and hands the history out
as a zero-copy read-only array, exactly like a built-in indicator:

.. code-block:: python

    class Range(Indicator):
        period = 20                 # parameter: public class attribute, overridable per use
        warm_up = 20                # bars before the first meaningful value

        def calculate(self, bars):  # vectorized: one value per bar of `bars`
            high = pd.Series(bars.high).rolling(self.period).max()
            low = pd.Series(bars.low).rolling(self.period).min()
            return (high - low).to_numpy()

    # in Algorithm.initialize:
    self.range = self.indicator(Range, "BTC", timeframe="1h", period=50)

How the engine calls it (and :func:`rustybt_api.testing.run_indicator` reproduces exactly):

* With an ``update(self, bar)`` method, the indicator is incremental: ``update`` is called once
  per closed bar, in time order, from the first bar of the data, and returns the bar's value(s).
* Otherwise ``calculate(self, bars)`` is called once per closed bar with the last ``window``
  closed bars (all closed bars when ``window`` is None) and the last element of its result is
  stored. When attached after bars have closed, one ``calculate`` over those bars fills them in.

``calculate`` returns one array per output, as long as ``bars``: an array for a single output,
or a tuple (in ``outputs`` order) or dict (by output name) for several; ``update`` returns a
float, or a tuple/dict of floats. The values of a bar are computed once and never change.
"""

from __future__ import annotations

from ._parameters import class_parameters

TYPE_CHECKING = False  # not `typing`'s: importing it (with `re`) costs ~4 ms of every start
if TYPE_CHECKING:
    from typing import Any, ClassVar

    import numpy as np
    import numpy.typing as npt

    from .types import Bar, Bars

__all__ = ["Indicator", "indicator_parameters", "RESERVED"]

#: Class attributes that configure how the engine runs an indicator; not parameters.
RESERVED = frozenset({"timeframe", "warm_up", "window", "outputs"})


class Indicator:
    """Base class of custom indicators (see the module documentation)."""

    #: Timeframe the indicator runs on (``"1h"``, ``"1d"``...); None = the symbol's loaded bars.
    #: ``Algorithm.indicator(..., timeframe=...)`` overrides it.
    timeframe: ClassVar[str | None] = None
    #: Closed bars needed before the value is meaningful; ``handle.ready`` turns true then.
    warm_up: ClassVar[int] = 1
    #: Bars given to ``calculate`` per new bar; None = every closed bar (O(history) per bar).
    window: ClassVar[int | None] = None
    #: Names of the outputs; the first is ``handle.value``'s.
    outputs: ClassVar[tuple[str, ...]] = ("value",)

    #: Set by ``Algorithm.indicator`` when the engine attaches this instance.
    _rustybt: Any = None

    def record(self, name: str, value: float) -> None:
        """Records ``value`` under ``name`` in the run's results, as ``Algorithm.record`` does
        (stamped with the engine's current time). Outside an engine (``testing.run_indicator``)
        the values are kept in ``self.recorded`` as ``(name, value)`` pairs instead."""
        if self._rustybt is None:
            recorded: list[tuple[str, float]] = self.__dict__.setdefault("recorded", [])
            recorded.append((name, float(value)))
            return
        self._rustybt.record(name, float(value))

    def __init__(self, **params: Any) -> None:
        known = indicator_parameters(type(self))
        for name, value in params.items():
            if name not in known:
                accepted = ", ".join(sorted(known)) or "no parameters"
                raise TypeError(
                    f"{type(self).__name__} has no parameter `{name}`; it accepts {accepted}"
                )
            setattr(self, name, value)

    def calculate(self, bars: Bars) -> npt.NDArray[np.float64] | Any:
        """Values for every bar of ``bars`` (vectorized). Must not look past ``bars``' end."""
        raise NotImplementedError(
            f"{type(self).__name__} defines neither calculate(self, bars) nor update(self, bar)"
        )

    # ``update(self, bar) -> float`` is optional: define it in a subclass to be incremental.
    update: ClassVar[Any]

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The indicator's parameters and their default values."""
        return indicator_parameters(cls)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={getattr(self, k)!r}" for k in indicator_parameters(type(self)))
        return f"{type(self).__name__}({settings})"


def indicator_parameters(cls: type) -> dict[str, Any]:
    """Public, non-callable class attributes of ``cls`` below ``Indicator``, minus ``RESERVED``."""
    return class_parameters(cls, Indicator, RESERVED)
