"""sma_cross in the engine against an independent plain-Python reference on the same file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from conftest import ROOT, read_bars

FAST, SLOW, QTY = 10, 30, 10
CASH = Decimal("1000000")


def reference(path: Path, fast: int = FAST, slow: int = SLOW) -> tuple[int, Decimal, list]:
    """STRATEGY.md rules with exact integer-cent arithmetic: sign(slow*sum_fast - fast*sum_slow)."""
    rows = read_bars(path)
    cents = [int(Decimal(r["close"]) * 100) for r in rows]
    opens = [Decimal(r["open"]) for r in rows]
    cash, position, trades, fills = CASH, 0, 0, []
    pending = None  # side decided at the previous bar
    previous = None
    for i in range(len(rows)):
        if pending is not None:
            price = opens[i]
            if pending == "buy":
                cash -= price * QTY
                position = QTY
            else:
                cash += price * position
                position = 0
                trades += 1
            fills.append((i, pending, price))
            pending = None
        if i + 1 < slow:
            continue
        d = slow * sum(cents[i + 1 - fast : i + 1]) - fast * sum(cents[i + 1 - slow : i + 1])
        if previous is not None:
            if d > 0 and previous <= 0 and position == 0:
                pending = "buy"
            elif d < 0 and previous >= 0 and position > 0:
                pending = "sell"
        previous = d
    final = cash + position * Decimal(rows[-1]["close"])
    return trades, final, fills


def test_sma_cross_matches_reference_in_trades_and_final_equity(run_rustybt, bars_csv):
    data = bars_csv(rows=5000, seed=11, volatility=0.002)
    result = run_rustybt(
        "run", "--algo", ROOT / "algorithms" / "sma_cross.py", "--data", data,
        "--cash", str(CASH), "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    trades, final, fills = reference(data)
    assert trades > 20, "the data should produce a meaningful number of trades"
    metrics = result.metrics()
    assert metrics["num_trades"] == trades
    assert Decimal(metrics["final_equity"]).quantize(Decimal("0.01")) == final.quantize(Decimal("0.01"))
    assert Decimal(metrics["final_equity"]) == final  # exact, in fact
    engine_fills = result.csv_rows("fills.csv")
    assert len(engine_fills) == len(fills)
    rows = read_bars(data)
    for mine, (index, side, price) in zip(engine_fills, fills):
        assert mine["side"] == side
        assert Decimal(mine["price"]) == price
        assert mine["time"] == rows[index]["timestamp"]


def test_parameters_override_class_attributes(run_rustybt, bars_csv):
    data = bars_csv(rows=3000, seed=5, volatility=0.002)
    result = run_rustybt(
        "run", "--algo", ROOT / "algorithms" / "sma_cross.py", "--data", data,
        "--cash", str(CASH), "--param", "fast=5", "--param", "slow=20", "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    trades, final, _ = reference(data, fast=5, slow=20)
    metrics = result.metrics()
    assert metrics["run"]["parameters"]["fast"] == "5"
    assert metrics["num_trades"] == trades
    assert Decimal(metrics["final_equity"]) == final
