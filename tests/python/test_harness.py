"""`rustybt test` and `rustybt_api.testing.backtest`: pytest inside the host, on the real engine."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT, RunResult

ALGO = """
from rustybt_api import Algorithm

class Buyer(Algorithm):
    quantity = 2
    fail_at = -1

    def initialize(self, ctx):
        self.ticks = 0

    def on_tick(self, ctx):
        self.ticks += 1
        if self.ticks == self.fail_at:
            raise RuntimeError("boom at tick %d" % self.ticks)
        if self.ticks == 3:
            self.buy("TEST", self.quantity)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "algorithms").mkdir()
    (tmp_path / "algorithms" / "buyer.py").write_text(textwrap.dedent(ALGO))
    return tmp_path


def write_test(project: Path, body: str) -> Path:
    path = project / "tests" / "test_buyer.py"
    path.parent.mkdir(exist_ok=True)
    header = """
        from decimal import Decimal
        import pytest
        from algorithms.buyer import Buyer
        from rustybt_api import AlgorithmFailed, BacktestError
        from rustybt_api.testing import backtest, generate_bars

        BARS = list(generate_bars(50, seed=3))
    """
    path.write_text(textwrap.dedent(header) + textwrap.dedent(body))
    return path


def rustybt_test(run_rustybt: Callable[..., RunResult], project: Path, *extra: str) -> RunResult:
    return run_rustybt("test", "tests", "--", "-q", "-p", "no:cacheprovider", *extra, cwd=project)


def test_a_passing_test_file_exits_0_and_sees_orders_fills_and_positions(run_rustybt, project):
    write_test(
        project,
        """
        def test_buys_once_at_the_next_open():
            result = backtest(Buyer, BARS, params={"quantity": 4})
            assert result.ok and result.bars == 50 and result.ticks == 50
            [order] = result.orders
            assert order["status"] == "filled" and order["quantity"] == 4
            assert order["average_price"] == BARS[3].open
            [fill] = result.fills
            assert fill["time"] == BARS[3].timestamp and fill["price"] == BARS[3].open
            assert result.positions == {"TEST": Decimal(4)}
            assert result.cash == Decimal(100000) - 4 * BARS[3].open
            assert result.algorithm.ticks == 50
            assert [e["status"] for e in result.order_events] == ["new", "accepted", "filled"]
            assert result.metrics["num_fills"] == 1
            assert result.hook_timings["on_tick"][0] == 50
        """,
    )
    done = rustybt_test(run_rustybt, project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_a_failing_assertion_exits_1(run_rustybt, project):
    write_test(
        project,
        """
        def test_wrong():
            result = backtest(Buyer, BARS)
            assert result.positions == {"TEST": Decimal(3)}
        """,
    )
    done = rustybt_test(run_rustybt, project)
    assert done.returncode == 1
    assert "1 failed" in done.stdout
    done.assert_clean_failure()


def test_an_exception_in_the_algorithm_raises_with_its_file_and_line(run_rustybt, project):
    write_test(
        project,
        """
        def test_raises():
            with pytest.raises(AlgorithmFailed) as caught:
                backtest(Buyer, BARS, params={"fail_at": 7})
            text = str(caught.value)
            assert "RuntimeError" in text and "boom at tick 7" in text
            assert "buyer.py" in text and "line 14" in text
            partial = caught.value.result
            assert partial.status == "failed" and partial.ticks == 7
            assert partial.error.phase == "on_tick" and partial.error.line == 14

        def test_returned_when_asked():
            result = backtest(Buyer(), BARS, params={"fail_at": 2}, raise_on_error=False)
            assert result.status == "failed" and result.error.exception == "RuntimeError"
            assert result.orders == []
        """,
    )
    done = rustybt_test(run_rustybt, project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_bad_input_raises_backtest_error(run_rustybt, project):
    write_test(
        project,
        """
        def test_missing_file(tmp_path):
            with pytest.raises(BacktestError, match="nope.csv"):
                backtest(Buyer, [str(tmp_path / "nope.csv")])

        def test_bad_cash():
            with pytest.raises(BacktestError, match="cash"):
                backtest(Buyer, BARS, cash="-5")

        def test_unknown_parameter():
            with pytest.raises(BacktestError, match="unknown parameter `qty`.*quantity"):
                backtest(Buyer, BARS, params={"qty": 1})

        def test_not_an_algorithm():
            with pytest.raises(BacktestError, match="not a rustybt_api.Algorithm"):
                backtest(object, BARS)

        def test_costs_are_itemized(tmp_path):
            config = tmp_path / "fees.toml"
            config.write_text('[commission]\\nrate = "0.001"\\nminimum = "0"\\n')
            result = backtest(Buyer, BARS, config=config, params={"quantity": 5})
            [fill] = result.fills
            assert fill["fee"] == Decimal("0.001") * 5 * BARS[3].open
            [charge] = [c for c in result.costs if c["kind"] == "commission"]
            assert charge["amount"] == fill["fee"] and charge["order_id"] == fill["order_id"]
            assert charge["base"] == 5 * BARS[3].open

        def test_several_symbols_by_dict():
            result = backtest(Buyer, {"TEST": BARS, "OTHER": BARS[:10]})
            assert sorted(result.metrics["run"]["symbols"]) == ["OTHER", "TEST"]
        """,
    )
    done = rustybt_test(run_rustybt, project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout


def test_outside_the_host_backtest_says_to_use_rustybt_test():
    import sys

    sys.path.insert(0, str(ROOT / "pylib"))
    from rustybt_api.errors import NotAttachedError
    from rustybt_api.testing import backtest, generate_bars

    from rustybt_api import Algorithm

    class Nothing(Algorithm):
        def on_tick(self, ctx):
            pass

    with pytest.raises(NotAttachedError, match="rustybt test"):
        backtest(Nothing, list(generate_bars(5, seed=1)))


def test_usage_errors(run_rustybt, project):
    done = run_rustybt("test", "no/such/dir", cwd=project)
    assert done.returncode == 2 and "does not exist" in done.stderr
    empty = project / "empty"
    empty.mkdir()
    done = run_rustybt("test", "empty", cwd=project)
    assert done.returncode == 2  # pytest found no tests


def test_the_example_test_file_passes(run_rustybt):
    done = run_rustybt("test", "tests/algorithms", "--", "-q", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b\d+ passed", done.stdout) and "failed" not in done.stdout
