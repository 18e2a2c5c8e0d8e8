"""`rustybt run --portfolio`: a book of strategies on one account, end to end on the real binary.

Oracles: plain `rustybt run`s of the same algorithms (a book of one strategy, and a book of
strategies on disjoint symbols that never rebalances, must equal them byte for byte), sums of
the strategies' own files, and plain numpy computations of the allocators' weights.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import tempfile
import textwrap
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, RunResult
from report_support import browser, console_errors, drawn_charts, open_report  # noqa: F401

SAMPLE = ROOT / "examples" / "data" / "sample"
SMA = ROOT / "algorithms" / "sma_cross.py"
RSI = ROOT / "algorithms" / "rsi_oversold.py"
DAY_NS = 86_400 * 10**9

# Files a plain run writes whose bytes depend only on the trading (not on the wall clock).
EXACT_FILES = [
    "equity.csv",
    "equity.parquet",
    "fills.csv",
    "fills.parquet",
    "trades.csv",
    "trades.parquet",
    "orders.csv",
    "costs.csv",
]


def write_portfolio(tmp_path: Path, text: str, name: str = "portfolio.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def comparable_metrics(result: RunResult | Path) -> dict[str, Any]:
    folder = result.out if isinstance(result, RunResult) else result
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.pop("run")
    metrics.pop("portfolio", None)
    return metrics


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def assert_same_results(book_folder: Path, plain: RunResult) -> None:
    for name in EXACT_FILES:
        assert (book_folder / name).read_bytes() == (plain.out / name).read_bytes(), name
    assert comparable_metrics(book_folder) == comparable_metrics(plain)


TWO_DISJOINT = """
    [portfolio]
    cash = "200000"
    allocator = "fixed"
    rebalance = "never"

    [[strategy]]
    id = "trend"
    algo = "{sma}"
    weight = "0.5"
    symbols = ["SYNA"]
    params = {{ fast = 5, slow = 20 }}

    [[strategy]]
    id = "revert"
    algo = "{rsi}"
    weight = "0.5"
    symbols = ["SYNB", "SYNC"]
