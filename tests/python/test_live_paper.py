"""`rustybt live --broker paper --feed replay:FILE` end to end, on the real release binary.

A paper session on a replay file must trade exactly like `rustybt run` on the same file, and
journal every order, fill and breaker trip (SQLite `journal.sqlite` and `audit.jsonl` in the
--state folder) so that a restart continues where the last one stopped.

Replays run at `--speed 0` except where pacing is the point (breakers, signals, restarts).
Algorithms: tests/fixtures/live/ (trader.py, probe.py, zero_copy.py) and a few inline ones.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import BIN, ROOT
from rustybt_api.testing import generate_bars, write_csv

FIXTURES = ROOT / "tests" / "fixtures" / "live"
TRADER = FIXTURES / "trader.py"
RESTING = FIXTURES / "resting.py"
PROBE = FIXTURES / "probe.py"
ZERO_COPY = FIXTURES / "zero_copy.py"
SMA = ROOT / "algorithms" / "sma_cross.py"
ENV = {**os.environ, "NO_COLOR": "1", "RUSTYBT_HOME": str(ROOT)}
MINUTE = 60 * 10**9
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
START_NS = int(START.timestamp()) * 10**9


# ---- helpers ---------------------------------------------------------------------------------


def iso(ns: int) -> str:
    """Nanoseconds → the results' and messages' time format (whole seconds)."""
    assert ns % 10**9 == 0, ns
    return datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ns_of(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()) * 10**9


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[tuple], symbol_column: bool = False) -> Path:
    """rows: (open time ns, open, high, low, close, volume[, symbol]) with prices as text."""
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "open", "high", "low", "close", "volume"] + (["symbol"] if symbol_column else []))
        for row in rows:
            w.writerow([iso(row[0]), *row[1:]])
    return path


def generated(path: Path, rows: int, seed: int, first: int = 0, volatility: float = 0.003,
              interval: timedelta = timedelta(minutes=1)) -> Path:
    """Rows [first, first + rows) of one deterministic random walk (a file can continue another)."""
    bars = list(generate_bars(first + rows, seed=seed, volatility=volatility, interval=interval))[first:]
    return write_csv(path, bars)


def file_bars(path: Path) -> list[dict[str, Any]]:
    """The file's bars with open/close times in ns (1m bars unless told)."""
    return [dict(row, open_ns=ns_of(row["timestamp"])) for row in read_csv(path)]


def orders_by_id(rows: list[dict[str, str]]) -> dict[int, list[dict[str, str]]]:
    out: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        out.setdefault(int(row["order_id"]), []).append(row)
    return out


def query(state: Path, sql: str, *params: Any) -> list[tuple]:
    con = sqlite3.connect(state / "journal.sqlite")
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def last_algo_state(state: Path) -> dict[str, Any]:
    [(fmt, data)] = query(state, "SELECT format, data FROM algo_states ORDER BY id DESC LIMIT 1")
    assert fmt == "pickle"
    return pickle.loads(data)


def feed_mark(state: Path) -> int:
    [(mark,)] = query(state, "SELECT time FROM breaker_marks WHERE name = 'feed_last_close'")
    return mark


def audit(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines() if line]


def log_texts(out: Path, prefix: str = "") -> list[str]:
    """The algorithm's log lines (log.txt) without time, level and class: `<text>`."""
    texts = [line.split(": ", 1)[1] for line in (out / "log.txt").read_text().splitlines() if line]
    return [t for t in texts if t.startswith(prefix)]


def counts(out: Path) -> list[int]:
    return [int(t.split()[1]) for t in log_texts(out, "count ")]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    out: Path
    state: Path

    def orders(self) -> list[dict[str, str]]:
        return read_csv(self.out / "orders.csv")

    def fills(self) -> list[dict[str, str]]:
        return read_csv(self.out / "fills.csv")

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.out / "metrics.json").read_text())

    def clean(self) -> None:
        for marker in ("panicked", "RUST_BACKTRACE", "stack backtrace"):
            assert marker not in self.stderr, self.stderr


def live_argv(algo: Path, data: Path | None, symbols: str, state: Path, out: Path, *extra: str | Path,
              speed: str = "0", timeframe: str = "1m", quiet: bool = True) -> list[str]:
    argv = [str(BIN), "live", "--algo", str(algo), "--broker", "paper", "--symbols", symbols,
            "--timeframe", timeframe, "--speed", speed, "--state", str(state), "--out", str(out)]
    if data is not None:
        argv += ["--feed", f"replay:{data}"]
    if quiet:
        argv.append("-q")
    return argv + [str(x) for x in extra]


def run_live(*args: Any, cwd: Path | None = None, timeout: float = 60, **kwargs: Any) -> Result:
    argv = live_argv(*args, **kwargs)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd or ROOT)
    return Result(proc.returncode, proc.stdout, proc.stderr, Path(args[4]), Path(args[3]))


def run_backtest(algo: Path, data: Path, out: Path, *extra: str | Path) -> Result:
    argv = [str(BIN), "run", "--algo", str(algo), "--data", str(data), "--out", str(out),
            "--no-progress", "-q", *map(str, extra)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=ENV, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr, out, out)


@dataclass
class Paced:
    """A live session in the background; its stderr lines are collected as they come."""

    proc: subprocess.Popen
    out: Path
    state: Path
    lines: list[str] = field(default_factory=list)
    stdout: str = ""

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> Paced:
        argv = live_argv(*args, **kwargs)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
        session = cls(proc, Path(args[4]), Path(args[3]))
        threading.Thread(target=session._read_stderr, daemon=True).start()
        threading.Thread(target=session._read_stdout, daemon=True).start()
        return session

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the reader take the last lines
                if any(needle in line for line in list(self.lines)):
                    return
                break
            time.sleep(0.005)
        self.proc.kill()
        raise AssertionError(f"never saw {needle!r}; stderr:\n{self.stderr[-3000:]}")

    def finish(self, timeout: float = 60) -> Result:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        time.sleep(0.05)
        return Result(rc, self.stdout, self.stderr, self.out, self.state)


def live_toml(path: Path, text: str) -> Path:
    path.write_text("[live]\nstatus_line = false\n" + textwrap.dedent(text))
    return path


# ---- 1. parity with `rustybt run` ------------------------------------------------------------


