"""A user's Python SlippageModel through the real binary: chosen in initialize or in the
config file, converted through Decimal only, never favourable, rounded to the tick."""

from __future__ import annotations

from decimal import Decimal

from test_costs import six_hour_bars

MODEL = '''
from decimal import Decimal
from rustybt_api import SlippageModel

class ShareOfVolume(SlippageModel):
    """3 cents plus 1 cent per 1 % of the bar's volume taken."""
    def slippage(self, order, bar):
        self.seen = getattr(self, "seen", 0) + 1
        return Decimal("0.03") + order.quantity / bar.volume * 100 * Decimal("0.01")

class Improver(SlippageModel):
    def slippage(self, order, bar):
        return Decimal("-0.5")

class Floaty(SlippageModel):
    def slippage(self, order, bar):
        return 0.01

class Broken(SlippageModel):
    def slippage(self, order, bar):
        raise ValueError("no quote for " + order.symbol)
'''

ALGO = '''
from rustybt_api import Algorithm
from my_models import MODEL_CLASS

class Trader(Algorithm):
    def initialize(self, ctx):
        if MODEL_CLASS is not None:
            self.set_slippage(MODEL_CLASS())
    def on_tick(self, ctx):
        n = len(ctx.history("T"))
        if n == 1:
            self.buy("T", 200)
        elif n == 3:
            self.sell("T", 200)
'''


def setup(tmp_path, write_algo, model_class: str | None, config_text: str = ""):
    (tmp_path / "my_models.py").write_text(MODEL)
    algo_source = ALGO.replace("from my_models import MODEL_CLASS", f"from my_models import {model_class}" if model_class else "")
    algo_source = algo_source.replace("MODEL_CLASS", model_class or "None")
    algo = write_algo(algo_source)
    closes = ["10", "10.5", "11", "10.8", "10.6", "10.9"]
    data = six_hour_bars(tmp_path / "T.csv", closes, volume=10_000)
    config = tmp_path / "run.toml"
    config.write_text('[instruments.T]\ntick_size = "0.01"\n' + config_text)
    return algo, data, config, closes


def test_a_custom_model_prices_every_fill(run_rustybt, write_algo, tmp_path):
    algo, data, config, closes = setup(tmp_path, write_algo, "ShareOfVolume")
    result = run_rustybt("run", "--algo", algo, "--data", data, "--config", config, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    fills = result.csv_rows("fills.csv")
    assert [f["side"] for f in fills] == ["buy", "sell"]
    for f, bar in zip(fills, (1, 3)):
        reference = Decimal(closes[bar - 1])  # a market order fills at the next open (= previous close)
        qty = Decimal(f["qty"])
        adjustment = Decimal("0.03") + qty / 10_000 * 100 * Decimal("0.01")  # 0.05
        expected = reference + adjustment if f["side"] == "buy" else reference - adjustment
        # Rounded to the 0.01 tick against the trader.
        expected = expected.quantize(Decimal("0.01"), rounding="ROUND_CEILING" if f["side"] == "buy" else "ROUND_FLOOR")
        assert Decimal(f["price"]) == expected
    slippage_rows = [r for r in result.csv_rows("costs.csv") if r["kind"] == "slippage"]
    assert [Decimal(r["amount"]) for r in slippage_rows] == [Decimal("0.05") * 200] * 2
    assert Decimal(result.metrics()["costs"]["slippage"]) == Decimal(20)


def test_the_config_file_selects_a_model_by_name(run_rustybt, write_algo, tmp_path):
    algo, data, config, closes = setup(tmp_path, write_algo, None, '[execution]\nslippage_model = "my_models:ShareOfVolume"\n')
    result = run_rustybt("run", "--algo", algo, "--data", data, "--config", config, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    assert Decimal(result.csv_rows("fills.csv")[0]["price"]) == Decimal(closes[0]) + Decimal("0.05")


def test_a_model_that_improves_the_price_is_clamped_and_warned_once(run_rustybt, write_algo, tmp_path):
    algo, data, config, closes = setup(tmp_path, write_algo, "Improver")
    result = run_rustybt("run", "--algo", algo, "--data", data, "--config", config, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    fills = result.csv_rows("fills.csv")
    assert [Decimal(f["price"]) for f in fills] == [Decimal(closes[0]), Decimal(closes[2])]
    log = (result.out / "log.txt").read_text()
    assert log.count("would improve the price") == 1
    assert "clamped to 0" in log
    assert [r for r in result.csv_rows("costs.csv") if r["kind"] == "slippage"] == []


def test_bad_models_stop_the_run_with_a_clear_error(run_rustybt, write_algo, tmp_path):
    for model, expected in [
        ("Floaty", "must return a Decimal (or int), got float"),
        ("Broken", "no quote for T"),
    ]:
        algo, data, config, _ = setup(tmp_path, write_algo, model)
        result = run_rustybt("run", "--algo", algo, "--data", data, "--config", config, "--no-progress", "--quiet")
        assert result.returncode == 1, (model, result.stderr)
        result.assert_clean_failure()
        reason = result.metrics()["reason"]
        assert expected in reason and "slippage" in reason, reason
    bad = tmp_path / "bad.toml"
    for text, expected, code in [
        ('[execution]\nslippage_model = "my_models.ShareOfVolume"\n', 'is not of the form "module:Class"', 2),
        ('[execution]\nslippage_model = "my_models:Missing"\n', "Missing", 1),
    ]:
        bad.write_text(text)
        algo, data, _, _ = setup(tmp_path, write_algo, None)
        result = run_rustybt("run", "--algo", algo, "--data", data, "--config", bad, "--no-progress", "--quiet")
        assert result.returncode == code, (text, result.stderr)
        assert expected in result.stderr
        result.assert_clean_failure()


def test_set_slippage_checks_its_argument_and_when_it_is_called(run_rustybt, write_algo, tmp_path):
    (tmp_path / "my_models.py").write_text(MODEL)
    data = six_hour_bars(tmp_path / "T.csv", ["10"] * 4)
    for body, expected in [
        ("    def initialize(self, ctx):\n        self.set_slippage(object())\n", "needs a rustybt_api.SlippageModel instance"),
        ("    def on_tick(self, ctx):\n        self.set_slippage(ShareOfVolume())\n", "only be called in initialize"),
    ]:
        algo = write_algo("from rustybt_api import Algorithm\nfrom my_models import ShareOfVolume\n\n"
                          "class A(Algorithm):\n" + body)
        result = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet")
        assert result.returncode == 1, result.stderr
        assert expected in result.stderr
        result.assert_clean_failure()