"""


def test_a_book_of_one_strategy_is_the_plain_run(run_rustybt, tmp_path: Path) -> None:
    portfolio = write_portfolio(
        tmp_path,
        f"""
        [portfolio]
        cash = "100000"
        rebalance = "weekly"

        [[strategy]]
        id = "only"
        algo = "{SMA}"
        params = {{ fast = 5, slow = 20 }}
        """,
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    plain = run_rustybt(
        "run", "--algo", SMA, "--param", "fast=5", "--param", "slow=20", "--cash", "100000",
        "--no-progress", "-q",
    )
    assert plain.returncode == 0, plain.stderr
    assert_same_results(book.out / "strategies" / "only", plain)
    # The account of a one-strategy book is that strategy.
    for name in ["equity.csv", "equity.parquet"]:
        assert (book.out / name).read_bytes() == (plain.out / name).read_bytes(), name
    assert comparable_metrics(book) == comparable_metrics(plain)
    allocation = rows(book.out / "allocation.csv")
    # Weekly rebalances of a single strategy move nothing.
    assert all(Decimal(r["transfer"]) == 0 for r in allocation[1:])
    assert allocation[0]["transfer"] == "100000"


def test_two_strategies_on_disjoint_symbols_are_two_plain_runs_at_half_the_cash(
    run_rustybt, tmp_path: Path
) -> None:
    portfolio = write_portfolio(tmp_path, TWO_DISJOINT.format(sma=SMA, rsi=RSI))
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress")
    assert book.returncode == 0, book.stderr
    trend = run_rustybt(
        "run", "--algo", SMA, "--data", SAMPLE / "SYNA.csv", "--cash", "100000",
        "--param", "fast=5", "--param", "slow=20", "--no-progress", "-q",
    )
    revert = run_rustybt(
        "run", "--algo", RSI, "--data", SAMPLE / "SYNB.csv", "--data", SAMPLE / "SYNC.csv",
        "--cash", "100000", "--no-progress", "-q",
    )
    assert trend.returncode == 0 and revert.returncode == 0
    assert_same_results(book.out / "strategies" / "trend", trend)
    assert_same_results(book.out / "strategies" / "revert", revert)

    # The account is the exact sum of the two at every close time (a strategy without a bar
    # at a time counts with its last equity).
    parts = {
        name: {r["time"]: Decimal(r["equity"]) for r in rows(run.out / "equity.csv")}
        for name, run in [("trend", trend), ("revert", revert)]
    }
    last = {"trend": Decimal(100000), "revert": Decimal(100000)}
    account = rows(book.out / "equity.csv")
    assert len(account) == 10080
    for r in account:
        for name in last:
            last[name] = parts[name].get(r["time"], last[name])
        assert Decimal(r["equity"]) == sum(last.values()), r["time"]

    # The combined files hold every strategy's rows, labelled, in time order.
    fills = rows(book.out / "fills.csv")
    assert len(fills) == len(rows(trend.out / "fills.csv")) + len(rows(revert.out / "fills.csv"))
    assert [r["time"] for r in fills] == sorted(r["time"] for r in fills)
    assert {r["strategy"] for r in fills} == {"trend", "revert"}
    assert {r["symbol"] for r in fills if r["strategy"] == "trend"} == {"SYNA"}
    trades = rows(book.out / "trades.csv")
    assert sum(Decimal(t["pnl"]) for t in trades) == sum(
        Decimal(t["pnl"]) for run in (trend, revert) for t in rows(run.out / "trades.csv")
    )
    orders = rows(book.out / "orders.csv")
    assert len(orders) == len(rows(trend.out / "orders.csv")) + len(rows(revert.out / "orders.csv"))

    metrics = book.metrics()
    assert metrics["num_trades"] == trend.metrics()["num_trades"] + revert.metrics()["num_trades"]
    assert Decimal(metrics["final_equity"]) == Decimal(trend.metrics()["final_equity"]) + Decimal(
        revert.metrics()["final_equity"]
    )
    section = metrics["portfolio"]
    assert [s["id"] for s in section["strategies"]] == ["trend", "revert"]
    assert section["strategies"][0]["metrics"]["num_trades"] == trend.metrics()["num_trades"]
    assert section["correlation"]["strategies"] == ["trend", "revert"]
    matrix = section["correlation"]["matrix"]
    assert matrix[0][0] == pytest.approx(1.0) and matrix[0][1] == pytest.approx(matrix[1][0])
    assert "Strategy" in book.stdout and "revert" in book.stdout

    # pandas and polars read the combined Parquet files with exact decimals and the labels.
    frame = pd.read_parquet(book.out / "fills.parquet")
    assert list(frame.columns[:2]) == ["strategy", "time"]
    assert isinstance(frame["price"].iloc[0], Decimal)
    assert pl.read_parquet(book.out / "trades.parquet")["strategy"].n_unique() == 2


def daily_returns(equity_csv: Path, initial: Decimal) -> list[float]:
    """The last equity of each UTC day (by close time) against the previous day's."""
    last: dict[int, Decimal] = {}
    for r in rows(equity_csv):
        day = int(pd.Timestamp(r["time"]).value // DAY_NS)
        last[day] = Decimal(r["equity"])
    out, previous = [], initial
    for day in sorted(last):
        out.append(float(last[day] / previous - 1))
        previous = last[day]
    return out


def test_rebalancing_moves_cash_to_the_weights_exactly(run_rustybt, tmp_path: Path) -> None:
    portfolio = write_portfolio(
        tmp_path, TWO_DISJOINT.format(sma=SMA, rsi=RSI).replace('"never"', '"daily"')
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    by_time: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows(book.out / "allocation.csv")[2:]:
        by_time[r["time"]].append(r)
    assert len(by_time) == 7  # midnights from Jan 2 to Jan 8
    equity = {r["time"]: Decimal(r["equity"]) for r in rows(book.out / "equity.csv")}
    for time, moves in by_time.items():
        assert sum(Decimal(m["transfer"]) for m in moves) == 0, time
        total = sum(Decimal(m["equity_before"]) for m in moves)
        assert total == equity[time], time
        for m in moves:
            assert Decimal(m["equity_after"]) == Decimal(m["equity_before"]) + Decimal(m["transfer"])
            assert abs(Decimal(m["equity_after"]) - total / 2) <= Decimal("0.01")
    assert book.metrics()["portfolio"]["rebalances"] == 7


def test_risk_parity_weights_match_a_numpy_reference(run_rustybt, tmp_path: Path) -> None:
    portfolio = write_portfolio(
        tmp_path,
        TWO_DISJOINT.format(sma=SMA, rsi=RSI)
        .replace('"fixed"', '"risk_parity"\nrisk_parity = "inverse_volatility"')
        .replace('"never"', '"daily"'),
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    # Daily returns with the capital moves taken out: the strategies' own (flow-adjusted)
    # equity curves.
    returns = {
        sid: daily_returns(book.out / "strategies" / sid / "equity.csv", Decimal(100000))
        for sid in ("trend", "revert")
    }
    allocation = rows(book.out / "allocation.csv")[2:]
    checked = 0
    for r in allocation:
        day = int(pd.Timestamp(r["time"]).value // DAY_NS)
        first_day = int(pd.Timestamp("2024-01-01").value // DAY_NS)
        completed = day - first_day  # days closed before this midnight
        if completed < 5:
            assert Decimal(r["weight"]) == Decimal("0.5"), r  # too little history: the base
            continue
        sigma = {sid: np.std(ret[:completed], ddof=1) for sid, ret in returns.items()}
        inverse = {sid: 1 / s for sid, s in sigma.items()}
        expected = inverse[r["strategy"]] / sum(inverse.values())
        assert float(r["weight"]) == pytest.approx(expected, abs=1e-8), r
        checked += 1
    assert checked == 6  # the midnights of Jan 6, 7 and 8, two strategies each


def test_algo_flags_make_an_equal_weight_book(run_rustybt) -> None:
    book = run_rustybt("run", "--algo", SMA, "--algo", RSI, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    section = book.metrics()["portfolio"]
    assert [s["id"] for s in section["strategies"]] == ["sma_cross", "rsi_oversold"]
    assert [s["initial_capital"] for s in section["strategies"]] == ["50000", "50000"]
    assert section["allocator"] == "fixed" and section["rebalance"] == "never"


FAILING = """
    from rustybt_api import Algorithm

    class Failing(Algorithm):
        def initialize(self, ctx):
            self.ticks = 0

        def on_tick(self, ctx):
            self.ticks += 1
            if self.ticks == 5:
                self.buy("SYNA", 10)
            if self.ticks == 100:
                raise RuntimeError("boom at tick 100")
"""


@pytest.mark.parametrize("on_stop", ["hold", "close"])
def test_a_failing_strategy_stops_alone(
    run_rustybt, write_algo, tmp_path: Path, on_stop: str
) -> None:
    algo = write_algo(FAILING, "failing")
    portfolio = write_portfolio(
        tmp_path,
        f"""
        [portfolio]
        cash = "100000"
        on_stop = "{on_stop}"

        [[strategy]]
        id = "bad"
        algo = "{algo}"
        symbols = ["SYNA"]

        [[strategy]]
        id = "good"
        algo = "{RSI}"
        symbols = ["SYNB", "SYNC"]
        """,
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    assert "strategy `bad` stopped at 2024-01-01T01:40:00Z" in book.stderr
    assert "boom at tick 100" in book.stderr
    metrics = book.metrics()
    assert metrics["status"] == "complete"
    bad, good = metrics["portfolio"]["strategies"]
    assert bad["status"] == "stopped" and "RuntimeError" in bad["reason"]
    assert "failing.py:13" in bad["reason"]  # the user's file and line
    assert "raise RuntimeError" in bad["reason"]  # and the traceback
    assert good["status"] == "complete"
    # The good strategy ran to the end of the data, untouched.
    good_equity = rows(book.out / "strategies" / "good" / "equity.csv")
    assert good_equity[-1]["time"] == "2024-01-08T00:00:00Z"
    bad_fills = rows(book.out / "strategies" / "bad" / "fills.csv")
    if on_stop == "hold":
        assert [f["side"] for f in bad_fills] == ["buy"]
    else:
        # Closed by a market order at the next bar after the stop.
        assert [f["side"] for f in bad_fills] == ["buy", "sell"]
        assert bad_fills[1]["time"] == "2024-01-01T01:40:00Z"
        orders = rows(book.out / "strategies" / "bad" / "orders.csv")
        assert "strategy `bad` stopped" in orders[-1]["reason"] or any(
            "strategy `bad` stopped" in o["reason"] for o in orders
        )


def test_stop_all_fails_the_book(run_rustybt, write_algo, tmp_path: Path) -> None:
    algo = write_algo(FAILING, "failing")
    portfolio = write_portfolio(
        tmp_path,
        f"""
        [portfolio]
        on_error = "stop_all"

        [[strategy]]
        id = "bad"
        algo = "{algo}"

        [[strategy]]
        id = "good"
        algo = "{RSI}"
        """,
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 1, book.stderr
    book.assert_clean_failure()
    assert "boom at tick 100" in book.stderr
    assert book.metrics()["status"] == "failed"
    # Partial results are kept for both.
    assert (book.out / "strategies" / "good" / "equity.csv").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[portfolio]\nallocator = "magic"\n[[strategy]]\nid = "a"\nalgo = "{sma}"\n', "unknown allocator `magic`"),
        ('[portfolio]\n[[strategy]]\nid = "a"\nalgo = "missing.py"\n', "strategy `a`: algorithm file `missing.py` does not exist"),
        ('[portfolio]\n[[strategy]]\nid = "a"\nalgo = "{sma}"\nsymbols = ["NOPE"]\n', "strategy `a`: symbol `NOPE` is not in the run's data"),
        ('[portfolio]\n[[strategy]]\nid = "a"\nalgo = "{sma}"\nweight = "0.7"\n', "weights sum to 0.7, not 1"),
        ('[portfolio]\ncash = \n', "line 2"),
    ],
)
def test_bad_portfolio_files_are_usage_errors(
    run_rustybt, tmp_path: Path, text: str, expected: str
) -> None:
    portfolio = write_portfolio(tmp_path, text.format(sma=SMA))
    result = run_rustybt("run", "--portfolio", portfolio, "--no-progress")
    assert result.returncode == 2, result.stderr
    result.assert_clean_failure()
    assert expected in result.stderr


def test_single_run_flags_are_refused(run_rustybt, tmp_path: Path) -> None:
    result = run_rustybt("run", "--algo", SMA, "--algo", RSI, "--param", "fast=3")
    assert result.returncode == 2
    assert "`--param` is not available for a portfolio run" in result.stderr
    result = run_rustybt("optimize", "--algo", SMA, "--algo", RSI, "--param", "fast=3:5")
    assert result.returncode == 2
    assert "studies one algorithm" in result.stderr


ALLOCATOR = """
    from decimal import Decimal
    from rustybt_api import Allocator

    class Tilted(Allocator):
        def __init__(self, tilt):
            self.tilt = Decimal(str(tilt))
            self.seen = []

        def weights(self, state):
            assert list(state.strategies) == ["trend", "revert"]
            assert all(isinstance(r, Decimal) for rs in state.returns.values() for r in rs)
            self.seen.append(state.time)
            return {"trend": self.tilt, "revert": Decimal(1)}

    class Floaty(Allocator):
        def weights(self, state):
            return {"trend": 0.3, "revert": 0.7}
"""


def test_a_python_allocator_sets_the_weights(run_rustybt, tmp_path: Path) -> None:
    (tmp_path / "my_allocators.py").write_text(textwrap.dedent(ALLOCATOR))
    portfolio = write_portfolio(
        tmp_path,
        TWO_DISJOINT.format(sma=SMA, rsi=RSI)
        .replace('"fixed"', '"my_allocators:Tilted"\nparams = { tilt = 3 }')
        .replace('"never"', '"daily"'),
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    moves = rows(book.out / "allocation.csv")[2:]
    assert {(m["strategy"], m["weight"]) for m in moves} == {("trend", "0.75"), ("revert", "0.25")}


def test_an_allocator_returning_floats_is_refused_with_its_file(
    run_rustybt, tmp_path: Path
) -> None:
    (tmp_path / "my_allocators.py").write_text(textwrap.dedent(ALLOCATOR))
    portfolio = write_portfolio(
        tmp_path,
        TWO_DISJOINT.format(sma=SMA, rsi=RSI)
        .replace('"fixed"', '"my_allocators:Floaty"')
        .replace('"never"', '"daily"'),
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 1, book.stderr
    book.assert_clean_failure()
    assert "Floaty.weights() must return a Decimal (or int), got float" in book.stderr
    assert book.metrics()["status"] == "failed"


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    raw=st.lists(st.integers(min_value=0, max_value=1000), min_size=3, max_size=3),
    low=st.sampled_from(["0", "0.1", "0.2"]),
    high=st.sampled_from(["1", "0.6", "0.5"]),
)
def test_allocated_weights_are_the_settled_proportions(
    run_rustybt, tmp_path: Path, raw: list[int], low: str, high: str
) -> None:
    """Whatever a custom allocator proposes, the book's weights sum to exactly 1, stay within
    the bounds, keep the proposal's proportions among unpinned strategies, and the moves sum
    to zero."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / "fixed_raw.py").write_text(
        "from decimal import Decimal\nfrom rustybt_api import Allocator\n"
        "class Raw(Allocator):\n"
        f"    def weights(self, state):\n        return dict(zip(state.strategies, {raw!r}))\n"
    )
    strategies = "".join(
        f'[[strategy]]\nid = "s{i}"\nalgo = "{SMA}"\nsymbols = ["{sym}"]\n'
        for i, sym in enumerate(["SYNA", "SYNB", "SYNC"])
    )
    portfolio = write_portfolio(
        folder,
        f'[portfolio]\nallocator = "fixed_raw:Raw"\nrebalance = "0 12 * * *"\n'
        f'min_weight = "{low}"\nmax_weight = "{high}"\n{strategies}',
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q", out=folder / "out")
    assert book.returncode == 0, book.stderr
    by_time: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows(folder / "out" / "allocation.csv")[3:]:
        by_time[r["time"]].append(r)
    assert by_time
    for moves in by_time.values():
        weights = [Decimal(m["weight"]) for m in moves]
        assert sum(weights) == 1
        assert sum(Decimal(m["transfer"]) for m in moves) == 0
        slack = Decimal("1e-9")
        assert all(Decimal(low) - slack <= w <= Decimal(high) + slack for w in weights)
        free = [
            (w, r) for w, r in zip(weights, raw)
            if Decimal(low) + slack < w < Decimal(high) - slack
        ]
        # Unpinned weights keep the proposal's ratios.
        for (w1, r1), (w2, r2) in zip(free, free[1:]):
            if r1 and r2:
                assert float(w1) / float(w2) == pytest.approx(r1 / r2, rel=1e-6)


BUY_AND_HOLD = """
    from rustybt_api import Algorithm

    class BuyAndHold(Algorithm):
        quantity = 100

        def initialize(self, ctx):
            self.done = False

        def on_tick(self, ctx):
            if not self.done:
                self.done = True
                self.buy("SYNA", self.quantity)
"""


def book_of_buyers(tmp_path: Path, algo: Path, risk: str, second_quantity: int = 300) -> Path:
    return write_portfolio(
        tmp_path,
        f"""
        [portfolio]
        cash = "100000"

        [[strategy]]
        id = "first"
        algo = "{algo}"
        params = {{ quantity = 200 }}

        [[strategy]]
        id = "second"
        algo = "{algo}"
        params = {{ quantity = {second_quantity} }}

        [risk]
        {risk}
        """,
    )


def test_exposure_to_one_symbol_is_limited_across_strategies(
    run_rustybt, write_algo, tmp_path: Path
) -> None:
    algo = write_algo(BUY_AND_HOLD, "buyer")
    # SYNA trades near 100: 200 + 300 shares are ~50% of 100,000; the limit is 40%.
    portfolio = book_of_buyers(tmp_path, algo, 'max_symbol_exposure = "0.4"')
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    orders = rows(book.out / "orders.csv")
    first = [o for o in orders if o["strategy"] == "first"]
    second = [o for o in orders if o["strategy"] == "second"]
    assert first[-1]["status"] == "filled"
    assert second[-1]["status"] == "rejected"
    assert second[-1]["reason"].startswith("portfolio risk: exposure to SYNA would be 0.")
    assert "(limit 0.4)" in second[-1]["reason"]
    risk = book.metrics()["portfolio"]["risk"]
    assert risk["rejected_orders"] == 1 and risk["max_symbol_exposure"] == "0.4"
    assert "risk limits rejected 1 order" in book.stderr
    # Alone, the same order is well inside the limit: it is the book's sum that breaks it.
    smaller = book_of_buyers(tmp_path, algo, 'max_symbol_exposure = "0.4"', second_quantity=150)
    book = run_rustybt("run", "--portfolio", smaller, "--no-progress", "-q")
    assert [o["status"] for o in rows(book.out / "orders.csv") if o["strategy"] == "second"][-1] == "filled"


@pytest.mark.parametrize("on_halt", ["hold", "close"])
def test_the_drawdown_limit_halts_the_book(
    run_rustybt, write_algo, tmp_path: Path, on_halt: str
) -> None:
    algo = write_algo(
        BUY_AND_HOLD.replace("if not self.done:", "if ctx.time.hour == 12 or not self.done:"),
        "buyer",
    )
    portfolio = book_of_buyers(
        tmp_path, algo, f'max_drawdown = "0.0005"\non_halt = "{on_halt}"'
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    risk = book.metrics()["portfolio"]["risk"]
    assert risk["halted_at"] is not None
    reached = re.fullmatch(
        r"portfolio halted: the account's drawdown reached ([0-9.]+) \(limit 0.0005\)",
        risk["halt_reason"],
    )
    assert reached and Decimal(reached.group(1)) >= Decimal("0.0005"), risk["halt_reason"]
    halted_at = risk["halted_at"]
    assert f"at {halted_at}; later orders were rejected" in book.stderr
    orders = rows(book.out / "orders.csv")
    after = [o for o in orders if o["time"] > halted_at and o["status"] in ("new", "rejected", "accepted")]
    entries = [o for o in after if o["reason"] and "trading halted" in o["reason"]]
    assert entries, "orders after the halt are rejected with the reason"
    fills = rows(book.out / "fills.csv")
    position: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        sign = 1 if f["side"] == "buy" else -1
        position[f["strategy"]] += sign * Decimal(f["qty"])
    if on_halt == "close":
        assert all(q == 0 for q in position.values()), position
        assert any(f["time"] >= halted_at and f["side"] == "sell" for f in fills)
    else:
        assert position["first"] > 0 and not any(f["side"] == "sell" for f in fills)


def test_volatility_targeting_holds_a_reserve(run_rustybt, tmp_path: Path) -> None:
    portfolio = write_portfolio(
        tmp_path,
        TWO_DISJOINT.format(sma=SMA, rsi=RSI).replace('"never"', '"daily"')
        + '\n[risk]\nvolatility_target = "0.0001"\n',
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    moves = rows(book.out / "allocation.csv")
    reserve = [m for m in moves if m["strategy"] == "(reserve)"]
    assert reserve, "a target this low keeps cash out of the strategies"
    equity = {r["time"]: Decimal(r["equity"]) for r in rows(book.out / "equity.csv")}
    by_time: dict[str, list[dict[str, str]]] = defaultdict(list)
    for m in moves[2:]:
        by_time[m["time"]].append(m)
    for time, group in by_time.items():
        # The moves (reserve included) net to zero and the book's equity is unchanged.
        assert sum(Decimal(m["transfer"]) for m in group) == 0, time
        assert sum(Decimal(m["equity_before"]) for m in group) == equity[time]
    # The account's curve includes the reserve: it equals the strategies' capital plus it.
    last = reserve[-1]
    assert Decimal(last["equity_after"]) > 0


TRADE_ONCE = """
    from rustybt_api import Algorithm

    class TradeOnce(Algorithm):
        side = "buy"
        quantity = 100

        def initialize(self, ctx):
            self.ticks = 0

        def on_tick(self, ctx):
            self.ticks += 1
            if self.ticks == 10:
                if self.side == "buy":
                    self.buy("SYNA", self.quantity)
                else:
                    self.sell("SYNA", self.quantity)
"""


def run_two_strategy_book(
    run_rustybt, tmp_path: Path, algo: Path, netting: bool, buyer: str, seller: str
) -> RunResult:
    """A buyer and a seller running `algo` on SYNA (their params after `side`), with a
    commission and slippage, netting on or off."""
    config = tmp_path / "costs.toml"
    config.write_text('[commission]\nrate = "0.001"\n[execution]\nslippage_bps = 10\n')
    portfolio = write_portfolio(
        tmp_path,
        f"""
        [portfolio]
        cash = "200000"
        netting = {str(netting).lower()}

        [[strategy]]
        id = "buyer"
        algo = "{algo}"
        symbols = ["SYNA"]
        params = {{ side = "buy", {buyer} }}

        [[strategy]]
        id = "seller"
        algo = "{algo}"
        symbols = ["SYNA"]
        params = {{ side = "sell", {seller} }}
        """,
        name=f"book_{netting}.toml",
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--config", config, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    return book


@pytest.mark.parametrize("netting", [True, False])
def test_opposite_orders_of_one_tick_are_netted(
    run_rustybt, write_algo, tmp_path: Path, netting: bool
) -> None:
    algo = write_algo(TRADE_ONCE, "trade_once")
    book = run_two_strategy_book(run_rustybt, tmp_path, algo, netting, "quantity = 100",
                                 "quantity = 60")
    fills = rows(book.out / "fills.csv")
    bars = {r["timestamp"]: r for r in csv.DictReader((SAMPLE / "SYNA.csv").open())}
    open_price = Decimal(bars[fills[0]["time"]]["open"])
    by = defaultdict(list)
    for f in fills:
        by[f["strategy"]].append((f["side"], Decimal(f["qty"]), Decimal(f["price"]), Decimal(f["fee"])))
    section = book.metrics()["portfolio"]["netting"]
    if netting:
        # 60 cross at the open with no cost; the buyer's other 40 goes to the market.
        assert by["seller"] == [("sell", 60, open_price, 0)]
        assert by["buyer"][0] == ("buy", 60, open_price, 0)
        side, qty, price, fee = by["buyer"][1]
        assert (side, qty) == ("buy", 40) and price > open_price and fee > 0
        assert section["crossings"] == 1 and section["quantity"] == "60"
        assert Decimal(section["commission_saved"]) == 120 * open_price * Decimal("0.001")
        assert "netting: 1 crossing(s)" in book.stderr
    else:
        assert [(s, q) for s, q, _, _ in by["buyer"]] == [("buy", 100)]
        assert [(s, q) for s, q, _, _ in by["seller"]] == [("sell", 60)]
        assert section["crossings"] == 0 and section["enabled"] is False
    # Either way each strategy holds exactly what it asked for.
    assert sum(q for _, q, _, _ in by["buyer"]) == 100
    assert sum(q for _, q, _, _ in by["seller"]) == 60


def test_the_example_book_runs_and_its_report_draws_the_portfolio(
    run_rustybt, binary: Path, browser: Any
) -> None:
    book = run_rustybt(
        "run", "--portfolio", ROOT / "examples" / "portfolio" / "portfolio.toml", "--no-progress", "-q"
    )
    assert book.returncode == 0, book.stderr
    section = book.metrics()["portfolio"]
    assert [s["id"] for s in section["strategies"]] == ["trend", "short_reversion", "pair"]
    assert all(s["status"] == "complete" and s["metrics"]["num_trades"] > 0 for s in section["strategies"])
    assert section["allocator"] == "risk_parity (equal_risk)" and section["rebalance"] == "weekly"
    # The short strategy shorts, the pair holds both sides.
    fills = rows(book.out / "fills.csv")
    first_short = next(f for f in fills if f["strategy"] == "short_reversion")
    assert first_short["side"] == "sell"
    assert {f["symbol"] for f in fills if f["strategy"] == "pair"} == {"SYNB", "SYNC"}

    done = subprocess.run([str(binary), "report", str(book.out)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    open_report(browser, book.out / "report.html")
    charts = drawn_charts(browser)
    assert console_errors(browser) == []
    for chart in ("strategy_equity", "allocation", "correlation", "strategies"):
        assert charts[chart]["svg"], chart
    assert [t["name"] for t in charts["strategy_equity"]["traces"]] == ["trend", "short_reversion", "pair"]
    # The capital chart ends at each strategy's last allocation.
    last = {}
    for m in rows(book.out / "allocation.csv"):
        last[m["strategy"]] = float(m["equity_after"])
    drawn = {t["name"]: t["y"][-1] for t in charts["allocation"]["traces"]}
    assert drawn == pytest.approx(last)
    assert charts["correlation"]["traces"][0]["z"] == section["correlation"]["matrix"]
    # The metrics table is the account's: the portfolio section is not flattened into it.
    keys = browser.execute_script(
        "return [...document.querySelectorAll('#metrics td[data-key]')].map(td => td.dataset.key)")
    assert keys and not any(k.startswith("portfolio") for k in keys)


ROTATE = """
    import numpy as np
    from rustybt_api import Algorithm

    class Rotate(Algorithm):
        every = 17

        def initialize(self, ctx):
            self.ticks, self.held, self.previous = 0, None, None

        def on_tick(self, ctx):
            self.ticks += 1
            if self.ticks % self.every:
                return
            latest = ctx.latest("close")
            if self.previous is not None:
                best = ctx.symbols[int(np.argmax(latest / self.previous))]
                if best != self.held:
                    if self.held is not None:
                        self.close(self.held)
                    self.buy(best, 7)
                    self.held = best
            self.previous = latest.copy()
"""


def test_a_book_strategy_on_the_whole_universe_without_indicators_is_the_plain_run(
    run_rustybt, write_algo, tmp_path: Path
) -> None:
    """The book closes the bars and feeds the shared cross-section; the strategy's session only
    steps the symbols it holds or has orders on. Nothing of that may show in the results."""
    algo = write_algo(ROTATE, "rotate")
    portfolio = write_portfolio(
        tmp_path, f'[portfolio]\ncash = "100000"\n[[strategy]]\nid = "rotate"\nalgo = "{algo}"\n'
    )
    book = run_rustybt("run", "--portfolio", portfolio, "--no-progress", "-q")
    assert book.returncode == 0, book.stderr
    plain = run_rustybt("run", "--algo", algo, "--cash", "100000", "--no-progress", "-q")
    assert plain.returncode == 0, plain.stderr
    assert plain.metrics()["num_trades"] > 100
    assert_same_results(book.out / "strategies" / "rotate", plain)


LIMIT_ONCE = """
    from decimal import Decimal
    from rustybt_api import Algorithm

    class LimitOnce(Algorithm):
        side = "buy"
        quantity = 100
        offset = "0"

        def initialize(self, ctx):
            self.ticks = 0
            self.order = None

        def on_tick(self, ctx):
            self.ticks += 1
            if self.ticks == 10:
                limit = ctx.history("SYNA").decimal("close") + Decimal(self.offset)
                place = self.buy if self.side == "buy" else self.sell
                self.order = place("SYNA", self.quantity, limit=limit)
            elif self.ticks == 11:
                # What the strategy's own handle says one bar later.
                self.record("filled", self.order.filled_quantity)
"""


@pytest.mark.parametrize("offset", ["0", "0.05"])
def test_limit_orders_at_one_price_cross_only_at_an_open_at_their_limit(
    run_rustybt, write_algo, tmp_path: Path, offset: str
) -> None:
    """Same-price limit orders cross when the next bar opens at their limit (the sample's
    opens are the previous closes), and are left alone otherwise. Either way every strategy's
    fills, before costs, and its own order handle are what it gets without netting."""
    algo = write_algo(LIMIT_ONCE, "limit_once")
    netted, alone = (
        run_two_strategy_book(run_rustybt, tmp_path, algo, netting,
                              f'quantity = 100, offset = "{offset}"', f'quantity = 60, offset = "{offset}"')
        for netting in (True, False)
    )

    def by_strategy(book: RunResult) -> dict[str, list[tuple[str, Decimal, Decimal]]]:
        out: dict[str, list[tuple[str, Decimal, Decimal]]] = defaultdict(list)
        for f in rows(book.out / "fills.csv"):
            out[f["strategy"]].append((f["time"], Decimal(f["qty"]), Decimal(f["price"])))
        return out

    def merged(fills: list[tuple[str, Decimal, Decimal]]) -> dict[tuple[str, Decimal], Decimal]:
        # Quantity per (time, price): a crossed and a matched fill at one open merge.
        out: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
        for time, qty, price in fills:
            out[(time, price)] += qty
        return dict(out)

    with_netting, without = by_strategy(netted), by_strategy(alone)
    for sid in ("buyer", "seller"):
        assert merged(with_netting[sid]) == merged(without[sid]), sid
        handle = [r["value"] for r in rows(netted.out / "strategies" / sid / "records.csv")]
        assert handle == [r["value"] for r in rows(alone.out / "strategies" / sid / "records.csv")]
    section = netted.metrics()["portfolio"]["netting"]
    fees = {sid: sum(Decimal(f["fee"]) for f in rows(b.out / "fills.csv") if f["strategy"] == sid)
            for b, sid in [(netted, "buyer"), (netted, "seller")]}
    if offset == "0":
        assert section["crossings"] == 1 and section["quantity"] == "60" and section["dropped"] == 0
        # The seller crossed all of its 60 at its limit for nothing; the buyer's 40 matched.
        assert [(q, p) for _, q, p in with_netting["seller"]] == [(60, with_netting["seller"][0][2])]
        assert fees["seller"] == 0 and fees["buyer"] > 0
        handle = [Decimal(r["value"]) for r in rows(netted.out / "strategies" / "buyer" / "records.csv")]
        assert handle == [100]
    else:
        # The buyer is marketable at the open, the seller fills at its limit later: no
        # single price, nothing crossed.
        assert section["crossings"] == 0 and section["dropped"] == 1
        assert rows(netted.out / "fills.csv") == rows(alone.out / "fills.csv")