def two_symbol_file(path: Path) -> Path:
    """A and B, 150 one-minute bars each, one file with a `symbol` column; B lacks every 7th
    bar, so some bar times close A alone."""
    rows = []
    for symbol, seed in (("A", 1), ("B", 2)):
        for i, bar in enumerate(generate_bars(150, seed=seed, volatility=0.003)):
            if symbol == "B" and i % 7 == 6:
                continue
            t = int(bar.timestamp.timestamp()) * 10**9
            rows.append((t, bar.open, bar.high, bar.low, bar.close, bar.volume, symbol))
    return write_rows(path, rows, symbol_column=True)


@pytest.mark.parametrize("case", ["one_symbol", "two_symbols"])
def test_paper_session_trades_exactly_like_the_backtest(tmp_path, case):
    if case == "one_symbol":
        data, symbols = generated(tmp_path / "P.csv", 200, seed=3), "P"
    else:
        data, symbols = two_symbol_file(tmp_path / "AB.csv"), "A,B"
    params = ["--param", "fast=3", "--param", "slow=8"]
    backtest = run_backtest(SMA, data, tmp_path / "run", *params)
    live = run_live(SMA, data, symbols, tmp_path / "state", tmp_path / "live", *params)
    assert live.returncode == 0, live.stderr
    assert "live session ended (end of feed)" in live.stderr
    fills = live.fills()
    assert len(fills) >= 25, "the parameters should make it trade often"
    if case == "two_symbols":
        assert {f["symbol"] for f in fills} == {"A", "B"}
    # Same decisions, same prices, same order events: byte for byte. (These files end with no
    # open order; one open at the end would be cancelled with "the paper session ended" in live
    # and "end of data" in a backtest.)
    for name in ("orders.csv", "fills.csv", "trades.csv", "equity.csv"):
        assert (live.out / name).read_bytes() == (backtest.out / name).read_bytes(), name
    a, b = live.metrics(), backtest.metrics()
    for key in ("final_equity", "num_trades", "num_fills", "fees_paid", "max_drawdown"):
        assert a[key] == b[key], key
    assert a["run"]["symbols"] == b["run"]["symbols"] == symbols.split(",")
    assert a["run"]["bars_processed"] == b["run"]["bars_processed"]


# ---- 2. the journal and the audit log hold what the results show -----------------------------


def test_journal_and_audit_log_match_the_results(tmp_path):
    data = generated(tmp_path / "J.csv", 120, seed=4)
    run_config = tmp_path / "run.toml"
    run_config.write_text('[commission]\nrate = "0.001"\nminimum = "0.5"\n')
    state = tmp_path / "state"
    live = run_live(TRADER, data, "J", state, tmp_path / "out", "--param", "every=3", "--param", "qty=7",
                    "--run-config", run_config)
    assert live.returncode == 0, live.stderr
    fills, orders = live.fills(), orders_by_id(live.orders())
    assert len(orders) == 40 and len(fills) == 39  # the order of the last tick never fills

    # Every fill is a journal row with the same exact decimal texts.
    journal_fills = query(state, "SELECT f.client_order_id, f.trade_id, f.symbol, f.side, f.quantity, f.price, "
                                 "f.fee, f.time, i.exchange_id FROM fills f JOIN intents i USING (client_order_id) "
                                 "ORDER BY f.id")
    assert len(journal_fills) == len(fills)
    for row, (cid, trade_id, symbol, side, qty, price, fee, t, exchange_id) in zip(fills, journal_fills):
        assert (symbol, side, qty, price, fee) == (row["symbol"], row["side"], row["qty"], row["price"], row["fee"])
        assert t == ns_of(row["time"])
        assert exchange_id == f"paper-1-{row['order_id']}" and trade_id == f"{row['order_id']}-1"
        assert Decimal(fee) >= Decimal("0.5")

    # Every order was journaled before it was sent, and is final now.
    intents = query(state, "SELECT client_order_id, symbol, side, quantity, order_type, state, status, exchange_id, "
                           "reported_filled, reason FROM intents ORDER BY created_at, client_order_id")
    assert [i[0] for i in intents] == [f"rbt-r1-{n}" for n in range(1, 41)]
    for cid, symbol, side, qty, order_type, state_, status, exchange_id, filled, reason in intents:
        order_id = int(exchange_id.rsplit("-", 1)[1])
        last = orders[order_id][-1]
        assert (symbol, side, qty, order_type) == ("J", last["side"], "7", "market")
        assert state_ == "final"
        assert (status, filled) == (last["status"], last["filled_quantity"])
    assert intents[-1][6:] == ("cancelled", "paper-1-40", "0", "the paper session ended")

    [(run_id, broker, symbols, stopped_at, stop_reason)] = query(
        state, "SELECT id, broker, symbols, stopped_at, stop_reason FROM runs")
    assert (run_id, broker, json.loads(symbols), stop_reason) == (1, "paper", ["J"], "end of feed")
    assert stopped_at is not None
    # The last book snapshot is the results' final cash; the feed mark is the last bar's close.
    [(book,)] = query(state, "SELECT book FROM book_snapshots ORDER BY id DESC LIMIT 1")
    equity = read_csv(live.out / "equity.csv")
    assert json.loads(book)["cash"] == equity[-1]["cash"]
    assert feed_mark(state) == file_bars(data)[-1]["open_ns"] + MINUTE

    # audit.jsonl: one intent and one ack per order, one fill per fill, the log lines in order.
    events = audit(state)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_kind.setdefault(e["kind"], []).append(e["fields"])
        assert e["time"].endswith("Z") and e["time"].startswith("20")
    assert set(by_kind) == {"start", "intent", "ack", "fill", "order_status", "log", "stop"}
    assert events[0]["kind"] == "start" and events[0]["fields"]["run"] == 1
    # Every journaled status change is in the audit log too: the last one of each order is its final state.
    last_status = {e["client_order_id"]: (e["status"], e["filled_quantity"]) for e in by_kind["order_status"]}
    assert last_status == {i[0]: (i[6], i[8]) for i in intents}
    assert [e["client_order_id"] for e in by_kind["intent"]] == [i[0] for i in intents]
    assert [(e["client_order_id"], e["exchange_id"]) for e in by_kind["ack"]] == [(i[0], i[7]) for i in intents]
    assert by_kind["intent"][0] == {"client_order_id": "rbt-r1-1", "symbol": "J", "side": "buy", "quantity": "7",
                                    "order_type": "market", "limit_price": None, "stop_price": None,
                                    "time_in_force": "gtc"}
    assert [(e["client_order_id"], e["quantity"], e["price"], e["fee"], e["time"]) for e in by_kind["fill"]] == \
        [(f[0], f[4], f[5], f[6], f[7]) for f in journal_fills]
    algorithm_lines = [e["message"] for e in by_kind["log"] if e["level"] == "algorithm"]
    assert algorithm_lines == (live.out / "log.txt").read_text().splitlines()
    assert len(algorithm_lines) == 120 and algorithm_lines[0].endswith("Trader: count 1 close " + read_csv(data)[0]["close"])
    assert events[-1] == {**events[-1], "kind": "stop", "fields": {"run": 1, "reason": "end of feed"}}


