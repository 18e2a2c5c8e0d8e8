"""`rustybt live --portfolio FILE --broker paper` (and `--algo a.py --algo b.py`): a book of
strategies hosted by a live paper session, end to end on the real binary.

Oracles: `rustybt run --portfolio` on the same file and portfolio (a replay at `--speed 0` must
write the same files byte for byte: the live book steps the backtest's own `BookStepper`), and
one uninterrupted live session (a session killed with SIGKILL and restarted must end with the
same fills, orders, per-strategy books and equity).
"""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import BIN, ROOT
from test_live_paper import (
    ENV,
    FIXTURES,
    MINUTE,
    SMA,
    START_NS,
    TRADER,
    Paced,
    feed_mark,
    generate_bars,
    iso,
    query,
    read_csv,
    write_rows,
)

RESTING = FIXTURES / "resting.py"
SAMPLE = ROOT / "examples" / "data" / "sample"
EXAMPLE_BOOK = ROOT / "examples" / "portfolio" / "portfolio.toml"
HOUR = 60 * MINUTE


# ---- helpers ---------------------------------------------------------------------------------


def combined_file(path: Path, symbols: dict[str, int], rows: int, interval: timedelta) -> Path:
    """One file with a `symbol` column: `rows` bars of each symbol (a random walk per seed)."""
    out = []
    for symbol, seed in symbols.items():
        for bar in generate_bars(rows, seed=seed, volatility=0.003, interval=interval):
            t = int(bar.timestamp.timestamp()) * 10**9
            out.append((t, bar.open, bar.high, bar.low, bar.close, bar.volume, symbol))
    out.sort(key=lambda r: (r[0], r[6]))
    return write_rows(path, out, symbol_column=True)


def sample_file(path: Path) -> Path:
    """The bundled sample data (SYNA, SYNB, SYNC: a week of minutes) as one replay file."""
    rows = []
    for symbol in ("SYNA", "SYNB", "SYNC"):
        with (SAMPLE / f"{symbol}.csv").open() as f:
            for r in csv.DictReader(f):
                rows.append((r["timestamp"], r["open"], r["high"], r["low"], r["close"], r["volume"], symbol))
    rows.sort(key=lambda r: (r[0], r[6]))
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "open", "high", "low", "close", "volume", "symbol"])
        w.writerows(rows)
    return path


def book_argv(book: list[str], data: Path, symbols: str, state: Path, out: Path, *extra: str,
              speed: str = "0", timeframe: str = "1m", broker: str = "paper") -> list[str]:
    return [str(BIN), "live", *book, "--broker", broker, "--feed", f"replay:{data}", "--symbols", symbols,
            "--timeframe", timeframe, "--speed", speed, "--state", str(state), "--out", str(out), "-q",
            *extra]


def run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)
    for marker in ("panicked", "RUST_BACKTRACE", "stack backtrace"):
        assert marker not in proc.stderr, proc.stderr
    return proc


def backtest(book: list[str], data: Path, out: Path) -> None:
    proc = run([str(BIN), "run", *book, "--data", str(data), "--out", str(out), "--no-progress", "-q"])
    assert proc.returncode == 0, proc.stderr


def trading_files(folder: Path) -> list[str]:
    """Every results file whose bytes depend on the trading only (not on timings; `reloads.csv` is
    a live session's own)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.csv") if p.name not in ("indicators.csv", "reloads.csv"))


def exact_metrics(folder: Path) -> dict[str, Any]:
    metrics = json.loads((folder / "metrics.json").read_text())
    keys = ("final_equity", "num_trades", "num_fills", "fees_paid", "max_drawdown", "total_return")
    return {k: metrics.get(k) for k in keys}


def wait_for_mark(proc: subprocess.Popen[str], state: Path, at_least: int, timeout: float = 60) -> None:
    """Until the journal's feed mark (the last checkpointed bar) reaches `at_least`."""
    deadline = time.monotonic() + timeout
    mark = 0
    while mark < at_least and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
        try:
            mark = feed_mark(state)
        except (sqlite3.Error, ValueError):
            pass  # not created yet, or busy


