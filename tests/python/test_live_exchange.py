"""`rustybt live --broker ccxt:binance` end to end: the release binary, the real ccxt client and
the fake Binance (`tests/support/fake_binance.py`) as a separate process in script mode, with a
market clock of 1-second bars whose virtual time tracks wall time (see
docs/live-exchange-testing.md, "A market clock for end-to-end runs"). Nothing reaches the
internet.

Every test compares the journal (SQLite), the results and the audit log with what the fake
exchange saw (`/_fake/orders`, `/_fake/trades`, `/_fake/requests`, `/_fake/balances`):
orders journaled before they are sent, one exchange order per client id, exact decimal text,
crash recovery by client id after `kill -9`, reconciliation, circuit breakers, rate limiting,
clean exits and clear errors.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "live"
FLIP = FIXTURES / "exchange_flip.py"
EVERY_BAR = FIXTURES / "exchange_every_bar.py"
RESTING = FIXTURES / "exchange_resting.py"

API_KEY, SECRET = "fake-api-key", "fake-secret"
CASH = D("10000")
SYMBOL, MARKET = "BTC/USDT", "BTCUSDT"

# Binance status -> the journal's word (docs/live-exchange-testing.md, "Status mapping")
STATUS = {"NEW": "accepted", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled",
          "CANCELED": "cancelled", "REJECTED": "rejected", "EXPIRED": "expired"}

# Fast settings: 1 ms between requests, a 1 s receive window and a 1 ms settle margin (a
# restart's resume waits both out; "0ms" is refused as not positive), short retry delays;
# reconciliation every 2 s so it happens within a short session.
BASE_CONFIG: dict[str, dict[str, Any]] = {
    "live": {"status_line": False, "reconcile_interval": "2s"},
    "exchange": {"rate_limit": "1ms", "settle_margin": "1ms", "recv_window": "1s",
                 "retry_base_delay": "50ms", "retry_max_delay": "200ms"},
}


def plain(value: Any) -> str:
    """A decimal as the journal writes it: plain notation, no trailing zeros."""
    return format(D(str(value)).normalize(), "f")


# ------------------------------------------------------------------------------ the fake


class Fake:
    """The fake exchange as a process in script mode, and its control endpoints."""

    def __init__(self, script: dict[str, Any], folder: Path):
        path = folder / "scenario.json"
        path.write_text(json.dumps(script, indent=1))
        self.log = (folder / "fake.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_binance", "--port", "0", "--script", str(path)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        assert ready, "the fake exchange did not start"
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("LISTENING http://127.0.0.1:"), line
        self.url = line.split()[1]
        self.control = self.url.replace("/api/v3", "/_fake")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.log.close()

    def call(self, method: str, name: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.control}/{name}", data, method=method)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)

    def orders(self) -> list[dict[str, Any]]:
        return self.call("GET", "orders")

    def trades(self) -> list[dict[str, Any]]:
        return self.call("GET", "trades")

    def requests(self) -> list[dict[str, Any]]:
        return self.call("GET", "requests")

    def totals(self) -> dict[str, D]:
        """free + locked per asset (zero balances left out)."""
        totals = {a: D(b["free"]) + D(b["locked"]) for a, b in self.call("GET", "balances").items()}
        return {a: v for a, v in totals.items() if v}

    def order_posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if (r["method"], r["path"]) == ("POST", "order")]

    def inject(self, **fault: Any) -> None:
        self.call("POST", "fault", fault)

    def signed(self, method: str, path: str, params: dict[str, str]) -> Any:
        """A signed Binance request made behind the engine's back (another client)."""
        query = urllib.parse.urlencode({**params, "timestamp": str(int(time.time() * 1000)), "recvWindow": "5000"})
        signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        request = urllib.request.Request(f"{self.url}/{path}?{query}&signature={signature}", method=method,
                                         headers={"X-MBX-APIKEY": API_KEY})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 15, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def script(*, path: list[str] | None = None, bars: int = 40, faults: list[dict[str, Any]] = (),  # type: ignore[assignment]
           balances: dict[str, str] | None = None) -> dict[str, Any]:
    """A BTCUSDT market, 10000 USDT and a clock of 1-second bars starting 2 s from now (so the
    binary, started right after the fake, sees candle 0 as its first bar), rising 10 per bar
    unless ``path`` is given."""
    start = int(time.time() * 1000) // 1000 * 1000 + 2000
    prices = path or [f"{64000 + 10 * i}.10" for i in range(bars)]
    return {
        "markets": [{"symbol": MARKET, "base": "BTC", "quote": "USDT", "tick_size": "0.01",
                     "step_size": "0.00001", "min_notional": "5"}],
        "balances": balances or {"USDT": str(CASH)},
        "prices": {MARKET: prices[0]},
        "faults": list(faults),
        "clock": {"start_ms": start, "interval": "1s", "wall_ms_per_bar": 1000, "path": {MARKET: prices}},
    }


@pytest.fixture
def fake_exchange(tmp_path: Path) -> Iterator[Callable[..., Fake]]:
    started: list[Fake] = []

    def start(**kwargs: Any) -> Fake:
        folder = tmp_path / f"fake{len(started)}"
        folder.mkdir()
        fake = Fake(script(**kwargs), folder)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