# ---- 3. no lookahead -------------------------------------------------------------------------


def stepped_file(path: Path, rows: int) -> Path:
    """Bars whose open differs from the previous close, so a fill's price says which bar it used."""
    out = []
    for i in range(rows):
        o, c = Decimal(100 + i), Decimal(100 + i) + Decimal("0.37")
        out.append((START_NS + i * MINUTE, f"{o:.2f}", f"{c + 1:.2f}", f"{o - 1:.2f}", f"{c:.2f}", 10 + i))
    return write_rows(path, out)


def test_the_algorithm_sees_only_closed_bars_and_fills_at_the_next_open(tmp_path):
    data = stepped_file(tmp_path / "S.csv", 40)
    bars = file_bars(data)
    live = run_live(PROBE, data, "S", tmp_path / "state", tmp_path / "out")
    assert live.returncode == 0, live.stderr
    probes = [json.loads(t[len("PROBE "):]) for t in log_texts(live.out, "PROBE ")]
    assert [p["n"] for p in probes] == list(range(1, 41))
    for p in probes:
        n = p["n"]
        last = bars[n - 1]
        assert p["time_ns"] == last["open_ns"] + MINUTE  # the tick is the close of bar n-1
        assert p["len"] == p["latest_bars"] == n
        assert p["last_open_ns"] == last["open_ns"]
        assert p["last_close"] == last["close"]
        assert p["closes"] == [float(b["close"]) for b in bars[:n]]
    # Placed at tick 10 (bar 9 closed), filled at bar 10's open; same for the sell at tick 20.
    fills_seen = [json.loads(t[len("FILL "):]) for t in log_texts(live.out, "FILL ")]
    assert fills_seen == [
        {"side": "buy", "price": bars[10]["open"], "time_ns": bars[10]["open_ns"], "n": 10},
        {"side": "sell", "price": bars[20]["open"], "time_ns": bars[20]["open_ns"], "n": 20},
    ]
    assert [(f["side"], f["qty"], f["price"], f["time"]) for f in live.fills()] == [
        ("buy", "3", "110.00", bars[10]["timestamp"]),
        ("sell", "3", "120.00", bars[20]["timestamp"]),
    ]
    # And all of it is what a backtest of the file sees.
    backtest = run_backtest(PROBE, data, tmp_path / "run")
    assert (live.out / "log.txt").read_text() == (backtest.out / "log.txt").read_text()


# ---- 4. zero-copy history while the market grows ---------------------------------------------


def test_history_views_stay_valid_and_read_only_while_the_market_grows(tmp_path):
    data = generated(tmp_path / "Z.csv", 160, seed=6)
    bars = file_bars(data)
    live = run_live(ZERO_COPY, data, "Z", tmp_path / "state", tmp_path / "out")
    assert live.returncode == 0, live.stderr
    [report] = [json.loads(t[len("REPORT "):]) for t in log_texts(live.out, "REPORT ")]
    # Kept at ticks 3, 20, 40, 100 — before and after the columns moved to bigger chunks
    # (16, 32, 64, 128 cells) — and checked against copies at every later tick.
    assert report["problems"] == []
    assert report["now_len"] == 150
    assert report["errors"] == ["assignment destination is read-only",
                                "cannot set WRITEABLE flag to True of this array"]
    for k in (3, 20, 40, 100):
        kept = report["kept"][str(k)]
        assert kept["len"] == k
        assert kept["writeable"] == [False, False]
        assert kept["owns"] is False  # a view of engine memory, not a copy
        assert kept["close"] == [float(b["close"]) for b in bars[:k]]
        assert kept["time_ns"] == [b["open_ns"] for b in bars[:k]]


# ---- 5. circuit breakers ---------------------------------------------------------------------


