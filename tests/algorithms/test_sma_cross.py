"""Example tests of an algorithm on the real engine: copy this file to start your own.

Run with ``rustybt test tests/algorithms`` (pytest inside the rustybt host, where
``rustybt_api.testing.backtest`` runs the engine in-process). The algorithm is the one in
``algorithms/sma_cross.py``; the checks compare it with a plain-Python reference.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from algorithms.sma_cross import SmaCross
from rustybt_api.errors import BacktestError
from rustybt_api import scenarios
from rustybt_api.testing import Bar, backtest, generate_bars

BARS = list(generate_bars(3000, seed=11, volatility=0.004))


def reference_signals(bars: list[Bar], fast: int, slow: int) -> list[tuple[int, str]]:
    """(bar index, "buy" | "sell") where the crossover rule fires, computed the simple way."""
    closes = [float(b.close) for b in bars]
    signals: list[tuple[int, str]] = []
    previous = None
    long = False
    for i in range(slow - 1, len(closes)):
        diff = sum(closes[i - fast + 1 : i + 1]) / fast - sum(closes[i - slow + 1 : i + 1]) / slow
        if abs(diff) < 1e-9:
            diff = 0.0
        if previous is not None:
            if diff > 0 and previous <= 0 and not long:
                signals.append((i, "buy"))
                long = True
            elif diff < 0 and previous >= 0 and long:
                signals.append((i, "sell"))
                long = False
        previous = diff
    return signals


def test_fills_follow_the_reference_signals_at_the_next_open() -> None:
    result = backtest(SmaCross, BARS, params={"fast": 5, "slow": 20, "quantity": 3})

    assert result.ok
    expected = reference_signals(BARS, 5, 20)
    assert len(expected) > 10  # the data must exercise the strategy
    # No lookahead: a decision at bar i's close fills at bar i+1's open, never at bar i.
    assert [(f["time"], f["side"], f["price"]) for f in result.fills] == [
        (BARS[i + 1].timestamp, side, BARS[i + 1].open) for i, side in expected if i + 1 < len(BARS)
    ]
    assert all(f["quantity"] == 3 for f in result.fills)


def test_cash_and_positions_reconcile_with_the_fills() -> None:
    result = backtest(SmaCross, BARS, cash="50000", params={"fast": 8, "slow": 30})

    cash = Decimal("50000")
    position = Decimal(0)
    for fill in result.fills:
        sign = 1 if fill["side"] == "buy" else -1
        cash -= sign * fill["quantity"] * fill["price"] + fill["fee"]
        position += sign * fill["quantity"]
    assert result.cash == cash
    assert result.positions.get("TEST", Decimal(0)) == position
    assert all(order["status"] == "filled" for order in result.orders)


def test_bad_parameters_are_refused_before_the_run() -> None:
    with pytest.raises(BacktestError, match="unknown parameter `fastest`"):
        backtest(SmaCross, BARS, params={"fastest": 3})


@pytest.mark.parametrize("name", scenarios.names())
def test_runs_on_every_market_scenario_and_stays_long_only(name: str) -> None:
    bars = scenarios.get(name).bars(1500, seed=3)
    result = backtest(SmaCross, bars, params={"fast": 5, "slow": 20})

    assert result.ok, result.error
    assert all(quantity >= 0 for quantity in result.positions.values())
    assert all(fill["time"] > bars[0].timestamp for fill in result.fills)