def write_book(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# ---- 1. a paper replay of a book trades exactly like `run --portfolio` -------------------------


FAILING_BOOK = """\
    [portfolio]
    cash = "100000"
    on_stop = "close"

    [[strategy]]
    id = "fails"
    algo = "{fails}"
    symbols = ["A"]

    [[strategy]]
    id = "trade"
    algo = "{trader}"
    symbols = ["B"]
    params = {{ every = 2, qty = 4 }}
"""


@pytest.mark.parametrize("case", ["example_book", "algo_twice", "one_fails", "example_book_api"])
def test_a_paper_replay_of_a_book_trades_exactly_like_run_portfolio(tmp_path, case):
    extra: list[str] = []
    if case == "example_book_api":
        # The control API on (nobody calls it): the book trades exactly the same.
        tokens = tmp_path / "api-tokens"
        tokens.write_text("ops:ops-token-0123456789abcdef\n")
        tokens.chmod(0o600)
        extra = ["--api", "127.0.0.1:0", "--api-token-file", str(tokens)]
        case = "example_book"
    if case == "example_book":
        # Three strategies, risk parity rebalanced weekly, account risk limits, shared SYNB.
        data, symbols, book = sample_file(tmp_path / "sample.csv"), "SYNA,SYNB,SYNC", ["--portfolio", str(EXAMPLE_BOOK)]
        ids = ["trend", "short_reversion", "pair"]
    elif case == "one_fails":
        # One strategy raises at its 40th tick: it stops alone, its position closed; the other
        # trades on.
        data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 120, timedelta(minutes=1))
        text = FAILING_BOOK.format(fails=FIXTURES / "fails_at.py", trader=TRADER)
        symbols, book = "A,B", ["--portfolio", str(write_book(tmp_path / "book.toml", text))]
        ids = ["fails", "trade"]
    else:
        data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 300, timedelta(minutes=1))
        symbols, book = "A,B", ["--algo", str(SMA), "--algo", str(TRADER)]
        ids = ["sma_cross", "trader"]
    backtest(book, data, tmp_path / "run")
    live = run(book_argv(book, data, symbols, tmp_path / "state", tmp_path / "live", *extra))
    assert live.returncode == 0, live.stderr
    assert "live book ended (end of feed)" in live.stderr
    assert ("control API on http://127.0.0.1:" in live.stderr) == bool(extra)
    run_dir, live_dir = tmp_path / "run", tmp_path / "live"
    files = trading_files(run_dir)
    assert trading_files(live_dir) == files
    assert {f"strategies/{i}/fills.csv" for i in ids} <= set(files) and "allocation.csv" in files
    for name in files:
        # An order open at the end is cancelled: "end of data" in a backtest, "the paper
        # session ended" in live (the only difference allowed).
        ours = (live_dir / name).read_bytes().replace(b"the paper session ended", b"end of data")
        assert ours == (run_dir / name).read_bytes(), name
    assert exact_metrics(live_dir) == exact_metrics(run_dir)
    for i in ids:
        assert exact_metrics(live_dir / "strategies" / i) == exact_metrics(run_dir / "strategies" / i), i
    fills = read_csv(live_dir / "fills.csv")
    assert len(fills) > 20 and {f["strategy"] for f in fills} == set(ids)
    if case == "one_fails":
        assert "failing on purpose at tick 40" in live.stderr
        metrics = [json.loads((d / "strategies" / "fails" / "metrics.json").read_text()) for d in (live_dir, run_dir)]
        assert [m["status"] for m in metrics] == ["failed", "failed"]

    # The journal: every order and fill carries its strategy; each strategy's fills are its own
    # results' fills; the run names the book's strategies.
    state = tmp_path / "state"
    assert query(state, "SELECT COUNT(*) FROM intents WHERE strategy IS NULL") == [(0,)]
    for i in ids:
        journal = query(state, "SELECT price, quantity FROM fills WHERE strategy = ? ORDER BY id", i)
        own = read_csv(live_dir / "strategies" / i / "fills.csv")
        assert journal == [(f["price"], f["qty"]) for f in own], i
    assert json.loads(query(state, "SELECT strategies FROM runs")[0][0]) == ids
    # The account's last snapshot is the sum of the strategies' (and their cash is the account's).
    snapshots = dict(query(state, "SELECT strategy, book FROM book_snapshots WHERE id IN "
                                  "(SELECT MAX(id) FROM book_snapshots GROUP BY strategy)"))
    account = json.loads(snapshots[None])
    assert account["cash"] == read_csv(live_dir / "equity.csv")[-1]["cash"]
    from decimal import Decimal
    assert sum(Decimal(json.loads(snapshots[i])["cash"]) for i in ids) == Decimal(account["cash"])