def test_halt_file_halts_persists_across_restarts_and_resets(tmp_path):
    first = generated(tmp_path / "H1.csv", 120, seed=5)
    second = generated(tmp_path / "H2.csv", 30, seed=5, first=120)
    third = generated(tmp_path / "H3.csv", 30, seed=5, first=150)
    state = tmp_path / "state"
    halt = state / "HALT"

    # A paced session (20 ms a bar): the halt file appears while it runs.
    session = Paced.start(TRADER, first, "H", state, tmp_path / "out1", speed="3000", quiet=False)
    session.wait_for("Trader: count 30 ")
    # Written aside and renamed, as docs/live.md advises: the session may look between the
    # file's creation and its write and would then see no reason.
    (state / "HALT.tmp").write_text("maintenance window\n")
    (state / "HALT.tmp").rename(halt)
    one = session.finish()
    assert one.returncode == 0, one.stderr
    [(trip_ns, event, breaker, reason)] = query(state, "SELECT time, event, breaker, reason FROM breaker_events")
    assert (event, breaker, reason) == ("trip", "halt_file", f"halt file {halt} exists: maintenance window")
    trip = f"halt_file breaker tripped at {iso(trip_ns)}: halt file {halt} exists: maintenance window"
    assert f"HALTED: {trip}; new orders are refused until the breaker is reset" in one.stderr
    refused = f"trading halted: {trip}"
    orders = orders_by_id(one.orders())
    assert len(orders) == 120
    before = {i: rows for i, rows in orders.items() if ns_of(rows[0]["time"]) <= trip_ns}
    after = {i: rows for i, rows in orders.items() if ns_of(rows[0]["time"]) > trip_ns}
    assert len(before) >= 30 and len(after) >= 10, "the halt file should land mid-session"
    assert all(rows[-1]["status"] == "filled" for rows in before.values())
    assert all([(r["status"], r["reason"]) for r in rows] == [("new", ""), ("rejected", refused)]
               for rows in after.values())
    assert len(one.fills()) == len(before)
    assert query(state, "SELECT COUNT(*), MIN(state), MAX(state) FROM intents") == [(len(before), "final", "final")]
    assert [e["fields"]["breaker"] for e in audit(state) if e["kind"] == "breaker"] == ["halt_file"]
    assert query(state, "SELECT stop_reason FROM runs") == [("end of feed",)]

    # Restarted with the halt file still there: halted since the earlier session.
    two = run_live(TRADER, second, "H", state, tmp_path / "out2")
    assert two.returncode == 0, two.stderr
    assert f"HALTED since an earlier session: {trip}" in two.stderr
    assert [(r["status"], r["reason"]) for r in two.orders()] == [("new", ""), ("rejected", refused)] * 30
    assert two.fills() == []
    assert query(state, "SELECT COUNT(*) FROM intents") == [(len(before),)]
    assert query(state, "SELECT COUNT(*) FROM breaker_events") == [(1,)]

    # --reset-breaker is refused while the file exists...
    refused_reset = run_live(TRADER, third, "H", state, tmp_path / "out3", "--reset-breaker")
    assert refused_reset.returncode == 2
    assert f"cannot reset: the halt file {halt} still exists; remove it first" in refused_reset.stderr
    refused_reset.clean()

    # ... and trading resumes once it is removed.
    halt.unlink()
    three = run_live(TRADER, third, "H", state, tmp_path / "out3", "--reset-breaker")
    assert three.returncode == 0, three.stderr
    assert f"breaker reset: {trip}" in three.stderr
    assert "HALTED" not in three.stderr
    statuses = [rows[-1]["status"] for rows in orders_by_id(three.orders()).values()]
    assert statuses == ["filled"] * 29 + ["cancelled"]
    assert len(three.fills()) == 29
    assert query(state, "SELECT event, breaker, reason FROM breaker_events ORDER BY id")[1:] == [
        ("reset", None, "reset by rustybt live --reset-breaker")]
    [(last_run,)] = query(state, "SELECT MAX(id) FROM runs")
    assert query(state, "SELECT COUNT(*), MIN(state), MAX(state) FROM intents WHERE run_id = ?", last_run) == [
        (30, "final", "final")]


def test_a_halt_file_there_at_the_start_refuses_the_first_order_too(tmp_path):
    """The halt file is looked at before the first bar: a session started with it places
    nothing (the first bar's order once went out before the first look)."""
    data = generated(tmp_path / "S.csv", 10, seed=5)
    state = tmp_path / "state"
    state.mkdir()
    (state / "HALT").write_text("maintenance\n")
    one = run_live(TRADER, data, "S", state, tmp_path / "out")
    assert one.returncode == 0, one.stderr
    assert "HALTED: halt_file breaker tripped" in one.stderr
    statuses = [rows[-1]["status"] for rows in orders_by_id(one.orders()).values()]
    assert statuses == ["rejected"] * 10
    assert one.fills() == [] and query(state, "SELECT COUNT(*) FROM intents") == [(0,)]


def ten_second_file(path: Path, rows: int = 30) -> Path:
    return generated(path, rows, seed=8, interval=timedelta(seconds=10))


@pytest.fixture(scope="module")
def order_rate_sessions(tmp_path_factory) -> dict[int, Result]:
    """One order per 10 s bar under max_orders_per_minute 6 (never more than 5 in a rolling
    minute: no trip) and 5 (the 6th order, at 60 s, trips)."""
    tmp = tmp_path_factory.mktemp("order_rate")
    data = ten_second_file(tmp / "Q.csv")
    sessions = {}
    for limit in (6, 5):
        config = live_toml(tmp / f"live{limit}.toml", f"[breakers]\nmax_orders_per_minute = {limit}\n")
        sessions[limit] = run_live(TRADER, data, "Q", tmp / f"state{limit}", tmp / f"out{limit}",
                                   "--config", config, timeframe="10s")
    return sessions


def test_order_rate_breaker_trips_at_the_order_over_the_limit(order_rate_sessions):
    under = order_rate_sessions[6]
    assert under.returncode == 0, under.stderr
    assert [rows[-1]["status"] for rows in orders_by_id(under.orders()).values()] == ["filled"] * 29 + ["cancelled"]
    assert query(under.state, "SELECT COUNT(*) FROM breaker_events") == [(0,)]

    over = order_rate_sessions[5]
    assert over.returncode == 0, over.stderr
    trip_ns = START_NS + 60 * 10**9  # close of the 6th bar: the 6th order within (0 s, 60 s]
    trip = (f"order_rate breaker tripped at {iso(trip_ns)}: order rate: this order would be number 6 "
            "within a minute, the limit is 5")
    orders = orders_by_id(over.orders())
    assert len(orders) == 30
    assert [orders[i][-1]["status"] for i in range(1, 6)] == ["filled"] * 5
    # The order that would exceed the rate is refused before it is sent, like later ones.
    assert (orders[6][-1]["status"], orders[6][-1]["reason"]) == ("rejected", f"trading halted: {trip}")
    assert orders[6][0]["time"] == iso(trip_ns)
    for i in range(7, 31):
        assert [(r["status"], r["reason"]) for r in orders[i]] == [("new", ""), ("rejected", f"trading halted: {trip}")]
    assert len(over.fills()) == 5
    assert f"HALTED: {trip}; new orders are refused until the breaker is reset" in over.stderr
    assert query(over.state, "SELECT client_order_id FROM intents ORDER BY created_at") == \
        [(f"rbt-r1-{n}",) for n in range(1, 6)]
    [(t, breaker, detail)] = query(over.state, "SELECT time, breaker, detail FROM breaker_events")
    assert (t, breaker, json.loads(detail)) == (trip_ns, "order_rate", {"orders_in_window": 6, "limit": 5,
                                                                       "window_s": 60})


DRAWDOWN_ALGO = """
from rustybt_api import Algorithm

class AllIn(Algorithm):
    def initialize(self, ctx):
        self.n = 0

    def on_tick(self, ctx):
        self.n += 1
        if self.n == 1:
            self.buy("D", 900)
        elif self.n >= 15:
            self.buy("D", 1)
"""


