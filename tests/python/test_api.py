"""The pure-Python parts of rustybt_api, without the engine."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rustybt_api import Algorithm, NotAttachedError
from rustybt_api.algorithm import convert_parameter, parameters_of
from rustybt_api.testing import generate_bars


class Base(Algorithm):
    window = 5
    threshold = 0.5
    size = Decimal("1.5")
    name = "x"
    enabled = True
    _private = 1

    def helper(self) -> None: ...

    @property
    def computed(self) -> int:
        return 1


class Child(Base):
    window = 7
    extra = None


def test_parameters_are_public_non_callable_class_attributes():
    assert parameters_of(Child) == {
        "window": 7, "threshold": 0.5, "size": Decimal("1.5"), "name": "x", "enabled": True, "extra": None,
    }
    assert Child.parameters() == parameters_of(Child)


@pytest.mark.parametrize(
    "text, default, expected",
    [
        ("5", 1, 5),
        ("2.5", 1.0, 2.5),
        ("0.10", Decimal("1"), Decimal("0.10")),
        ("false", True, False),
        ("yes", False, True),
        ("abc", "x", "abc"),
        ("[1, 2]", None, [1, 2]),
        ("plain", None, "plain"),
    ],
)
def test_convert_parameter_follows_the_default_type(text, default, expected):
    value = convert_parameter("p", text, default)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text, default", [("x", 1), ("x", 1.0), ("x", Decimal(1)), ("NaN", Decimal(1)), ("maybe", True)])
def test_convert_parameter_rejects_bad_text(text, default):
    with pytest.raises(ValueError):
        convert_parameter("p", text, default)


def test_orders_outside_the_engine_say_how_to_run():
    with pytest.raises(NotAttachedError, match="rustybt run"):
        Child().buy("X", 1)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 300), seed=st.integers(0, 10_000), volatility=st.floats(0.0001, 0.05))
def test_generated_bars_are_valid_and_deterministic(rows, seed, volatility):
    bars = list(generate_bars(rows, seed=seed, volatility=volatility))
    assert bars == list(generate_bars(rows, seed=seed, volatility=volatility))
    assert len(bars) == rows
    for previous, bar in zip(bars, bars[1:]):
        assert bar.timestamp - previous.timestamp == dt.timedelta(minutes=1)
    for bar in bars:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.low > 0 and 1 <= bar.volume <= 10_000
        assert bar.close == bar.close.quantize(Decimal("0.01"))