# ---- 2. a killed book restarts where it stood ----------------------------------------------------


KILL_BOOK = """\
    [portfolio]
    cash = "100000"
    allocator = "fixed"
    rebalance = "0 */5 * * *"

    [[strategy]]
    id = "rest"
    algo = "{resting}"
    symbols = ["R1"]
    weight = "0.4"

    [[strategy]]
    id = "trade"
    algo = "{trader}"
    symbols = ["R2"]
    weight = "0.6"
    params = {{ every = 3, qty = 5 }}
"""


def test_a_killed_book_restarts_to_the_uninterrupted_fills_and_equity(tmp_path):
    """A paced book (hourly bars, rebalanced every five hours: cash moves between the strategies) is
    killed with SIGKILL while `rest` has a bracket, a trailing stop and a far limit open and
    `trade` trades every third bar. The restart takes each strategy's orders, book, algorithm
    state and the book's own state (units, rebalancing, transfers) back from the last
    checkpoint and ends exactly as one uninterrupted session."""
    data = combined_file(tmp_path / "R.csv", {"R1": 31, "R2": 7}, 150, timedelta(hours=1))
    book_file = write_book(tmp_path / "book.toml", KILL_BOOK.format(resting=RESTING, trader=TRADER))
    book = ["--portfolio", str(book_file)]
    state = tmp_path / "state"
    argv = book_argv(book, data, "R1,R2", state, tmp_path / "out1", speed="36000", timeframe="1h")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    session = Paced(proc, tmp_path / "out1", state)
    threading.Thread(target=session._read_stderr, daemon=True).start()
    threading.Thread(target=session._read_stdout, daemon=True).start()
    wait_for_mark(proc, state, START_NS + 12 * HOUR)
    proc.kill()
    killed = session.finish(timeout=10)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    mark = feed_mark(state)
    assert START_NS + 12 * HOUR <= mark < START_NS + 24 * HOUR
    assert query(state, "SELECT COUNT(*) FROM intents WHERE state != 'final' AND strategy = 'rest'") == [(5,)]
    assert query(state, "SELECT COUNT(*) FROM book_states") != [(0,)]

    two = run(book_argv(book, data, "R1,R2", state, tmp_path / "out2", timeframe="1h"))
    assert two.returncode == 0, two.stderr
    assert "strategy `rest`: 5 paper orders open at the last checkpoint are open again" in two.stderr
    assert "strategy `trade`: restored the paper book from" in two.stderr
    assert "strategy `rest`: restored the algorithm's state from" in two.stderr and "1 order handle re-bound" in two.stderr
    assert f"resuming after {iso(mark)}" in two.stderr
    # The account's snapshot (the strategies' books summed) agrees with the journal's fills.
    assert "differs from the journal's fills" not in two.stderr
    whole_state = tmp_path / "state_whole"
    whole = run(book_argv(book, data, "R1,R2", whole_state, tmp_path / "out_whole", timeframe="1h"))
    assert whole.returncode == 0, whole.stderr

    fills_sql = "SELECT strategy, side, quantity, price, fee, time FROM fills ORDER BY id"
    fills = query(state, fills_sql)
    assert fills == query(whole_state, fills_sql)
    assert {f[0] for f in fills} == {"rest", "trade"} and len(fills) > 20
    orders_sql = ("SELECT strategy, order_type, side, quantity, status, reported_filled, reason "
                  "FROM intents ORDER BY rowid")
    assert query(state, orders_sql) == query(whole_state, orders_sql)
    books_sql = ("SELECT strategy, book FROM book_snapshots WHERE id IN "
                 "(SELECT MAX(id) FROM book_snapshots GROUP BY strategy) ORDER BY strategy")
    assert query(state, books_sql) == query(whole_state, books_sql)
    # Cash moved between the strategies at the rebalances, before and after the kill.
    transfers = [r for r in read_csv(tmp_path / "out_whole" / "allocation.csv")[2:] if r["transfer"] != "0"]
    assert transfers and any(ns_of_row(r) <= mark for r in transfers) and any(ns_of_row(r) > mark for r in transfers)
    for name in ("equity.csv", "strategies/rest/equity.csv", "strategies/trade/equity.csv"):
        assert read_csv(tmp_path / "out2" / name)[-1] == read_csv(tmp_path / "out_whole" / name)[-1], name
    assert query(state, "SELECT COUNT(*) FROM paper_orders") == [(0,)]
    assert query(state, "SELECT id, stop_reason FROM runs") == [
        (1, "ended without a clean stop (killed or crashed)"), (2, "end of feed")]