def test_drawdown_breaker_trips_when_equity_falls_below_the_limit(tmp_path):
    # Bar i closes at 100 - i and opens at the previous close: bought 900 at 100.00, the equity
    # after bar k is 100000 - 900 k, so a 10% drawdown is reached at bar 12 (10.8%).
    rows = [(START_NS + i * MINUTE, f"{101 - i if i else 100:.2f}", f"{101 - i if i else 100:.2f}",
             f"{100 - i:.2f}", f"{100 - i:.2f}", 1000) for i in range(30)]
    data = write_rows(tmp_path / "D.csv", rows)
    algo = tmp_path / "all_in.py"
    algo.write_text(textwrap.dedent(DRAWDOWN_ALGO))
    config = live_toml(tmp_path / "live.toml", '[breakers]\nmax_drawdown = "0.1"\n')
    state = tmp_path / "state"
    live = run_live(algo, data, "D", state, tmp_path / "out", "--config", config)
    assert live.returncode == 0, live.stderr
    trip_ns = START_NS + 13 * MINUTE  # close of bar 12
    trip = (f"drawdown breaker tripped at {iso(trip_ns)}: drawdown 0.108 from peak equity 100000 "
            "(equity 89200.00) reached the limit 0.1")
    assert f"HALTED: {trip}; new orders are refused until the breaker is reset" in live.stderr
    orders = orders_by_id(live.orders())
    assert orders[1][-1]["status"] == "filled" and orders[1][-1]["fill_price"] == "100.00"
    later = [rows for i, rows in orders.items() if i > 1]
    assert len(later) == 16  # ticks 15..30, all after the trip
    assert all([(r["status"], r["reason"]) for r in rows] == [("new", ""), ("rejected", f"trading halted: {trip}")]
               for rows in later)
    [(t, breaker, detail)] = query(state, "SELECT time, breaker, detail FROM breaker_events")
    assert (t, breaker) == (trip_ns, "drawdown")
    assert json.loads(detail) == {"peak": "100000", "equity": "89200.00", "drawdown": "10800.00", "limit": "0.1"}
    equity = {row["time"]: row["equity"] for row in read_csv(live.out / "equity.csv")}
    assert equity[iso(trip_ns)] == "89200.00"


def test_daily_loss_breaker_trips_at_the_first_bar_over_the_limit(tmp_path):
    # The drawdown test's falling file, with a daily loss limit of 5000 instead: the oracle is
    # the equity curve itself (the day's first equity, and the first bar 5000 below it).
    rows = [(START_NS + i * MINUTE, f"{101 - i if i else 100:.2f}", f"{101 - i if i else 100:.2f}",
             f"{100 - i:.2f}", f"{100 - i:.2f}", 1000) for i in range(30)]
    data = write_rows(tmp_path / "D.csv", rows)
    algo = tmp_path / "all_in.py"
    algo.write_text(textwrap.dedent(DRAWDOWN_ALGO))
    config = live_toml(tmp_path / "live.toml", '[breakers]\ndaily_loss = "5000"\n')
    state = tmp_path / "state"
    live = run_live(algo, data, "D", state, tmp_path / "out", "--config", config)
    assert live.returncode == 0, live.stderr
    curve = read_csv(live.out / "equity.csv")
    start = Decimal(curve[0]["equity"])
    first_over = next(row for row in curve if start - Decimal(row["equity"]) >= 5000)
    trip_ns = ns_of(first_over["time"])
    loss = start - Decimal(first_over["equity"])
    trip = (f"daily_loss breaker tripped at {iso(trip_ns)}: daily loss {loss} on 2024-01-01 "
            f"(from {start} to {first_over['equity']}) reached the limit 5000")
    assert f"HALTED: {trip}; new orders are refused until the breaker is reset" in live.stderr
    [(t, breaker)] = query(state, "SELECT time, breaker FROM breaker_events")
    assert (t, breaker) == (trip_ns, "daily_loss")
    orders = orders_by_id(live.orders())
    later = [rows for i, rows in orders.items() if i > 1]
    assert later and all(rows[-1]["status"] == "rejected" for rows in later)


# ---- 6. SIGINT and SIGTERM -------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_session_cleanly(tmp_path, sig):
    data = generated(tmp_path / "G.csv", 10, seed=9)
    state = tmp_path / "state"
    # Bars 2 s apart: after the first tick the session sits idle, and the signal lands there.
    session = Paced.start(TRADER, data, "G", state, tmp_path / "out", "--param", "every=0",
                          "--param", "initial_buy=5", "--param", "resting=2", speed="30", quiet=False)
    session.wait_for("Trader: count 1 ")
    time.sleep(0.7)
    session.proc.send_signal(sig)
    live = session.finish(timeout=20)
    assert live.returncode == 0, live.stderr
    assert "live session ended (stopped by signal)" in live.stderr
    live.clean()
    first = read_csv(data)[0]
    metrics = live.metrics()
    assert metrics["run"]["bars_processed"] == 1 and metrics["num_fills"] == 1
    assert [(f["side"], f["qty"], f["price"]) for f in live.fills()] == [("buy", "5", first["open"])]
    assert counts(live.out) == [1]
    orders = orders_by_id(live.orders())
    assert [(r[-1]["status"], r[-1]["reason"]) for r in orders.values()] == [
        ("filled", ""), ("cancelled", "the paper session ended")]
    assert query(state, "SELECT stop_reason FROM runs") == [("stopped by signal",)]
    assert query(state, "SELECT order_type, state, status, reason FROM intents ORDER BY client_order_id") == [
        ("market", "final", "filled", None), ("limit", "final", "cancelled", "the paper session ended")]
    assert audit(state)[-1]["fields"] == {"run": 1, "reason": "stopped by signal"}


SIGNAL_IN_CHECKPOINT = """
import os, signal, time
from rustybt_api import Algorithm

class Trader(Algorithm):
    arm = ""

    def initialize(self, ctx):
        self.count = 0

    def on_tick(self, ctx):
        self.count += 1
        self.log.info("count %d", self.count)
        # An order every tick, and the replay is paced (see the test): a paper session
        # checkpoints whenever it waits for its next bar with writes not yet committed.
        if ctx.portfolio.position(ctx.symbols[0]) == 0:
            self.buy(ctx.symbols[0], 1)
        else:
            self.sell(ctx.symbols[0], 1)

    def __getstate__(self):
        # Called by the checkpoint after each bar. Once, at count 10: {signal} to this process.
        if self.count == 10 and self.arm and os.path.exists(self.arm):
            os.remove(self.arm)
            os.kill(os.getpid(), signal.{signal})
            time.sleep(2)
        return {{"count": self.count}}
"""


