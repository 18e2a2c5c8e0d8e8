"""Every error path of `rustybt run`: one clear message, the documented exit code, no panic."""

from __future__ import annotations

import pytest

from conftest import ROOT

ALGORITHM_ERROR, USAGE_ERROR, DATA_ERROR = 1, 2, 3
SMA = ROOT / "algorithms" / "sma_cross.py"


def test_exception_in_initialize_names_file_and_line(run_rustybt, write_algo, bars_csv):
    algo = write_algo(
        """
        from rustybt_api import Algorithm

        class Broken(Algorithm):
            def initialize(self, ctx):
                self.helper()

            def helper(self):
                return {}["missing"]
        """
    )
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=50))
    assert result.returncode == ALGORITHM_ERROR
    result.assert_clean_failure()
    assert f"KeyError in `initialize` at {algo}:9" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "self.helper()" in result.stderr  # the whole chain, not only the last frame
    metrics = result.metrics()
    assert metrics["status"] == "failed" and metrics["partial"] is True


def test_exception_on_a_later_tick_writes_partial_results(run_rustybt, write_algo, bars_csv):
    algo = write_algo(
        """
        from rustybt_api import Algorithm

        class LateFailure(Algorithm):
            def initialize(self, ctx):
                self.ticks = 0

            def on_tick(self, ctx):
                self.ticks += 1
                if self.ticks == 500:
                    raise RuntimeError("boom at tick 500")
                if self.ticks == 10:
                    self.buy(ctx.symbols[0], 1)
        """
    )
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=1000))
    assert result.returncode == ALGORITHM_ERROR
    result.assert_clean_failure()
    assert f"RuntimeError in `on_tick` at {algo}:11" in result.stderr
    assert "boom at tick 500" in result.stderr
    assert "simulated time 2024-01-01T08:20:00Z" in result.stderr
    metrics = result.metrics()
    assert metrics["partial"] is True
    assert metrics["status"] == "failed"
    assert "boom at tick 500" in metrics["reason"]
    assert len(result.csv_rows("equity.csv")) == 500
    assert len(result.csv_rows("fills.csv")) == 1


def test_syntax_error_gives_file_line_and_column(run_rustybt, write_algo, bars_csv):
    algo = write_algo("from rustybt_api import Algorithm\n\nclass A(Algorithm)\n    pass\n")
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=50))
    assert result.returncode == ALGORITHM_ERROR
    result.assert_clean_failure()
    assert "SyntaxError in `loading`" in result.stderr
    assert f"{algo}:3:" in result.stderr
    assert not (result.out / "metrics.json").exists()


def test_file_without_an_algorithm_subclass(run_rustybt, write_algo, bars_csv):
    algo = write_algo("class NotAnAlgorithm:\n    pass\n")
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=50))
    assert result.returncode == ALGORITHM_ERROR
    result.assert_clean_failure()
    assert "defines no subclass of `rustybt_api.Algorithm`" in result.stderr
    assert "hint:" in result.stderr


def test_two_algorithm_classes_need_class_flag(run_rustybt, write_algo, bars_csv):
    algo = write_algo(
        """
        from rustybt_api import Algorithm

        class One(Algorithm):
            pass

        class Two(Algorithm):
            pass
        """
    )
    data = bars_csv(rows=50)
    result = run_rustybt("run", "--algo", algo, "--data", data)
    assert result.returncode == ALGORITHM_ERROR
    assert "2 Algorithm subclasses: One, Two" in result.stderr
    assert "--class" in result.stderr
    chosen = run_rustybt("run", "--algo", algo, "--data", data, "--class", "Two")
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.metrics()["run"]["class_name"] == "Two"


def test_missing_param_target_is_a_usage_error(run_rustybt, bars_csv):
    result = run_rustybt("run", "--algo", SMA, "--data", bars_csv(rows=50), "--param", "fats=5")
    assert result.returncode == USAGE_ERROR
    result.assert_clean_failure()
    assert "unknown parameter `fats` for `SmaCross`" in result.stderr
    assert "parameters of `SmaCross`: fast, slow, quantity" in result.stderr


def test_param_of_the_wrong_type_is_a_usage_error(run_rustybt, bars_csv):
    result = run_rustybt("run", "--algo", SMA, "--data", bars_csv(rows=50), "--param", "fast=ten")
    assert result.returncode == USAGE_ERROR
    assert "invalid value for parameter `fast`" in result.stderr


def test_missing_algorithm_file(run_rustybt, tmp_path):
    result = run_rustybt("run", "--algo", tmp_path / "nope.py")
    assert result.returncode == USAGE_ERROR
    assert "does not exist" in result.stderr


def test_missing_import_names_the_package_to_install(run_rustybt, write_algo, bars_csv):
    algo = write_algo("import surely_not_installed_pkg\nfrom rustybt_api import Algorithm\n")
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=50))
    assert result.returncode == ALGORITHM_ERROR
    assert "ModuleNotFoundError" in result.stderr
    assert "pip install surely_not_installed_pkg" in result.stderr


