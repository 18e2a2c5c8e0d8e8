"""Maintenance margin through the real binary: a leveraged long that falls through its
maintenance requirement is liquidated at the next bar's open, or halts the run."""

from __future__ import annotations

from decimal import Decimal

from test_costs import START, STEP, iso, six_hour_bars

ALGO = '''
from rustybt_api import Algorithm

class Leveraged(Algorithm):
    def on_tick(self, ctx):
        if len(ctx.history("L")) == 1:
            self.buy("L", 190)     # 19,000 of stock on 10,000: 2x at 50 % initial margin
'''

CLOSES = ["100", "100", "100", "90", "80", "70", "64", "63", "60", "58", "61", "62"]
CONFIG = '[instruments.default]\nmargin = "0.5"\nmaintenance_margin = "0.25"\n'


def run(run_rustybt, write_algo, tmp_path, extra: str = ""):
    data = six_hour_bars(tmp_path / "L.csv", CLOSES)
    config = tmp_path / "margin.toml"
    config.write_text(CONFIG + extra)
    return run_rustybt("run", "--algo", write_algo(ALGO), "--data", data, "--cash", "10000",
                       "--config", config, "--no-progress", "--quiet")


def first_breach() -> tuple[int, Decimal, Decimal]:
    """Reference: the buy fills at bar 1's open (100); at each later close, equity =
    cash + 190 × close and the requirement is 190 × close × 0.25."""
    cash = Decimal(10000) - 190 * Decimal(100)
    for i, close in enumerate(CLOSES[1:], start=1):
        equity = cash + 190 * Decimal(close)
        requirement = 190 * Decimal(close) * Decimal("0.25")
        if equity < requirement:
            return i, equity, requirement
    raise AssertionError("the data never breaches")


def test_a_breach_liquidates_at_the_next_bars_open(run_rustybt, write_algo, tmp_path):
    result = run(run_rustybt, write_algo, tmp_path)
    assert result.returncode == 0, result.stderr
    bar, equity, requirement = first_breach()
    reason = f"margin call: equity {equity:,.2f} is below the maintenance requirement {requirement:,.2f}"
    events = result.csv_rows("orders.csv")
    liquidation = [e for e in events if e["order_id"] == "2"]
    assert [e["status"] for e in liquidation] == ["new", "accepted", "filled"]
    # Called at the close of the breaching bar...
    breach_close = iso(START + (bar + 1) * STEP)
    assert liquidation[0]["time"] == breach_close
    assert liquidation[0]["reason"].startswith(reason)
    assert (liquidation[0]["side"], liquidation[0]["type"], liquidation[0]["quantity"]) == ("sell", "market", "190")
    # ...filled at the open of the next bar, never on the bar that revealed the breach.
    fill = result.csv_rows("fills.csv")[-1]
    assert fill["order_id"] == "2"
    assert fill["time"] == iso(START + (bar + 1) * STEP)  # the next bar opens when this one closes
    assert Decimal(fill["price"]) == Decimal(CLOSES[bar])  # that bar's open (= previous close)
    final_cash = Decimal(result.csv_rows("equity.csv")[-1]["cash"])
    assert final_cash == Decimal(10000) - 190 * Decimal(100) + 190 * Decimal(fill["price"])
    # One call only, logged.
    log = (result.out / "log.txt").read_text()
    assert log.count("margin call") == 1 and reason in log
    assert sum(1 for e in events if e["reason"].startswith("margin call")) == 2  # new + accepted


def test_halt_stops_the_run_at_the_breach(run_rustybt, write_algo, tmp_path):
    result = run(run_rustybt, write_algo, tmp_path, '[execution]\non_margin_call = "halt"\n')
    assert result.returncode == 1, result.stderr
    result.assert_clean_failure()
    bar, equity, requirement = first_breach()
    metrics = result.metrics()
    assert metrics["status"] == "failed"
    assert "MarginCall" in metrics["reason"]
    assert f"margin call: equity {equity:,.2f}" in metrics["reason"]
    assert metrics["end_time"] == iso(START + (bar + 1) * STEP)
    assert [f["order_id"] for f in result.csv_rows("fills.csv")] == ["1"]


def test_without_maintenance_margin_nothing_is_checked(run_rustybt, write_algo, tmp_path):
    data = six_hour_bars(tmp_path / "L.csv", CLOSES)
    config = tmp_path / "plain.toml"
    config.write_text('[instruments.default]\nmargin = "0.5"\n')
    result = run_rustybt("run", "--algo", write_algo(ALGO), "--data", data, "--cash", "10000",
                         "--config", config, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    assert [f["order_id"] for f in result.csv_rows("fills.csv")] == ["1"]


def test_bad_margin_settings_are_usage_errors(run_rustybt, write_algo, tmp_path):
    for extra, message in [
        ('[execution]\non_margin_call = "ignore"\n', "execution.on_margin_call: `ignore` is not a policy"),
        ('[instruments.L]\nmargin = "0.5"\nmaintenance_margin = "0.6"\n', "maintenance_margin must be in (0, margin = 0.5]"),
    ]:
        result = run(run_rustybt, write_algo, tmp_path, extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr
        result.assert_clean_failure()