def test_a_signal_during_a_checkpoint_stops_the_session(tmp_path):
    data = generated(tmp_path / "K.csv", 40, seed=10)
    algo = tmp_path / "trader.py"
    algo.write_text(textwrap.dedent(SIGNAL_IN_CHECKPOINT.format(signal="SIGINT")))
    arm = tmp_path / "arm"
    arm.touch()
    state = tmp_path / "state"
    live = run_live(algo, data, "K", state, tmp_path / "out", "--param", f"arm={arm}", speed="6000")
    assert not arm.exists()
    assert live.returncode == 0, live.stderr
    assert "could not be saved" not in live.stderr
    assert "live session ended (stopped by signal)" in live.stderr
    assert query(state, "SELECT stop_reason FROM runs") == [("stopped by signal",)]
    assert counts(live.out) == list(range(1, 11))


# ---- 7. restart after a crash ----------------------------------------------------------------


def test_restart_after_sigkill_continues_book_state_and_order_ids(tmp_path):
    data = generated(tmp_path / "R.csv", 60, seed=11)
    bars = file_bars(data)
    closes = [b["open_ns"] + MINUTE for b in bars]
    state = tmp_path / "state"
    params = ["--param", "every=4", "--param", "qty=2"]
    # Bars 300 ms apart; an order at every 4th tick (fills at the next bar). Killed in the idle
    # time after tick 11, i.e. not inside a checkpoint.
    session = Paced.start(TRADER, data, "R", state, tmp_path / "out1", *params, speed="200", quiet=False)
    session.wait_for("Trader: count 11 ")
    time.sleep(0.12)
    session.proc.kill()
    killed = session.finish(timeout=10)
    assert killed.returncode == -signal.SIGKILL
    assert not (killed.out / "metrics.json").exists()

    # What the journal holds: a checkpoint (book snapshot, feed mark, algorithm state) follows
    # every bar with order activity (the last: tick 9, the fill of tick 8's order), else at most
    # one a second (CHECKPOINT_EVERY). So the feed mark is the close of bar 9, 10 or 11, and the
    # algorithm state was saved at that same bar.
    mark = feed_mark(state)
    skipped = closes.index(mark) + 1
    assert 9 <= skipped <= 11
    assert last_algo_state(state) == {"count": skipped, "every": 4, "qty": 2}
    fills_before = query(state, "SELECT COUNT(*) FROM fills")[0][0]
    assert fills_before == 2  # tick 4's buy and tick 8's sell
    [(next_id,)] = query(state, "SELECT next FROM sequence")
    assert next_id == 3
    assert query(state, "SELECT stop_reason FROM runs") == [(None,)]  # it never ended

    # Restart at full speed on the same file: the bars it traded are skipped (those since the
    # last checkpoint are traded again), the book and the counter continue.
    two = run_live(TRADER, data, "R", state, tmp_path / "out2", *params)
    assert two.returncode == 0, two.stderr
    assert f"restored the paper book from {fills_before} journaled fills" in two.stderr
    assert "restored the algorithm's state from" in two.stderr and "(count, every, qty)" in two.stderr
    assert f"resuming after {iso(mark)}: skipped {skipped} bar times an earlier session traded" in two.stderr
    assert counts(two.out) == list(range(skipped + 1, 61))
    assert last_algo_state(state)["count"] == 60
    # The killed session's run is closed by the restart, saying how it ended.
    assert query(state, "SELECT id, stop_reason FROM runs") == [
        (1, "ended without a clean stop (killed or crashed)"), (2, "end of feed")]

    # Client order ids: one sequence over both sessions, never reused.
    ids = [cid for (cid,) in query(state, "SELECT client_order_id FROM intents ORDER BY created_at")]
    assert len(ids) == len(set(ids)) == 15
    assert ids == ["rbt-r1-1", "rbt-r1-2"] + [f"rbt-r2-{n}" for n in range(3, 16)]
    assert query(state, "SELECT run_id, COUNT(*) FROM intents GROUP BY run_id") == [(1, 2), (2, 13)]

    # Two sessions with a crash between them traded exactly like one uninterrupted backtest.
    backtest = run_backtest(TRADER, data, tmp_path / "run", *params)
    journal_fills = query(state, "SELECT time, side, quantity, price FROM fills ORDER BY id")
    assert journal_fills == [(ns_of(f["time"]), f["side"], f["qty"], f["price"]) for f in backtest.fills()]
    [(book,)] = query(state, "SELECT book FROM book_snapshots ORDER BY id DESC LIMIT 1")
    assert json.loads(book)["cash"] == read_csv(backtest.out / "equity.csv")[-1]["cash"]
    assert read_csv(two.out / "equity.csv")[-1] == read_csv(backtest.out / "equity.csv")[-1]


def test_a_kill_mid_replay_at_full_speed_restarts_to_the_uninterrupted_ledger(tmp_path):
    """A paper session groups its commits (no fsync per bar; see docs/performance.md, "Live"):
    killed with SIGKILL at an arbitrary point of a --speed 0 replay, the restart's trades and
    book equal those of one uninterrupted run. The replay is long enough (about 2 s at a
    release build's speed) that the first commit of a group, a second in, comes mid-replay."""
    bars = 250_000
    data = generated(tmp_path / "K.csv", bars, seed=21)
    params = ["--param", "every=7", "--param", "qty=3"]
    state = tmp_path / "state"
    session = Paced.start(TRADER, data, "K", state, tmp_path / "out1", *params)
    deadline = time.monotonic() + 120
    fills = 0
    while fills < 40 and time.monotonic() < deadline and session.proc.poll() is None:
        time.sleep(0.005)
        try:
            fills = query(state, "SELECT COUNT(*) FROM fills")[0][0]
        except sqlite3.Error:
            pass  # not created yet, or busy
    session.proc.kill()
    killed = session.finish(timeout=10)
    assert killed.returncode == -signal.SIGKILL, "the replay ended before it was killed"
    assert not (killed.out / "metrics.json").exists()
    mark = feed_mark(state)
    assert START_NS < mark < START_NS + bars * MINUTE

    two = run_live(TRADER, data, "K", state, tmp_path / "out2", *params, timeout=300)
    assert two.returncode == 0, two.stderr
    assert "resuming after" in two.stderr
    whole = run_live(TRADER, data, "K", tmp_path / "state_whole", tmp_path / "out_whole", *params, timeout=300)
    assert whole.returncode == 0, whole.stderr
    fills_sql = "SELECT time, quantity, price, fee FROM fills ORDER BY id"
    assert query(state, fills_sql) == query(tmp_path / "state_whole", fills_sql)
    assert len(query(state, fills_sql)) > 40
    book_sql = "SELECT book FROM book_snapshots ORDER BY id DESC LIMIT 1"
    assert json.loads(query(state, book_sql)[0][0]) == json.loads(query(tmp_path / "state_whole", book_sql)[0][0])
    assert read_csv(two.out / "equity.csv")[-1] == read_csv(whole.out / "equity.csv")[-1]