def ns_of_row(row: dict[str, str]) -> int:
    from test_live_paper import ns_of
    return ns_of(row["time"])


def test_a_book_stopped_by_sigterm_restarts_with_its_stopped_strategy_still_stopped(tmp_path):
    """SIGTERM ends a paced book cleanly (results written, the run ended in the journal); the
    restart continues after the last bar, and a strategy that failed before stays stopped."""
    data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 120, timedelta(minutes=1))
    text = FAILING_BOOK.format(fails=FIXTURES / "fails_at.py", trader=TRADER)
    book = ["--portfolio", str(write_book(tmp_path / "book.toml", text))]
    state = tmp_path / "state"
    argv = book_argv(book, data, "A,B", state, tmp_path / "out1", speed="600")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    wait_for_mark(proc, state, START_NS + 60 * MINUTE)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "live book ended (stopped by signal)" in err
    assert (tmp_path / "out1" / "strategies" / "trade" / "metrics.json").exists()
    mark = feed_mark(state)
    assert START_NS + 60 * MINUTE <= mark < START_NS + 120 * MINUTE
    fails_orders = query(state, "SELECT COUNT(*) FROM intents WHERE strategy = 'fails'")

    two = run(book_argv(book, data, "A,B", state, tmp_path / "out2"))
    assert two.returncode == 0, two.stderr
    assert "strategy `fails` stopped at" in two.stderr and "stays stopped" in two.stderr
    assert f"resuming after {iso(mark)}" in two.stderr
    # The stopped strategy places nothing more; the other trades on to the end of the file.
    assert query(state, "SELECT COUNT(*) FROM intents WHERE strategy = 'fails'") == fails_orders
    assert query(state, "SELECT COUNT(*) FROM intents WHERE strategy = 'trade' AND run_id = 2") != [(0,)]
    assert not (tmp_path / "out2" / "strategies" / "fails" / "fills.csv").read_text().count("\n") > 1
    assert query(state, "SELECT id, stop_reason FROM runs") == [(1, "stopped by signal"), (2, "end of feed")]