@pytest.mark.parametrize(
    "quantity, message",
    [
        ('float("nan")', "quantity is NaN"),
        ("0.5", "floats are inexact"),
        ('"abc"', "quantity `abc` is not a decimal number"),
        ('Decimal("Infinity")', "is not a finite decimal number"),
        ('Decimal("1e30")', "quantity `1E+30` is too large (at most 79228162514264337593543950335)"),
        ('"0.00000000000000000000000000001"', "has too many digits (at most 28 significant digits)"),
        ("0", "quantity must be positive"),
        ('Decimal("-1")', "quantity must be positive"),
        ('Decimal("NaN")', "quantity is NaN"),
    ],
)
def test_bad_order_quantities_raise_order_error(run_rustybt, write_algo, bars_csv, quantity, message):
    algo = write_algo(
        f"""
        from decimal import Decimal
        from rustybt_api import Algorithm

        class BadOrder(Algorithm):
            def on_tick(self, ctx):
                self.buy(ctx.symbols[0], {quantity})
        """
    )
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=20))
    assert result.returncode == ALGORITHM_ERROR
    result.assert_clean_failure()
    assert "OrderError in `on_tick`" in result.stderr
    assert message in result.stderr


def test_order_errors_can_be_caught_by_the_algorithm(run_rustybt, write_algo, bars_csv):
    algo = write_algo(
        """
        from rustybt_api import Algorithm, OrderError, UnknownSymbolError

        class Careful(Algorithm):
            def on_tick(self, ctx):
                try:
                    self.buy(ctx.symbols[0], float("nan"))
                except OrderError:
                    pass
                try:
                    ctx.history("NOPE")
                except UnknownSymbolError as e:
                    assert "symbols in this run: TEST" in str(e)
                    assert isinstance(e, KeyError)
        """
    )
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=20))
    assert result.returncode == 0, result.stderr


BAD_DATA = {
    "missing_column": ("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n", None, "missing column `volume`"),
    "unparsable": ("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,abc,10\n", 2, "close"),
    "high_below_low": ("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,1,2,1,10\n", 2, "high"),
    "high_below_close": ("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,1.5,0.5,1.6,10\n", 2, "high"),
    "low_above_open": ("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,1.1,1.5,10\n", 2, "low"),
    "negative_volume": ("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1.5,-3\n", 2, "volume"),
    # (Two rows going back would be a newest-first file, which is read oldest first.)
    "unsorted": (
        "timestamp,open,high,low,close,volume\n2024-01-01T00:01:00Z,1,2,0.5,1.5,1\n"
        "2024-01-01T00:00:00Z,1,2,0.5,1.5,1\n2024-01-01T00:02:00Z,1,2,0.5,1.5,1\n", 3, "unsorted",
    ),
    "duplicate": (
        "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1.5,1\n"
        "2024-01-01T00:00:00Z,1,2,0.5,1.5,1\n", 3, "duplicate",
    ),
    "bad_timestamp": ("timestamp,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,1\n", 2, "timestamp"),
    "empty": ("timestamp,open,high,low,close,volume\n", None, "no bars"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_names_file_and_line(run_rustybt, tmp_path, case):
    text, line, needle = BAD_DATA[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    result = run_rustybt("run", "--algo", SMA, "--data", path)
    assert result.returncode == DATA_ERROR, result.stderr
    result.assert_clean_failure()
    assert str(path) in result.stderr
    if line is not None:
        assert f"line {line}" in result.stderr
    assert needle in result.stderr.lower()


def test_unsupported_data_format(run_rustybt, tmp_path):
    path = tmp_path / "bars.xlsx"
    path.write_text("x")
    result = run_rustybt("run", "--algo", SMA, "--data", path)
    assert result.returncode == DATA_ERROR
    assert "bars.xlsx" in result.stderr


def test_bad_config_file_is_a_usage_error(run_rustybt, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[run]\ncahs = 5\n")
    result = run_rustybt("run", "--algo", SMA, "--config", config)
    assert result.returncode == USAGE_ERROR
    assert "cahs" in result.stderr


def test_negative_cash_is_refused_with_a_message(run_rustybt, bars_csv):
    result = run_rustybt("run", "--algo", SMA, "--data", bars_csv(rows=20), "--cash", "-5")
    assert result.returncode == USAGE_ERROR
    assert "starting cash must be positive" in result.stderr


def test_no_bars_after_filtering_is_a_data_error(run_rustybt, bars_csv):
    result = run_rustybt("run", "--algo", SMA, "--data", bars_csv(rows=20), "--start", "2030-01-01")
    assert result.returncode == DATA_ERROR
    assert "no bars" in result.stderr


def test_missing_data_file_says_its_cause_once(run_rustybt, tmp_path):
    result = run_rustybt("run", "--algo", SMA, "--data", tmp_path / "absent.csv")
    assert result.returncode == DATA_ERROR
    assert result.stderr.count("No such file or directory") == 1, result.stderr


def test_failure_reason_in_metrics_keeps_the_traceback(run_rustybt, write_algo, bars_csv):
    algo = write_algo(
        """
        from rustybt_api import Algorithm

        class Fails(Algorithm):
            def on_tick(self, ctx):
                raise ValueError("bad tick")
        """
    )
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=20))
    assert result.returncode == ALGORITHM_ERROR
    metrics = result.metrics()
    assert "Traceback (most recent call last)" in metrics["reason"]
    assert metrics["run"]["ticks_processed"] == 1