def test_a_killed_session_takes_back_its_open_paper_orders_as_they_stood(tmp_path):
    """Killed with a bracket (entry resting, exits waiting), a trailing stop part-way along and
    a far limit open, the restart takes them back from the last checkpoint as they stood: the
    trailing stop fills where it would have, the saved handle cancels the far limit, the bracket
    fills and arms its exits, all exactly as in one uninterrupted session."""
    data = generated(tmp_path / "R.csv", 150, seed=31)
    state = tmp_path / "state"
    session = Paced.start(RESTING, data, "R", state, tmp_path / "out1", speed="600")
    deadline = time.monotonic() + 60
    mark = 0
    while mark < START_NS + 12 * MINUTE and time.monotonic() < deadline and session.proc.poll() is None:
        time.sleep(0.02)
        try:
            mark = feed_mark(state)
        except (sqlite3.Error, ValueError):
            pass  # not created yet, or busy
    session.proc.kill()
    killed = session.finish(timeout=10)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    mark = feed_mark(state)
    # Killed after the orders were placed (bar 2) and before the trailing stop fills (bar 26).
    assert START_NS + 12 * MINUTE <= mark < START_NS + 24 * MINUTE
    open_sql = "SELECT COUNT(*) FROM intents WHERE state != 'final'"
    assert query(state, open_sql) == [(5,)] and query(state, "SELECT COUNT(*) FROM fills") == [(0,)]

    two = run_live(RESTING, data, "R", state, tmp_path / "out2")
    assert two.returncode == 0, two.stderr
    two.clean()
    assert "5 paper orders open at the last checkpoint are open again" in two.stderr
    assert "1 order handle re-bound" in two.stderr
    whole = run_live(RESTING, data, "R", tmp_path / "state_whole", tmp_path / "out_whole")
    assert whole.returncode == 0, whole.stderr

    fills_sql = "SELECT side, quantity, price, fee, time FROM fills ORDER BY id"
    fills = query(state, fills_sql)
    assert fills == query(tmp_path / "state_whole", fills_sql)
    assert len(fills) == 2 and all(t > mark for *_, t in fills)
    # Every order ends as in the uninterrupted session; the ones taken back keep their ids.
    orders_sql = ("SELECT client_order_id, order_type, side, quantity, status, reported_filled, reason "
                  "FROM intents ORDER BY rowid")
    assert query(state, orders_sql) == query(tmp_path / "state_whole", orders_sql)
    assert [row[0] for row in query(state, orders_sql)] == [f"rbt-r1-{n}" for n in range(1, 6)]
    # A fill of an order taken back has a trade id of the run that made it.
    assert {t for (t,) in query(state, "SELECT trade_id FROM fills")} <= {
        t for (t,) in query(state, "SELECT trade_id FROM fills WHERE trade_id LIKE 'r2-%'")}
    assert log_texts(two.out, "far ") == log_texts(whole.out, "far ") == ["far accepted cancelled True"]
    assert log_texts(two.out, "fill ") == log_texts(whole.out, "fill ")
    assert read_csv(two.out / "equity.csv")[-1] == read_csv(whole.out / "equity.csv")[-1]
    assert query(state, "SELECT COUNT(*) FROM paper_orders") == [(0,)]


def test_a_crash_inside_a_checkpoint_loses_no_bar(tmp_path):
    data = generated(tmp_path / "C.csv", 40, seed=12)
    algo = tmp_path / "trader.py"
    algo.write_text(textwrap.dedent(SIGNAL_IN_CHECKPOINT.format(signal="SIGKILL")))
    arm = tmp_path / "arm"
    arm.touch()
    state = tmp_path / "state"
    one = run_live(algo, data, "C", state, tmp_path / "out1", "--param", f"arm={arm}", speed="6000")
    assert one.returncode == -signal.SIGKILL and not arm.exists()
    two = run_live(algo, data, "C", state, tmp_path / "out2", "--param", f"arm={arm}")
    assert two.returncode == 0, two.stderr
    assert last_algo_state(state) == {"count": 40}


def test_a_paced_restart_does_not_wait_for_the_bars_it_skips(tmp_path):
    data = generated(tmp_path / "W.csv", 60, seed=13)
    state = tmp_path / "state"
    one = run_live(TRADER, data, "W", state, tmp_path / "out1", "--param", "every=0", "--max-bars", "50")
    assert one.returncode == 0, one.stderr
    assert feed_mark(state) == START_NS + 50 * MINUTE
    session = Paced.start(TRADER, data, "W", state, tmp_path / "out2", "--param", "every=0", speed="600")
    try:
        # The 10 remaining bars take 0.9 s at this speed; skipping 50 should take no time.
        session.wait_for("resuming after 2024-01-01T00:50:00Z: skipped 50 bar times", timeout=2.5)
    finally:
        session.proc.kill()
        session.proc.wait()


# ---- parity gaps -----------------------------------------------------------------------------


INITIALIZE_ALGO = """
from decimal import Decimal
from rustybt_api import Algorithm

class Early(Algorithm):
    def initialize(self, ctx):
        self.log.info("initialize at %s", ctx.time.isoformat())
        self.buy(ctx.symbols[0], 3)

    def on_tick(self, ctx):
        pass
"""


def test_initialize_time_and_orders_match_the_backtest(tmp_path):
    data = generated(tmp_path / "I.csv", 20, seed=14)
    algo = tmp_path / "early.py"
    algo.write_text(textwrap.dedent(INITIALIZE_ALGO))
    live = run_live(algo, data, "I", tmp_path / "state", tmp_path / "live")
    assert live.returncode == 0, live.stderr
    backtest = run_backtest(algo, data, tmp_path / "run")
    assert (live.out / "fills.csv").read_bytes() == (backtest.out / "fills.csv").read_bytes()
    assert log_texts(live.out) == log_texts(backtest.out) == ["initialize at 2024-01-01T00:00:00+00:00"]
    assert (live.out / "orders.csv").read_bytes() == (backtest.out / "orders.csv").read_bytes()