# --------------------------------------------------------------------------- the binary


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def write_config(folder: Path, **sections: dict[str, Any]) -> Path:
    """BASE_CONFIG with ``sections`` merged in, as a live TOML file."""
    merged = {name: dict(values) for name, values in BASE_CONFIG.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()) + "\n"
        for name, values in merged.items()
    )
    path = folder / "live.toml"
    path.write_text(text)
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    out: Path
    seconds: float

    def log(self) -> list[str]:
        """The algorithm's log lines (results log.txt)."""
        path = self.out / "log.txt"
        return path.read_text().splitlines() if path.exists() else []

    def results(self, name: str) -> list[dict[str, str]]:
        with (self.out / name).open() as f:
            return list(csv.DictReader(f))


@dataclass
class Live:
    """A `rustybt live` session on a fake, with its state folder and settings."""

    binary: Path
    fake: Fake
    state: Path
    config: Path
    folder: Path
    algo: Path = FLIP
    runs: int = 0

    def argv(self, *, max_bars: int | None, params: dict[str, Any], out: Path) -> list[str]:
        argv = [str(self.binary), "live", "--algo", str(self.algo), "--broker", "ccxt:binance",
                "--symbols", SYMBOL, "--timeframe", "1s", "--exchange-url", self.fake.url,
                "--state", str(self.state), "--out", str(out), "--config", str(self.config), "-q"]
        if max_bars is not None:
            argv += ["--max-bars", str(max_bars)]
        for name, value in params.items():
            argv += ["--param", f"{name}={value}"]
        return argv

    def env(self, crash: str | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUSTYBT_API_", "RUSTYBT_LIVE_CRASH"))}
        env.update({"RUSTYBT_API_KEY": API_KEY, "RUSTYBT_API_SECRET": SECRET, "NO_COLOR": "1"})
        if crash:
            env["RUSTYBT_LIVE_CRASH"] = crash
        env.update(extra)
        return env

    def next_out(self) -> Path:
        self.runs += 1
        return self.folder / f"out{self.runs}"

    def run(self, *, max_bars: int | None = 8, crash: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60, **params: Any) -> Run:
        out = self.next_out()
        started = time.monotonic()
        proc = subprocess.run(self.argv(max_bars=max_bars, params=params, out=out), capture_output=True, text=True,
                              timeout=timeout, env=env or self.env(crash), cwd=self.folder)
        return Run(proc.returncode, proc.stdout, proc.stderr, out, time.monotonic() - started)

    def start(self, *, max_bars: int | None = None, **params: Any) -> tuple[subprocess.Popen[str], Path]:
        out = self.next_out()
        proc = subprocess.Popen(self.argv(max_bars=max_bars, params=params, out=out), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(), cwd=self.folder)
        return proc, out

    def journal(self) -> "Journal":
        return Journal(self.state / "journal.sqlite")


def finish(proc: subprocess.Popen[str], out: Path, started: float, timeout: float = 30) -> Run:
    stdout, stderr = proc.communicate(timeout=timeout)
    return Run(proc.returncode, stdout, stderr, out, time.monotonic() - started)


@pytest.fixture
def live(binary: Path, fake_exchange: Callable[..., Fake], tmp_path: Path) -> Callable[..., Live]:
    def make(*, algo: Path = FLIP, config: dict[str, dict[str, Any]] | None = None, **fake_kwargs: Any) -> Live:
        folder = tmp_path / "session"
        folder.mkdir(exist_ok=True)
        return Live(binary, fake_exchange(**fake_kwargs), folder / "state", write_config(folder, **(config or {})),
                    folder, algo)

    return make


class Journal:
    """Read-only access to the session's SQLite journal (also while the binary runs)."""

    def __init__(self, path: Path):
        assert path.exists(), path
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        self.db.row_factory = sqlite3.Row

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        try:
            return [dict(r) for r in self.db.execute(sql, args).fetchall()]
        finally:
            self.db.rollback()

    def intents(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM intents ORDER BY created_at")

    def fills(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM fills ORDER BY id")

    def snapshot(self) -> dict[str, Any]:
        return json.loads(self.rows("SELECT book FROM book_snapshots ORDER BY id DESC LIMIT 1")[0]["book"])

    def close(self) -> None:
        self.db.close()


def running_journal_fills(session: Live) -> list[dict[str, Any]]:
    """The journal's fills while the binary may still be creating it (then none)."""
    if not (session.state / "journal.sqlite").exists():
        return []
    journal = session.journal()
    try:
        return journal.fills()
    except sqlite3.OperationalError:  # the binary is still creating the journal
        return []
    finally:
        journal.close()


def audit_events(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------- the checks


def expected_balances(fills: list[dict[str, Any]], adjustments: list[dict[str, Any]] = ()) -> dict[str, D]:  # type: ignore[assignment]
    """10000 USDT, then every journaled fill (fees in the asset the exchange charged) and
    adjustment: cash = 10000 − buys + sells − USDT fees; BTC = buys − BTC fees − sells."""
    usdt, btc = CASH, D(0)
    for f in fills:
        qty, price, fee = D(f["quantity"]), D(f["price"]), D(f["fee"])
        if f["side"] == "buy":
            usdt -= qty * price
            btc += qty
        else:
            usdt += qty * price
            btc -= qty
        if f["fee_asset"] == "USDT":
            usdt -= fee
        else:
            assert f["fee_asset"] == "BTC", f
            btc -= fee
    for a in adjustments:
        if a["target"] == "cash":
            usdt += D(a["delta"])
        else:
            btc += D(a["delta"])
    return {k: v for k, v in {"USDT": usdt, "BTC": btc}.items() if v}


def assert_journal_matches_exchange(live: Live, *, open_ids: tuple[str, ...] = (), clean: bool = True) -> dict[str, Any]:
    """The journal against the fake: one exchange order and one successful POST per client id,
    the same quantities, statuses and fills (exact text), the balances equal to the journal's
    book, the last reconciliation clean. Returns the pieces for further checks."""
    fake, journal = live.fake, live.journal()
    intents = {i["client_order_id"]: i for i in journal.intents()}
    orders = fake.orders()
    by_cid = Counter(o["clientOrderId"] for o in orders)
    assert all(n == 1 for n in by_cid.values()), f"an order was duplicated at the exchange: {by_cid}"
    orders_by_cid = {o["clientOrderId"]: o for o in orders}
    posts = fake.order_posts()
    ok_posts = Counter(p["params"]["newClientOrderId"] for p in posts if p["status"] == 200)
    assert ok_posts == Counter(list(orders_by_cid)), (ok_posts, list(orders_by_cid))
    # no order lost: every intent the journal sent is at the exchange, and nothing else is ours
    sent = {cid for cid, i in intents.items() if i["status"] != "rejected" or i["exchange_id"]}
    assert sent == {cid for cid in orders_by_cid if cid.startswith("rbt-")}, (sent, list(orders_by_cid))
    for cid in sent:
        intent, order = intents[cid], orders_by_cid[cid]
        assert intent["exchange_id"] == str(order["orderId"]), (intent, order)
        assert (intent["side"], intent["quantity"]) == (order["side"].lower(), plain(order["origQty"]))
        assert intent["status"] == STATUS[order["status"]], (intent, order)
        assert intent["reported_filled"] == plain(order["executedQty"]), (intent, order)
        assert intent["state"] == ("acknowledged" if cid in open_ids else "final"), intent
        post = next(p for p in posts if p["params"]["newClientOrderId"] == cid and p["status"] == 200)
        assert post["params"]["quantity"] == intent["quantity"]  # the exact decimal text that was sent
        assert post["params"]["type"] == intent["order_type"].upper()
        if intent["limit_price"] is not None:  # the journal keeps the algorithm's text ("1000.00"), ccxt sends "1000"
            assert D(post["params"]["price"]) == D(intent["limit_price"]) == D(order["price"])
    # fills: the exchange's trades, exactly
    ids = {str(o["orderId"]): o["clientOrderId"] for o in orders}
    theirs = sorted(
        (ids[str(t["orderId"])], str(t["id"]), "buy" if t["isBuyer"] else "sell", plain(t["qty"]), plain(t["price"]),
         plain(t["commission"]), t["commissionAsset"], t["time"] * 1_000_000)
        for t in fake.trades()
        if str(t["orderId"]) in ids and ids[str(t["orderId"])].startswith("rbt-")
    )
    fills = journal.fills()
    mine = sorted((f["client_order_id"], f["trade_id"], f["side"], f["quantity"], f["price"], f["fee"], f["fee_asset"],
                   f["time"]) for f in fills)
    assert mine == theirs
    # balances: the exchange's totals are the journal's book
    adjustments = journal.rows("SELECT * FROM adjustments ORDER BY id")
    expected = expected_balances(fills, adjustments)
    assert fake.totals() == expected
    book = journal.snapshot()
    assert D(book["cash"]) == expected["USDT"], book
    assert {k: D(v) for k, v in book["positions"].items() if D(v)} == (
        {SYMBOL: expected["BTC"]} if "BTC" in expected else {}), book
    if clean:
        recs = journal.rows("SELECT outcome, report FROM reconciliations ORDER BY id")
        assert recs and recs[-1]["outcome"] == "clean", recs[-1]["report"]
        report = json.loads((live.state / "reconciliation.json").read_text())
        assert (report["outcome"], report["discrepancies"], report["critical"], report["minor"]) == ("clean", [], 0, 0)
    journal.close()
    return {"intents": intents, "orders": orders_by_cid, "posts": posts, "fills": fills, "balances": expected}


def assert_no_secrets(*texts: str, folders: tuple[Path, ...] = ()) -> None:
    for secret in (SECRET, API_KEY):
        for text in texts:
            assert secret not in text
        for folder in folders:
            for path in folder.rglob("*"):
                if path.is_file():
                    assert secret.encode() not in path.read_bytes(), f"{secret} in {path}"


def breaker_trips(journal: Journal) -> list[dict[str, Any]]:
    return journal.rows("SELECT breaker, reason, detail FROM breaker_events WHERE event = 'trip' ORDER BY id")


def csv_time_ms(text: str) -> int:
    """``2026-11-23T05:26:51.222Z`` (a results CSV's time) in epoch milliseconds."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def halted_orders(run: Run) -> list[dict[str, str]]:
    return [o for o in run.results("orders.csv") if o["reason"].startswith("trading halted")]


# ------------------------------------------------------------------------------- tests


def test_a_session_trades_and_the_journal_matches_the_exchange(live: Callable[..., Live]) -> None:
    session = live()
    run = session.run(max_bars=8)
    assert run.returncode == 0, run.stderr
    assert "HALTED" not in run.stderr
    seen = assert_journal_matches_exchange(session)
    intents, orders, posts = seen["intents"], seen["orders"], seen["posts"]
    assert [(cid, i["side"], i["quantity"], i["order_type"], i["status"]) for cid, i in intents.items()] == [
        ("rbt-r1-1", "buy", "0.01", "market", "filled"),
        ("rbt-r1-2", "sell", "0.005", "market", "filled"),
    ]
    assert [(p["params"]["newClientOrderId"], p["params"]["side"], p["params"]["quantity"], p["status"]) for p in posts] == [
        ("rbt-r1-1", "BUY", "0.01", 200), ("rbt-r1-2", "SELL", "0.005", 200)]
    assert [(o["origQty"], o["executedQty"], o["status"]) for o in orders.values()] == [
        ("0.01000000", "0.01000000", "FILLED"), ("0.00500000", "0.00500000", "FILLED")]
    buy, sell = seen["fills"]
    assert (buy["quantity"], buy["fee"], buy["fee_asset"]) == ("0.01", "0.00001", "BTC")  # 0.1% of what was bought
    assert (sell["quantity"], sell["fee_asset"]) == ("0.005", "USDT")
    assert D(sell["fee"]) == (D("0.005") * D(sell["price"]) * D("0.001")).quantize(D("1E-8"))
    assert seen["balances"] == {
        "USDT": CASH - D("0.01") * D(buy["price"]) + D("0.005") * D(sell["price"]) - D(sell["fee"]),
        "BTC": D("0.01") - D("0.00001") - D("0.005"),
    }
    # the results' fills.csv: the same executions (a fee charged in BTC is not a cash fee)
    rows = run.results("fills.csv")
    assert [(r["side"], r["qty"], r["price"], r["fee"]) for r in rows] == [
        ("buy", "0.01", buy["price"], "0"), ("sell", "0.005", sell["price"], sell["fee"])]
    assert [csv_time_ms(r["time"]) for r in rows] == [buy["time"] // 1_000_000, sell["time"] // 1_000_000]
    # a reconciliation after the last fill, and it was clean
    journal = session.journal()
    recs = journal.rows("SELECT time, outcome FROM reconciliations ORDER BY id")
    assert len(recs) >= 2 and all(r["outcome"] == "clean" for r in recs)
    assert recs[-1]["time"] > sell["time"]
    # the audit log: intent, ack and fill of both orders
    events = audit_events(session.state)
    for cid, order in orders.items():
        kinds = [e["kind"] for e in events if e["fields"].get("client_order_id") == cid]
        assert [k for k in kinds if k in ("intent", "ack", "fill")] == ["intent", "ack", "fill"], (cid, kinds)
        ack = next(e for e in events if e["kind"] == "ack" and e["fields"]["client_order_id"] == cid)
        assert ack["fields"]["exchange_id"] == str(order["orderId"])
    assert any(e["kind"] == "reconcile" for e in events)
    assert [line.split("Flip: ")[1] for line in run.log() if "ORDER" in line] == [
        "ORDER buy 0.01 bar 2 accepted None", "ORDER sell 0.005 bar 5 accepted None"]
    assert_no_secrets(run.stdout, run.stderr, folders=(session.state, run.out))


def restart_checks(session: Live, first: Run, second: Run) -> dict[str, Any]:
    """After a kill -9 and a restart: nothing lost or doubled, the journal equals the exchange,
    the algorithm continued from its saved state (its buy was not repeated)."""
    assert second.returncode == 0, second.stderr
    seen = assert_journal_matches_exchange(session)
    sides = [(o["side"], o["origQty"]) for o in seen["orders"].values()]
    assert sides == [("BUY", "0.01000000"), ("SELL", "0.00500000")], sides
    assert "restored the algorithm's state" in second.stderr
    bars = [line.split("Flip: ")[1] for line in second.log() if "BAR" in line]
    assert bars and bars[0].startswith("BAR 3 "), bars  # it went on after bar 2, where it bought
    orders_placed = [line.split("Flip: ")[1] for line in first.log() + second.log() if "ORDER" in line]
    assert [o.split(" bar ")[0] for o in orders_placed] in (
        ["ORDER sell 0.005"], ["ORDER buy 0.01", "ORDER sell 0.005"]), orders_placed
    assert "HALTED" not in second.stderr
    assert_no_secrets(first.stderr, second.stderr, folders=(session.state,))
    return seen


@pytest.mark.parametrize("point", ["before_send", "after_send", "after_fill"])
def test_kill_9_at_a_crash_point_then_restart(live: Callable[..., Live], point: str) -> None:
    session = live()
    first = session.run(max_bars=8, crash=point)
    assert first.returncode == -signal.SIGKILL, (first.returncode, first.stderr)
    journal = session.journal()
    [intent] = journal.intents()
    journal.close()
    posted = [p["params"]["newClientOrderId"] for p in session.fake.order_posts()]
    if point == "before_send":
        assert (intent["state"], intent["exchange_id"], posted) == ("sent", None, [])
    elif point == "after_send":
        assert (intent["state"], intent["exchange_id"], posted) == ("sent", None, ["rbt-r1-1"])
    else:
        assert (intent["state"], intent["status"], posted) == ("final", "filled", ["rbt-r1-1"])
    second = session.run(max_bars=4)
    seen = restart_checks(session, first, second)
    assert list(seen["orders"]) == ["rbt-r1-1", "rbt-r2-2"]
    if point != "after_fill":
        assert "order rbt-r1-1 resolved by client id: filled (0.01 filled)" in second.stderr


def test_kill_9_while_the_order_request_hangs_then_restart(live: Callable[..., Live]) -> None:
    """A real timing kill: the exchange takes the order but holds the reply for 4 s; the
    binary is killed by SIGKILL while it waits. The restart finds the order by client id."""
    session = live(faults=[{"kind": "delay", "method": "POST", "path": "order", "delay_s": 4}])
    started = time.monotonic()
    proc, out = session.start(max_bars=8)
    try:
        wait_for("the order request", lambda: session.fake.order_posts(), timeout=15)
        time.sleep(0.3)  # the fake has placed it and sits on the reply
        proc.send_signal(signal.SIGKILL)
        first = finish(proc, out, started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first.returncode == -signal.SIGKILL
    [order] = session.fake.orders()
    assert (order["clientOrderId"], order["status"]) == ("rbt-r1-1", "FILLED")
    journal = session.journal()
    [intent] = journal.intents()
    journal.close()
    assert (intent["state"], intent["exchange_id"]) == ("sent", None)
    second = session.run(max_bars=4)
    seen = restart_checks(session, first, second)
    assert list(seen["orders"]) == ["rbt-r1-1", "rbt-r2-2"]
    assert "order rbt-r1-1 resolved by client id: filled (0.01 filled)" in second.stderr
    assert [p["params"]["newClientOrderId"] for p in seen["posts"]] == ["rbt-r1-1", "rbt-r2-2"]


def run_with(session: Live, action: Callable[[], Any], *, max_bars: int, **params: Any) -> Run:
    """Runs a session, does ``action`` while it runs, and waits for it to end."""
    started = time.monotonic()
    proc, out = session.start(max_bars=max_bars, **params)
    try:
        action()
        return finish(proc, out, started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def buy_posted(fake: Fake) -> Callable[[], Any]:
    return lambda: [p for p in fake.order_posts() if p["status"] == 200]


def algorithm_lines(run: Run, word: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in run.log() if f": {word} " in line]


def test_an_order_placed_behind_the_engines_back_halts_trading(live: Callable[..., Live]) -> None:
    """Another client opens an order on the account while the session runs: the next
    reconciliation finds an open order the journal does not know (critical) and, with
    `critical = "halt"`, trips the breaker; the algorithm's later sell is refused."""
    session = live(config={"reconcile": {"critical": "halt", "minor": "sync"}})
    placed: list[Any] = []

    def meddle() -> None:
        wait_for("the algorithm's buy", buy_posted(session.fake))
        placed.append(session.fake.signed("POST", "order", {
            "symbol": MARKET, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.01", "price": "1000.00", "newClientOrderId": "manual-1"}))

    run = run_with(session, meddle, max_bars=9, sell_at=8)
    assert run.returncode == 0, run.stderr
    assert placed[0]["status"] == "NEW"
    assert "HALTED: reconciliation breaker tripped" in run.stderr
    assert "reconciliation: unknown order manual-1 open at the broker (buy 0.01 BTC/USDT), not in the journal" in run.stderr
    journal = session.journal()
    [trip] = breaker_trips(journal)
    assert trip["breaker"] == "reconciliation"
    assert trip["reason"] == "reconciliation: unknown order manual-1 open at the broker (buy 0.01 BTC/USDT), not in the journal"
    halted = [json.loads(r["report"]) for r in journal.rows("SELECT report FROM reconciliations WHERE outcome = 'halted'")]
    assert halted, journal.rows("SELECT outcome FROM reconciliations")
    assert [(d["kind"], d["severity"], d["action"], d["client_order_id"]) for d in halted[0]["discrepancies"]] == [
        ("unknown_broker_order", "critical", "halt", "manual-1")]
    assert [i["client_order_id"] for i in journal.intents()] == ["rbt-r1-1"]  # the sell was never journaled
    journal.close()
    # the sell at bar 8 was refused by the engine: never sent
    [sell] = [line for line in algorithm_lines(run, "ORDER") if line.startswith("ORDER sell")]
    assert sell.startswith("ORDER sell 0.005 bar 8 rejected trading halted: reconciliation breaker tripped at "), sell
    assert [(o["side"], o["status"]) for o in halted_orders(run)] == [("sell", "rejected")]
    assert [p["params"]["newClientOrderId"] for p in session.fake.order_posts()] == ["rbt-r1-1", "manual-1"]
    assert_journal_matches_exchange(session, clean=False)
    assert json.loads((session.state / "reconciliation.json").read_text())["outcome"] == "halted"


def test_a_minor_difference_is_adopted_with_sync(live: Callable[..., Live]) -> None:
    """A deposit of 0.004 USDT and 0.00002 BTC behind the engine's back, within the
    tolerances: `minor = "sync"` adopts both (journal adjustments, outcome `synced`) and the
    session goes on trading with the exchange's numbers."""
    session = live(config={"reconcile": {"balance_absolute": "0.01", "position_absolute": "0.0001",
                                         "minor": "sync", "critical": "halt"}})

    def deposit() -> None:
        wait_for("the buy's fill", lambda: session.fake.trades())
        session.fake.call("POST", "balances", {"asset": "USDT", "delta": "0.004"})
        session.fake.call("POST", "balances", {"asset": "BTC", "delta": "0.00002"})

    # Bars enough for two reconciliations (every 2 s) after the deposit, even when a slow
    # start makes the session catch up its first bars at once (CI failed with 8).
    run = run_with(session, deposit, max_bars=14, sell_at=0)
    assert run.returncode == 0, run.stderr
    assert "HALTED" not in run.stderr
    assert "2 minor, 0 critical discrepancies; 2 adjustments adopted from the broker" in run.stderr
    journal = session.journal()
    adjustments = journal.rows("SELECT target, name, delta, reason FROM adjustments ORDER BY id")
    assert sorted((a["target"], a["name"], a["delta"]) for a in adjustments) == [
        ("cash", "USDT", "0.004"), ("position", "BTC/USDT", "0.00002")]
    assert all(a["reason"].startswith("reconciliation ") for a in adjustments)
    outcomes = [r["outcome"] for r in journal.rows("SELECT outcome FROM reconciliations ORDER BY id")]
    assert "synced" in outcomes and outcomes[-1] == "clean", outcomes
    [synced] = [json.loads(r["report"]) for r in journal.rows("SELECT report FROM reconciliations WHERE outcome = 'synced'")]
    assert (synced["minor"], synced["critical"]) == (2, 0)
    assert sorted((d["kind"], d["severity"], d["action"], d["difference"]) for d in synced["discrepancies"]) == [
        ("balance", "minor", "sync", "0.004"), ("position", "minor", "sync", "0.00002")]
    assert breaker_trips(journal) == []
    journal.close()
    seen = assert_journal_matches_exchange(session)
    [fill] = seen["fills"]
    assert seen["balances"] == {"USDT": CASH - D("0.01") * D(fill["price"]) + D("0.004"),
                                "BTC": D("0.01") - D("0.00001") + D("0.00002")}


def test_error_rate_breaker_trips_on_failing_requests(live: Callable[..., Live]) -> None:
    session = live(config={"breakers": {"max_errors": 2, "error_window": "1m"}})

    def break_the_exchange() -> None:
        wait_for("the algorithm's buy", buy_posted(session.fake))
        session.fake.inject(kind="status", method="GET", path="myTrades", status=503, times=2)
        session.fake.inject(kind="drop", method="GET", path="myTrades", times=1)

    run = run_with(session, break_the_exchange, max_bars=8, sell_at=7)
    assert run.returncode == 0, run.stderr
    assert "HALTED: error_rate breaker tripped" in run.stderr
    failed = [(r["status"], r["fault"]) for r in session.fake.requests() if r["path"] == "myTrades" and r["fault"]]
    assert failed == [(503, "status"), (503, "status"), (200, "drop")]
    journal = session.journal()
    [trip] = breaker_trips(journal)
    assert trip["breaker"] == "error_rate"
    assert trip["reason"] == "3 errors within 60 s, more than the 2 tolerated"
    assert json.loads(trip["detail"])["errors"] == 3
    journal.close()
    [sell] = [line for line in algorithm_lines(run, "ORDER") if line.startswith("ORDER sell")]
    assert sell.startswith("ORDER sell 0.005 bar 7 rejected trading halted: error_rate breaker tripped at "), sell
    assert [(o["side"], o["status"]) for o in halted_orders(run)] == [("sell", "rejected")]
    assert [p["params"]["newClientOrderId"] for p in session.fake.order_posts()] == ["rbt-r1-1"]
    assert_journal_matches_exchange(session)


def test_order_rate_breaker_trips_on_the_second_order_in_a_minute(live: Callable[..., Live]) -> None:
    session = live(algo=EVERY_BAR, config={"breakers": {"max_orders_per_minute": 1}})
    run = session.run(max_bars=4)
    assert run.returncode == 0, run.stderr
    assert "HALTED: order_rate breaker tripped" in run.stderr
    journal = session.journal()
    [trip] = breaker_trips(journal)
    assert trip["breaker"] == "order_rate"
    assert trip["reason"] == "order rate: this order would be number 2 within a minute, the limit is 1"
    assert [(i["client_order_id"], i["quantity"], i["status"]) for i in journal.intents()] == [("rbt-r1-1", "0.0002", "filled")]
    journal.close()
    assert [p["params"]["newClientOrderId"] for p in session.fake.order_posts()] == ["rbt-r1-1"]
    lines = algorithm_lines(run, "ORDER")
    assert len(lines) == 4 and lines[0] == "ORDER 1 accepted None", lines
    for n, line in ((3, lines[2]), (4, lines[3])):
        assert line.startswith(f"ORDER {n} rejected trading halted: order_rate breaker tripped at "), line
    # the second order tripped the breaker before it was sent, the later ones were refused at submit
    refused = halted_orders(run)
    assert [(o["order_id"], o["status"]) for o in refused] == [("2", "rejected"), ("3", "rejected"), ("4", "rejected")]
    assert all(o["reason"] == refused[0]["reason"] for o in refused)
    assert_journal_matches_exchange(session)


def test_drawdown_breaker_trips_when_the_price_falls_after_a_buy(live: Callable[..., Live]) -> None:
    path = ["64000.10"] * 6 + ["30000.10"] * 34
    session = live(path=path, config={"breakers": {"max_drawdown": "0.1"}})
    run = session.run(max_bars=10, buy_qty="0.1", sell_at=9, sell_qty="0.05")
    assert run.returncode == 0, run.stderr
    assert "HALTED: drawdown breaker tripped" in run.stderr
    journal = session.journal()
    [fill] = journal.fills()
    assert (fill["side"], fill["quantity"], fill["price"], fill["fee"]) == ("buy", "0.1", "64000.1", "0.0001")
    [trip] = breaker_trips(journal)
    assert trip["breaker"] == "drawdown"
    detail = json.loads(trip["detail"])
    # cash 10000 − 6400.01, and 0.0999 BTC (0.1 less the fee) at the fallen close 30000.1
    assert (D(detail["peak"]), D(detail["equity"]), D(detail["limit"])) == (
        D("10000"), D("3599.99") + D("0.0999") * D("30000.1"), D("0.1"))
    journal.close()
    [sell] = [line for line in algorithm_lines(run, "ORDER") if line.startswith("ORDER sell")]
    assert sell.startswith("ORDER sell 0.05 bar 9 rejected trading halted: drawdown breaker tripped at "), sell
    assert [p["params"]["newClientOrderId"] for p in session.fake.order_posts()] == ["rbt-r1-1"]
    assert_journal_matches_exchange(session)


def test_a_429_is_waited_out_and_the_order_placed_once(live: Callable[..., Live]) -> None:
    session = live(faults=[{"kind": "status", "method": "POST", "path": "order", "status": 429, "retry_after": 1}])
    run = session.run(max_bars=4, sell_at=0)
    assert run.returncode == 0, run.stderr
    posts = session.fake.order_posts()
    assert [(p["params"]["newClientOrderId"], p["status"], p["fault"]) for p in posts] == [
        ("rbt-r1-1", 429, "status"), ("rbt-r1-1", 200, None)]
    assert posts[1]["time"] - posts[0]["time"] >= 1.0  # Retry-After: 1
    # before resending, it asked whether the first request had placed the order
    lookups = [r for r in session.fake.requests() if (r["method"], r["path"]) == ("GET", "order")]
    assert lookups and lookups[0]["params"]["origClientOrderId"] == "rbt-r1-1"
    assert posts[0]["time"] < lookups[0]["time"] < posts[1]["time"]
    backoffs = [e for e in audit_events(session.state)
                if e["kind"] == "log" and e["fields"]["level"] == "warning" and "backoff" in e["fields"]["message"]]
    assert backoffs, "no backoff warning in the audit log"
    assert "retry_after_s: Some(1.0)" in backoffs[0]["fields"]["message"], backoffs[0]
    seen = assert_journal_matches_exchange(session)
    assert list(seen["orders"]) == ["rbt-r1-1"]


def between_bars() -> None:
    """Sleeps until 0.6 s past the next wall-clock second. With 1-second bars the binary asks
    the exchange for the bar closing at each full second (within the 200 ms idle slice) and
    then polls orders and fills; by 0.6 s past it is idle until the next bar."""
    now = time.time()
    target = int(now) + 0.6
    if target < now + 0.05:
        target += 1
    time.sleep(target - now)


def resting_session(live: Callable[..., Live], cancel: bool) -> tuple[Live, Run]:
    """A session with a limit buy at 1000 resting at the exchange, stopped by SIGTERM."""
    session = live(algo=RESTING, config={"live": {"cancel_open_orders_on_exit": cancel}})

    def acknowledged() -> bool:
        if not (session.state / "journal.sqlite").exists():
            return False
        journal = session.journal()
        try:
            return [i["state"] for i in journal.intents()] == ["acknowledged"]
        except sqlite3.OperationalError:  # the binary is still creating the journal
            return False
        finally:
            journal.close()

    started = time.monotonic()
    proc, out = session.start()
    try:
        wait_for("the resting order's acknowledgement", acknowledged)
        # Between two bars, when no exchange request runs: a signal that lands during one is
        # lost (see test_sigterm_during_an_exchange_request_stops_the_session).
        between_bars()
        proc.send_signal(signal.SIGTERM)
        run = finish(proc, out, started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert run.returncode == 0, run.stderr
    assert "live session ended (stopped by signal)" in run.stderr
    [post] = session.fake.order_posts()
    assert (post["params"]["type"], post["params"]["price"], post["params"]["quantity"]) == ("LIMIT", "1000", "0.01")
    return session, run


def test_sigterm_cancels_open_orders_when_configured(live: Callable[..., Live]) -> None:
    session, run = resting_session(live, cancel=True)
    assert "cancelled 1 open orders at the exchange" in run.stderr
    [order] = session.fake.orders()
    assert (order["clientOrderId"], order["status"], order["executedQty"]) == ("rbt-r1-1", "CANCELED", "0.00000000")
    assert [r["path"] for r in session.fake.requests() if r["method"] == "DELETE"] == ["order"]
    journal = session.journal()
    [intent] = journal.intents()
    journal.close()
    assert (intent["state"], intent["status"], intent["limit_price"]) == ("final", "cancelled", "1000.00")
    assert session.fake.totals() == {"USDT": CASH}
    assert session.fake.call("GET", "balances")["USDT"]["locked"] in ("0", "0.00", "0.0000")


def test_sigterm_leaves_open_orders_open_when_configured(live: Callable[..., Live]) -> None:
    session, run = resting_session(live, cancel=False)
    assert "cancelled" not in run.stderr
    assert [(o["clientOrderId"], o["status"]) for o in session.fake.orders()] == [("rbt-r1-1", "NEW")]
    assert not [r for r in session.fake.requests() if r["method"] == "DELETE"]
    journal = session.journal()
    [intent] = journal.intents()
    journal.close()
    assert (intent["state"], intent["status"], intent["exchange_id"]) == ("acknowledged", "accepted", "1000")
    assert_journal_matches_exchange(session, open_ids=("rbt-r1-1",))
    balances = session.fake.call("GET", "balances")
    assert (D(balances["USDT"]["free"]), D(balances["USDT"]["locked"])) == (CASH - 10, D(10))


def test_a_restart_adopts_an_open_order_without_sending_it_again(live: Callable[..., Live]) -> None:
    session, run = resting_session(live, cancel=False)
    second = session.run(max_bars=2)
    assert second.returncode == 0, second.stderr
    assert "1 orders open at the exchange since an earlier session are tracked again" in second.stderr
    assert "restored the algorithm's state" in second.stderr
    assert not algorithm_lines(second, "ORDER")  # `placed` was restored: the algorithm did not order again
    # still the one resting order, journal and exchange agree
    assert [p["params"]["newClientOrderId"] for p in session.fake.order_posts()] == ["rbt-r1-1"]
    assert [(o["clientOrderId"], o["status"]) for o in session.fake.orders()] == [("rbt-r1-1", "NEW")]
    assert_journal_matches_exchange(session, open_ids=("rbt-r1-1",))
    balances = session.fake.call("GET", "balances")
    assert (D(balances["USDT"]["free"]), D(balances["USDT"]["locked"])) == (CASH - 10, D(10))


def test_setup_errors_are_clear(live: Callable[..., Live], tmp_path: Path) -> None:
    session = live()

    def attempt(env: dict[str, str], *extra: str, symbols: str = SYMBOL) -> Run:
        argv = [a if a != SYMBOL else symbols for a in session.argv(max_bars=2, params={}, out=tmp_path / "err-out")]
        proc = subprocess.run([*argv, *extra], capture_output=True, text=True, env=env, timeout=60, cwd=session.folder)
        return Run(proc.returncode, proc.stdout, proc.stderr, tmp_path / "err-out", 0)

    bare = {k: v for k, v in session.env().items() if not k.startswith("RUSTYBT_API_")}
    missing = attempt(bare)
    assert missing.returncode == 2, missing.stderr
    assert "environment variable RUSTYBT_API_KEY (the API key) is not set" in missing.stderr

    for key, secret, refusal in (("wrong-key-abc", "wrong-secret-xyz", "Invalid API-key"),
                                 (API_KEY, "wrong-secret-xyz", "Signature for this request is not valid")):
        wrong = attempt({**bare, "RUSTYBT_API_KEY": key, "RUSTYBT_API_SECRET": secret})
        assert wrong.returncode == 4, wrong.stderr
        assert "error: broker: reading the account" in wrong.stderr and "AuthenticationError" in wrong.stderr
        assert refusal in wrong.stderr
        for text in (wrong.stdout, wrong.stderr):
            assert "wrong-secret-xyz" not in text and "wrong-key-abc" not in text

    unknown = attempt(session.env(), symbols="DOGE/USDT")
    assert unknown.returncode == 2, unknown.stderr
    assert "binance has no market 'DOGE/USDT'" in unknown.stderr

    replay = attempt(session.env(), "--feed", "replay:x.csv")
    assert replay.returncode == 2, replay.stderr
    assert "`--broker ccxt:binance` cannot trade on a replay file" in replay.stderr

    assert not [p for p in session.fake.order_posts()]
    assert "panicked" not in missing.stderr + unknown.stderr + replay.stderr


@pytest.mark.parametrize("endpoint", ["myTrades", "klines"])
def test_sigterm_during_an_exchange_request_stops_the_session(live: Callable[..., Live], endpoint: str) -> None:
    """The exchange holds the reply to one request for 3 s; SIGTERM arrives while the binary
    waits for it. The session must stop like after any SIGTERM: exit 0, 'stopped by signal'."""
    session = live()
    audit = session.state / "audit.jsonl"
    started = time.monotonic()
    proc, out = session.start(max_bars=14, buy_at=0, sell_at=0)
    try:
        wait_for("the second bar", lambda: audit.exists() and "BAR 2 " in audit.read_text())
        session.fake.inject(kind="delay", method="GET", path=endpoint, delay_s=3)
        wait_for(f"the held GET {endpoint}", lambda: [r for r in session.fake.requests() if r["fault"] == "delay"])
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        still_running = proc.poll() is None
        if still_running:
            proc.kill()
        run = finish(proc, out, started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lost = [e["fields"]["message"].splitlines()[-1] for e in audit_events(session.state)
            if e["kind"] == "log" and "KeyboardInterrupt" in e["fields"]["message"]]
    assert not still_running, f"still trading 5 s after SIGTERM; audit.jsonl: {lost}"
    assert run.returncode == 0, run.stderr[-600:]
    assert "live session ended (stopped by signal)" in run.stderr


def test_a_resting_limit_fills_in_parts(live: Callable[..., Live]) -> None:
    """A limit buy rests at the exchange; the market reaches it twice with less than its
    quantity each time: two fills, journaled and applied as they come, the order partially
    filled in between and filled after, the position net of the exchange's BTC fees."""
    session = live(algo=RESTING)

    def journal_fills() -> list[dict[str, Any]]:
        return running_journal_fills(session)

    def fill_in_parts() -> None:
        wait_for("the resting order at the exchange",
                 lambda: [o for o in session.fake.orders() if o["status"] == "NEW"])
        session.fake.call("POST", "advance", {"symbol": MARKET, "price": "63990.00", "qty": "0.004"})
        wait_for("the first part in the journal", lambda: len(journal_fills()) == 1)
        session.fake.call("POST", "advance", {"symbol": MARKET, "price": "63990.00", "qty": "0.006"})

    run = run_with(session, fill_in_parts, max_bars=8, limit="63990.00")
    assert run.returncode == 0, run.stderr
    [order] = session.fake.orders()
    assert (order["clientOrderId"], order["status"], order["executedQty"]) == ("rbt-r1-1", "FILLED", "0.01000000")
    fills = journal_fills()
    assert [(f["client_order_id"], D(f["quantity"]), D(f["price"]), f["fee_asset"]) for f in fills] == [
        ("rbt-r1-1", D("0.004"), D("63990"), "BTC"), ("rbt-r1-1", D("0.006"), D("63990"), "BTC")]
    rows = [r for r in csv.DictReader((run.out / "orders.csv").open()) if r["order_id"] == "1"]
    assert [(r["status"], r["fill_quantity"], r["filled_quantity"]) for r in rows] == [
        ("new", "", "0"), ("accepted", "", "0"),
        ("partially_filled", "0.004", "0.004"), ("filled", "0.006", "0.010")]
    assert_journal_matches_exchange(session)
