"""Itemized costs through the real binary: borrow and financing accrued at UTC midnights,
commission and slippage per fill, all checked against reference formulas written out here."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

from conftest import ROOT

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
STEP = timedelta(hours=6)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def six_hour_bars(path: Path, closes: list[str], volume: int = 1_000_000) -> Path:
    """Bars every 6 hours from 2024-01-01; each opens at the previous close."""
    lines = ["timestamp,open,high,low,close,volume"]
    previous = closes[0]
    for i, close in enumerate(closes):
        o, c = Decimal(previous), Decimal(close)
        lines.append(f"{iso(START + i * STEP)},{o},{max(o, c)},{min(o, c)},{c},{volume}")
        previous = close
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


CARRY_ALGO = '''
from rustybt_api import Algorithm

class Carry(Algorithm):
    def on_tick(self, ctx):
        if len(ctx.history("L")) == 1:
            self.sell("S", 100)      # a short that pays borrow
            self.buy("L", 140)       # 14,000 of stock on 10,000 of equity: a debit balance
'''


def round12(x: Decimal) -> Decimal:
    return x.quantize(Decimal("1e-12"), rounding=ROUND_HALF_UP)


def test_borrow_financing_commission_and_slippage_are_itemized_exactly(run_rustybt, write_algo, tmp_path):
    days = 5
    n = days * 4
    s_closes = [str(Decimal(50) + Decimal(i % 7) / 4) for i in range(n)]
    l_closes = [str(Decimal(100) + Decimal((i * 3) % 11) / 8) for i in range(n)]
    s_path = six_hour_bars(tmp_path / "S.csv", s_closes)
    l_path = six_hour_bars(tmp_path / "L.csv", l_closes)
    config = tmp_path / "costs.toml"
    config.write_text(
        '[commission]\nrate = "0.001"\n'
        '[execution]\nslippage_bps = "10"\nday_count = 365\n'
        'financing_rate = "0.08"\nfinancing_credit_rate = "0.01"\n'
        '[instruments.default]\nmargin = "0.5"\n'
        '[instruments.S]\nmargin = "0.5"\nborrow_rate = "0.05"\n'
    )
    algo = write_algo(CARRY_ALGO)
    result = run_rustybt("run", "--algo", algo, "--data", s_path, "--data", l_path, "--cash", "10000",
                         "--config", config, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    fills = result.csv_rows("fills.csv")
    assert [(f["symbol"], f["side"], f["qty"]) for f in fills] == [("S", "sell", "100"), ("L", "buy", "140")]

    # Reference state: bars close 6 h after they open; the clock ticks at every close.
    bars = {"S": read(s_path), "L": read(l_path)}
    ticks = [START + (i + 1) * STEP for i in range(n)]

    def mark(symbol: str, at: datetime) -> Decimal:
        """Close of the last bar closed at or before `at`: no later price is used."""
        closed = [b for i, b in enumerate(bars[symbol]) if START + (i + 1) * STEP <= at]
        return Decimal(closed[-1]["close"])

    cash = Decimal(10000)
    position = {"S": Decimal(0), "L": Decimal(0)}
    pending = sorted(fills, key=lambda f: f["time"])
    expected = []
    with localcontext() as ctx:
        ctx.prec = 60
        for a, b in zip(ticks, ticks[1:]):
            midnight = (a + timedelta(days=1)).replace(hour=0) if a.hour else a
            while midnight < b:
                # Fills processed by the tick at or before the midnight: those of bars opened before it.
                while pending and pending[0]["time"] < iso(midnight):
                    f = pending.pop(0)
                    sign = 1 if f["side"] == "buy" else -1
                    position[f["symbol"]] += sign * Decimal(f["qty"])
                    cash -= sign * Decimal(f["qty"]) * Decimal(f["price"]) + Decimal(f["fee"])
                short_value = position["S"] * mark("S", midnight)  # negative
                borrow = round12(-short_value * Decimal("0.05") / 365)
                balance = cash + short_value
                rate = Decimal("0.08") if balance < 0 else Decimal("0.01")
                financing = round12(-balance * rate / 365)
                expected.append((iso(midnight), "S", "borrow", borrow))
                expected.append((iso(midnight), "", "financing", financing))
                cash -= borrow + financing
                midnight += timedelta(days=1)
    # Midnights 2, 3, 4, 5 January: none before the first tick, none after the last.
    assert len(expected) == 8

    rows = result.csv_rows("costs.csv")
    accruals = [(r["time"], r["symbol"], r["kind"], Decimal(r["amount"])) for r in rows
                if r["kind"] in ("borrow", "financing")]
    assert accruals == expected
    assert all(r["kind"] != "financing" or Decimal(r["base"]) < 0 for r in rows)  # a debit balance

    # Commission and slippage per fill: the fee, and |price − bar open| × quantity.
    opens = {(s, bars[s][i]["timestamp"]): Decimal(bars[s][i]["open"]) for s in bars for i in range(n)}
    by_fill = {(r["order_id"], r["kind"]): Decimal(r["amount"]) for r in rows if r["order_id"]}
    for f in fills:
        price, qty = Decimal(f["price"]), Decimal(f["qty"])
        reference = opens[(f["symbol"], f["time"])]
        assert price == reference * (Decimal("1.001") if f["side"] == "buy" else Decimal("0.999"))
        assert by_fill[(f["order_id"], "commission")] == Decimal(f["fee"]) == price * qty * Decimal("0.001")
        assert by_fill[(f["order_id"], "slippage")] == abs(price - reference) * qty

    costs = result.metrics()["costs"]
    borrow = sum(e[3] for e in expected if e[2] == "borrow")
    financing = sum(e[3] for e in expected if e[2] == "financing")
    commission = sum(Decimal(f["fee"]) for f in fills)
    slippage = sum(by_fill[(f["order_id"], "slippage")] for f in fills)
    assert Decimal(costs["borrow"]) == borrow
    assert Decimal(costs["financing"]) == financing
    assert Decimal(costs["commission"]) == commission
    assert Decimal(costs["slippage"]) == slippage
    assert Decimal(costs["total"]) == borrow + financing + commission + slippage
    assert Decimal(costs["by_symbol"]["S"]["borrow"]) == borrow
    assert Decimal(costs["by_symbol"]["L"]["borrow"]) == 0
    # The final cash is the starting cash less every fill and every accrual, exactly.
    final_cash = Decimal(result.csv_rows("equity.csv")[-1]["cash"])
    assert final_cash == cash
    # The summary shows money to the currency's precision (USD: cents); the files stay exact.
    shown = Decimal(costs["total"]).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert f"Costs              {shown:,} USD (" in result.stdout


def test_no_carry_terms_no_accruals(run_rustybt, write_algo, tmp_path):
    s_path = six_hour_bars(tmp_path / "S.csv", ["50"] * 12)
    l_path = six_hour_bars(tmp_path / "L.csv", ["100"] * 12)
    result = run_rustybt("run", "--algo", write_algo(CARRY_ALGO), "--data", s_path, "--data", l_path,
                         "--cash", "100000", "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    assert [r["kind"] for r in result.csv_rows("costs.csv")] == []
    costs = result.metrics()["costs"]
    assert costs["total"] == "0" and costs["by_symbol"]["S"]["borrow"] == "0"


def test_bad_carry_settings_are_usage_errors(run_rustybt, write_algo, tmp_path):
    s_path = six_hour_bars(tmp_path / "S.csv", ["50"] * 4)
    algo = write_algo(CARRY_ALGO)
    for text, message in [
        ('[execution]\nday_count = 366\n', "execution.day_count must be 360 or 365"),
        ('[execution]\nfinancing_rate = "-1"\n', "financing rates must not be negative"),
        ('[instruments.S]\nborrow_rate = "-0.1"\n', "borrow_rate must not be negative"),
    ]:
        config = tmp_path / "bad.toml"
        config.write_text(text)
        result = run_rustybt("run", "--algo", algo, "--data", s_path, "--config", config)
        assert result.returncode == 2, (text, result.stderr)
        assert message in result.stderr
        result.assert_clean_failure()


PARTIAL_ALGO = '''
from rustybt_api import Algorithm

class Partial(Algorithm):
    def on_tick(self, ctx):
        if len(ctx.history("T")) == 1:
            self.buy("T", 300)
'''

PER_SHARE_PROFILE = '''
name = "per_share_test"
partial_fill_volume_share = "0.1"
[commission]
model = "per_share"
rate = "0.005"
minimum = "1"
maximum_fraction_of_notional = "0.01"
'''


def test_a_per_order_minimum_is_charged_once_across_partial_fills(run_rustybt, write_algo, tmp_path):
    data = six_hour_bars(tmp_path / "T.csv", ["10"] * 8, volume=1000)  # 100 fill per bar
    profile = tmp_path / "profile.toml"
    profile.write_text(PER_SHARE_PROFILE)
    config = tmp_path / "run.toml"
    config.write_text(f'[execution]\nbroker_profile = "{profile}"\n')
    result = run_rustybt("run", "--algo", write_algo(PARTIAL_ALGO), "--data", data, "--config", config,
                         "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    fills = result.csv_rows("fills.csv")
    assert [Decimal(f["qty"]) for f in fills] == [100, 100, 100]
    # The order's cumulative fee after each fill is min(max(0.005 × filled, 1), 1 % of the
    # value filled); each fill pays the increase.
    filled = value = charged = Decimal(0)
    for f in fills:
        filled += Decimal(f["qty"])
        value += Decimal(f["qty"]) * Decimal(f["price"])
        total = min(max(Decimal("0.005") * filled, Decimal(1)), value / 100)
        assert Decimal(f["fee"]) == total - charged
        charged = total
    assert [Decimal(f["fee"]) for f in fills] == [1, 0, Decimal("0.5")]
    assert Decimal(result.metrics()["fees_paid"]) == max(Decimal(1), Decimal("0.005") * 300)
    # A zero fee leaves no row in costs.csv.
    assert [Decimal(r["amount"]) for r in result.csv_rows("costs.csv") if r["kind"] == "commission"] == [1, Decimal("0.5")]


def test_partial_fills_are_whole_lots(run_rustybt, write_algo, tmp_path):
    data = six_hour_bars(tmp_path / "T.csv", ["10"] * 8, volume=1000)  # 100 free per bar
    config = tmp_path / "run.toml"
    config.write_text('[execution]\nvolume_share = "0.1"\n[instruments.T]\nlot_size = "30"\n')
    algo = write_algo(PARTIAL_ALGO)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--config", config, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    # 100 free: 3 lots (90) per bar, then the last lot of 30; no fraction of a lot ever fills.
    assert [Decimal(f["qty"]) for f in result.csv_rows("fills.csv")] == [90, 90, 90, 30]
    statuses = [e["status"] for e in result.csv_rows("orders.csv")]
    assert statuses == ["new", "accepted", "partially_filled", "partially_filled", "partially_filled", "filled"]