# ---- 8. errors -------------------------------------------------------------------------------


# A book on an exchange (tests/python/test_live_book_exchange.py) trades on its candles only.
BOOK_ON_AN_EXCHANGE = [
    "error: `--broker ccxt:binance` cannot trade on a replay file",
    "hint: replay with `--broker paper`; an exchange broker uses the exchange's candles",
]


@pytest.fixture
def one_minute_file(tmp_path) -> Path:
    return generated(tmp_path / "E.csv", 30, seed=15)


@pytest.mark.parametrize(
    "case", ["broker", "no_feed", "symbol", "timeframe", "portfolio", "portfolio_exchange"]
)
def test_usage_errors_exit_2_before_touching_the_state(tmp_path, one_minute_file, case):
    state, out = tmp_path / "state", tmp_path / "out"
    data, symbols, extra = one_minute_file, "E", []
    timeframe = "1m"
    if case == "no_feed":
        data = None
    elif case == "symbol":
        data, symbols = two_symbol_file(tmp_path / "AB.csv"), "A,X"
    elif case == "timeframe":
        timeframe = "5m"
    argv = live_argv(TRADER, data, symbols, state, out, timeframe=timeframe)
    if case == "broker":
        argv[argv.index("paper")] = "nope"
    # A book (tests/python/test_live_book.py) is checked against --symbols, and an exchange
    # book's feed before that.
    book_file = ROOT / "examples" / "portfolio" / "portfolio.toml"
    if case in ("portfolio", "portfolio_exchange"):
        at = argv.index("--algo")
        argv[at:at + 2] = ["--portfolio", str(book_file)]
    if case == "portfolio_exchange":
        argv[argv.index("paper")] = "ccxt:binance"
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=ENV, cwd=ROOT)
    result = Result(proc.returncode, proc.stdout, proc.stderr, out, state)
    assert result.returncode == 2, result.stderr
    result.clean()
    expected = {
        "broker": ["error: `--broker nope` is not a broker",
                   "hint: use `--broker paper` or `--broker ccxt:<exchange_id>` (e.g. ccxt:binance)"],
        "no_feed": ["error: paper trading needs a feed", "hint: add `--feed replay:FILE`"],
        "symbol": [f"error: the replay file `{data}` has no bars of `X`; it has: A, B"],
        "timeframe": [f"error: the replay file `{data}` has bars 1m apart for `E`, shorter than --timeframe 5m",
                      "hint: give --timeframe the file's bar duration (a replay does not resample)"],
        "portfolio": ["error: strategy `trend`: symbol `SYNA` is not in --symbols",
                      "hint: the session's symbols: E"],
        "portfolio_exchange": BOOK_ON_AN_EXCHANGE,
    }[case]
    for text in expected:
        assert text in result.stderr
    assert not state.exists() and not out.exists()


def test_a_bad_row_in_the_replay_file_exits_3_naming_file_and_line(tmp_path, one_minute_file):
    lines = one_minute_file.read_text().splitlines()
    fields = lines[6].split(",")
    fields[1] = "abc"
    lines[6] = ",".join(fields)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    state = tmp_path / "state"
    live = run_live(TRADER, bad, "bad", state, tmp_path / "out")
    assert live.returncode == 3, live.stderr
    live.clean()
    assert f"error: {bad} line 7, column `open`: cannot parse `abc` as a decimal number" in live.stderr
    assert not state.exists()


RAISING_ALGO = """
from rustybt_api import Algorithm

class Boom(Algorithm):
    def on_tick(self, ctx):
        self.log.info("bars %d", len(ctx.history("E")))
        if len(ctx.history("E")) == 5:
            raise RuntimeError("boom at five")
"""


def test_an_algorithm_raising_in_on_tick_exits_1_with_its_file_and_line(tmp_path, one_minute_file):
    algo = tmp_path / "boom.py"
    algo.write_text(textwrap.dedent(RAISING_ALGO))
    state = tmp_path / "state"
    live = run_live(algo, one_minute_file, "E", state, tmp_path / "out")
    assert live.returncode == 1, live.stderr
    live.clean()
    assert f"error: RuntimeError in `on_tick` at {algo}:8 (simulated time 2024-01-01T00:05:00Z): boom at five" \
        in live.stderr
    assert f'File "{algo}", line 8, in on_tick' in live.stderr
    assert "live session ended (algorithm failed)" in live.stderr
    assert query(state, "SELECT stop_reason FROM runs") == [("algorithm failed",)]
    assert log_texts(live.out) == [f"bars {n}" for n in range(1, 6)]
    assert live.metrics()["run"]["bars_processed"] == 5


def test_an_algorithm_failure_marks_the_results_failed(tmp_path, one_minute_file):
    algo = tmp_path / "boom.py"
    algo.write_text(textwrap.dedent(RAISING_ALGO))
    live = run_live(algo, one_minute_file, "E", tmp_path / "state", tmp_path / "out")
    assert live.returncode == 1
    metrics = live.metrics()
    assert (metrics["status"], metrics["partial"]) == ("failed", True)
    assert "boom at five" in metrics["reason"]


def test_a_session_that_never_starts_still_ends_its_run(tmp_path, one_minute_file):
    algo = tmp_path / "syntax.py"
    algo.write_text("from rustybt_api import Algorithm\nclass X(Algorithm)\n    pass\n")
    state = tmp_path / "state"
    live = run_live(algo, one_minute_file, "E", state, tmp_path / "out")
    assert live.returncode == 1 and "SyntaxError" in live.stderr
    # The algorithm is loaded before the journal is opened: no run is started, none left open.
    assert not (state / "journal.sqlite").exists()

    # A refused --reset-breaker (the halt file is still there) starts no run either.
    first = run_live(TRADER, one_minute_file, "E", state, tmp_path / "out1")
    assert first.returncode == 0, first.stderr
    (state / "HALT").write_text("stop\n")
    refused = run_live(TRADER, one_minute_file, "E", state, tmp_path / "out2", "--reset-breaker")
    assert refused.returncode == 2 and "remove it first" in refused.stderr
    assert query(state, "SELECT id, stop_reason FROM runs") == [(1, "end of feed")]