def test_the_halt_file_halts_every_strategy_of_a_book(tmp_path, two_symbols):
    state = tmp_path / "state"
    state.mkdir()
    (state / "HALT").write_text("maintenance\n")
    book = ["--algo", str(SMA), "--algo", str(TRADER)]
    proc = run(book_argv(book, two_symbols, "A,B", state, tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "HALTED: " in proc.stderr and "maintenance" in proc.stderr
    # Every strategy's orders are refused with the reason; nothing reaches the journal.
    last = {(o["strategy"], o["order_id"]): o for o in read_csv(tmp_path / "out" / "orders.csv")}
    assert {s for s, _ in last} >= {"trader"}
    assert last and all(o["status"] == "rejected" and "maintenance" in o["reason"] for o in last.values())
    assert query(state, "SELECT COUNT(*) FROM intents") == [(0,)]
    assert query(state, "SELECT COUNT(*) FROM fills") == [(0,)]


# ---- 3. what a live book refuses ---------------------------------------------------------------


@pytest.fixture
def two_symbols(tmp_path) -> Path:
    return combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 40, timedelta(minutes=1))


def test_a_book_on_an_exchange_broker_refuses_a_replay_feed(tmp_path, two_symbols):
    """An exchange book trades on the exchange's candles (tests/python/test_live_book_exchange.py
    runs it); a replay file is refused before anything is created."""
    argv = book_argv(["--algo", str(SMA), "--algo", str(TRADER)], two_symbols, "A,B", tmp_path / "state",
                     tmp_path / "out", broker="ccxt:binance")
    proc = run(argv)
    assert proc.returncode == 2, proc.stderr
    assert "`--broker ccxt:binance` cannot trade on a replay file" in proc.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("flag", [["--param", "fast=3"], ["--class", "SmaCross"]])
def test_single_algorithm_flags_are_refused_for_a_book(tmp_path, two_symbols, flag):
    argv = book_argv(["--algo", str(SMA), "--algo", str(TRADER)], two_symbols, "A,B", tmp_path / "state",
                     tmp_path / "out", *flag)
    proc = run(argv)
    assert proc.returncode == 2, proc.stderr
    assert f"`{flag[0]}` is not available for a live book" in proc.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("case", ["missing_algo", "bad_toml", "unknown_symbol"])
def test_a_bad_portfolio_file_exits_2_before_touching_the_state(tmp_path, two_symbols, case):
    text = '[portfolio]\ncash = "1000"\n' + {
        "missing_algo": '[[strategy]]\nid = "x"\nalgo = "nowhere.py"\n',
        "bad_toml": '[[strategy]\nid = "x"\n',
        "unknown_symbol": f'[[strategy]]\nid = "x"\nalgo = "{SMA}"\nsymbols = ["ZZZ"]\n',
    }[case]
    book = write_book(tmp_path / "book.toml", text)
    proc = run(book_argv(["--portfolio", str(book)], two_symbols, "A,B", tmp_path / "state", tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr
    if case == "missing_algo":
        assert "nowhere.py" in proc.stderr
    if case == "unknown_symbol":
        assert "`ZZZ` is not in --symbols" in proc.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("first", ["algorithm", "book"])
def test_a_state_folder_is_reopened_only_by_its_own_kind(tmp_path, two_symbols, first):
    state = tmp_path / "state"
    single = [str(BIN), "live", "--algo", str(TRADER), "--broker", "paper", "--feed", f"replay:{two_symbols}",
              "--symbols", "A", "--timeframe", "1m", "--speed", "0", "--state", str(state), "-q"]
    book = book_argv(["--algo", str(SMA), "--algo", str(TRADER)], two_symbols, "A,B", state, tmp_path / "b")
    one, other = (single + ["--out", str(tmp_path / "a")], book) if first == "algorithm" else (
        book, single + ["--out", str(tmp_path / "a")])
    proc = run(one)
    assert proc.returncode == 0, proc.stderr
    runs = query(state, "SELECT * FROM runs")
    refused = run(other)
    assert refused.returncode == 2, refused.stderr
    made_by = "one algorithm" if first == "algorithm" else "a book of strategies sma_cross, trader"
    hosts = "a book of strategies sma_cross, trader" if first == "algorithm" else "one algorithm"
    assert f"was made by a session of {made_by} (run 1); this session hosts {hosts}" in refused.stderr
    assert "own --state folder" in refused.stderr
    assert query(state, "SELECT * FROM runs") == runs  # nothing written
    # The same kind continues.
    again = run(one)
    assert again.returncode == 0, again.stderr


# ---- 4. a book on an exchange's live candles (paper) -------------------------------------------


def test_a_paper_book_trades_on_an_exchange_feed(tmp_path):
    """Two strategies on the candles of a local Binance stand-in (one symbol each), paper
    fills: each trades in its own sub-ledger, its orders and fills journaled with its id."""
    import sys
    start = int(time.time() * 1000) // 1000 * 1000 + 2000
    path = {m: [f"{base + 3 * i}.10" for i in range(30)] for m, base in (("BTCUSDT", 64000), ("ETHUSDT", 3000))}
    script = {
        "markets": [{"symbol": m, "base": m[:3], "quote": "USDT", "tick_size": "0.01", "step_size": "0.00001",
                     "min_notional": "5"} for m in path],
        "balances": {"USDT": "10000"},
        "prices": {m: p[0] for m, p in path.items()},
        "clock": {"start_ms": start, "interval": "1s", "wall_ms_per_bar": 1000, "path": path},
    }
    (tmp_path / "script.json").write_text(json.dumps(script))
    fake = subprocess.Popen([sys.executable, "-m", "tests.support.fake_binance", "--port", "0", "--script",
                             str(tmp_path / "script.json")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        line = fake.stdout.readline()
        assert line.startswith("LISTENING "), line
        book_file = write_book(tmp_path / "book.toml", f"""\
            [portfolio]
            cash = "200000"

            [[strategy]]
            id = "btc"
            algo = "{TRADER}"
            symbols = ["BTC/USDT"]
            params = {{ every = 2, qty = 1 }}

            [[strategy]]
            id = "eth"
            algo = "{TRADER}"
            symbols = ["ETH/USDT"]
            params = {{ every = 2, qty = 2 }}
            """)
        (tmp_path / "live.toml").write_text('[live]\nstatus_line = false\n[exchange]\nrate_limit = "1ms"\n')
        argv = [str(BIN), "live", "--portfolio", str(book_file), "--broker", "paper", "--feed", "ccxt:binance",
                "--exchange-url", line.split()[1], "--feed-mode", "poll", "--symbols", "BTC/USDT,ETH/USDT",
                "--timeframe", "1s", "--max-bars", "12", "--state", str(tmp_path / "state"),
                "--out", str(tmp_path / "out"), "--config", str(tmp_path / "live.toml"), "-q"]
        proc = run(argv, timeout=120)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert "live book ended (--max-bars reached); 12 bars" in proc.stderr
    state, out = tmp_path / "state", tmp_path / "out"
    by_strategy = dict(query(state, "SELECT strategy, COUNT(*) FROM fills GROUP BY strategy"))
    assert set(by_strategy) == {"btc", "eth"} and all(n >= 2 for n in by_strategy.values()), by_strategy
    assert query(state, "SELECT DISTINCT symbol FROM fills WHERE strategy = 'btc'") == [("BTC/USDT",)]
    assert query(state, "SELECT DISTINCT symbol FROM fills WHERE strategy = 'eth'") == [("ETH/USDT",)]
    for sid in ("btc", "eth"):
        assert len(read_csv(out / "strategies" / sid / "fills.csv")) == by_strategy[sid]
    assert {f["strategy"] for f in read_csv(out / "fills.csv")} == {"btc", "eth"}
