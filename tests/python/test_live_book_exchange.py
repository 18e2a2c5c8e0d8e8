"""`rustybt live --portfolio FILE --broker ccxt:binance`: a book of strategies trading ONE exchange
account, end to end on the binary, the real ccxt client and the fake Binance
(`tests/support/fake_binance.py`, the helpers of test_live_exchange.py). Nothing reaches the
internet.

Oracles: the fake's own record of orders, trades and balances (every fill of the account is one
trade at the exchange, each strategy's fills are exactly the trades of its own orders, the
account's balances are the genesis balance plus every trade), and, for restarts after `kill -9`,
the same book run without interruption.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections import Counter
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Callable

import pytest

from test_live_exchange import (  # noqa: F401  (fake_exchange is a fixture)
    CASH,
    FIXTURES,
    MARKET,
    STATUS,
    SYMBOL,
    Fake,
    Journal,
    Live,
    Run,
    expected_balances,
    fake_exchange,
    plain,
    wait_for,
    write_config,
)

FLIP = FIXTURES / "exchange_flip.py"

# alpha buys 0.01 at its bar 2 and sells 0.005 at bar 5; beta buys 0.004 at bar 3 and sells 0.002
# at bar 6; gamma buys 0.002 at bar 2 (the same bar as alpha: two orders on one symbol at one
# tick, each its own exchange order) and sells it all at bar 4.
STRATEGIES = {
    "alpha": {"buy_at": 2, "sell_at": 5, "buy_qty": "0.01", "sell_qty": "0.005"},
    "beta": {"buy_at": 3, "sell_at": 6, "buy_qty": "0.004", "sell_qty": "0.002"},
    "gamma": {"buy_at": 2, "sell_at": 4, "buy_qty": "0.002", "sell_qty": "0.002"},
}


def book_file(folder: Path, strategies: dict[str, dict[str, Any]]) -> Path:
    text = '[portfolio]\nallocator = "fixed"\n\n'  # equal weights
    for sid, params in strategies.items():
        params = dict(params)
        algo = params.pop("algo", FLIP)  # another algorithm than Flip
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
        text += f'[[strategy]]\nid = "{sid}"\nalgo = "{algo}"\nparams = {{ {inline} }}\n\n'
    path = folder / "book.toml"
    path.write_text(text)
    return path


class Book:
    """A live book on a fake exchange, with its state folder."""

    def __init__(self, binary: Path, fake: Fake, folder: Path, strategies: dict[str, dict[str, Any]],
                 config: dict[str, dict[str, Any]] | None = None):
        self.binary, self.fake, self.folder = binary, fake, folder
        self.state = folder / "state"
        self.strategies = strategies
        self.book = book_file(folder, strategies)
        self.config = write_config(folder, **(config or {}))
        self.runs = 0

    def argv(self, out: Path, max_bars: int | None, api: list[str] | None = None) -> list[str]:
        argv = [str(self.binary), "live", "--portfolio", str(self.book), "--broker", "ccxt:binance",
                "--symbols", SYMBOL, "--timeframe", "1s", "--exchange-url", self.fake.url,
                "--state", str(self.state), "--out", str(out), "--config", str(self.config), "-q"]
        if max_bars is not None:
            argv += ["--max-bars", str(max_bars)]
        return argv + (api or [])

    env = Live.env  # the exchange's credentials, a crash point

    def next_out(self) -> Path:
        self.runs += 1
        return self.folder / f"out{self.runs}"

    def run(self, *, max_bars: int | None = 8, crash: str | None = None, timeout: float = 60) -> Run:
        out = self.next_out()
        started = time.monotonic()
        proc = subprocess.run(self.argv(out, max_bars), capture_output=True, text=True, timeout=timeout,
                              env=self.env(crash), cwd=self.folder)
        for marker in ("panicked", "RUST_BACKTRACE"):
            assert marker not in proc.stderr, proc.stderr
        return Run(proc.returncode, proc.stdout, proc.stderr, out, time.monotonic() - started)

    def start(self, *, max_bars: int | None = None, api: list[str] | None = None,
              **env: str) -> tuple[subprocess.Popen[str], Path]:
        out = self.next_out()
        proc = subprocess.Popen(self.argv(out, max_bars, api), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env(**env), cwd=self.folder)
        return proc, out

    def journal(self) -> Journal:
        return Journal(self.state / "journal.sqlite")


@pytest.fixture
def book(binary: Path, fake_exchange: Callable[..., Fake], tmp_path: Path) -> Callable[..., Book]:
    def make(strategies: dict[str, dict[str, Any]] = STRATEGIES, config: dict[str, dict[str, Any]] | None = None,
             **fake_kwargs: Any) -> Book:
        folder = tmp_path / f"book{len(list(tmp_path.glob('book*')))}"
        folder.mkdir()
        return Book(binary, fake_exchange(**fake_kwargs), folder, strategies, config)

    return make


def flip_lines(run: Run, sid: str, word: str) -> list[str]:
    """`word` lines (ORDER, FILL, BAR…) strategy `sid` logged (the book's log names it)."""
    path = run.out / "log.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split(f" {sid}: {word} ")[1] for line in lines if f" {sid}: {word} " in line]


def strategy_books(journal: Journal) -> dict[str | None, dict[str, Any]]:
    """The last book snapshot of the account (None) and of each strategy."""
    rows = journal.rows("SELECT strategy, book FROM book_snapshots WHERE id IN "
                        "(SELECT MAX(id) FROM book_snapshots GROUP BY strategy)")
    return {r["strategy"]: json.loads(r["book"]) for r in rows}


def own_balances(fills: list[dict[str, Any]], cash: D) -> dict[str, D]:
    """A strategy's book from its capital and its own fills, as the exchange charges them (a buy's
    fee in BTC, a sell's in USDT): {cash, BTC}."""
    usdt, btc = cash, D(0)
    for f in fills:
        qty, price, fee = D(f["quantity"]), D(f["price"]), D(f["fee"])
        usdt += -qty * price if f["side"] == "buy" else qty * price
        btc += qty if f["side"] == "buy" else -qty
        if f["fee_asset"] in ("USDT", None):  # None: an internal fill (no fee)
            usdt -= fee
        else:
            btc -= fee
    return {"cash": usdt, "BTC": btc}


def assert_book_matches_exchange(bk: Book, *, clean: bool = True, moved: bool = False) -> dict[str, Any]:
    """The journal against the fake, for a whole book: one exchange order per client id and per
    strategy order, the fills exactly the exchange's trades, each fill carrying the strategy of
    its order, the account's balances equal to the journal's book (the genesis balance plus every
    trade), every strategy's snapshot equal to its capital plus its own fills (unless cash `moved`
    between them), the account's the sum of the strategies', and the last reconciliation clean."""
    fake, journal = bk.fake, bk.journal()
    every = {i["client_order_id"]: i for i in journal.intents()}
    legs = {cid: journal.rows("SELECT strategy FROM order_legs WHERE client_order_id = ?", cid) for cid in every}
    # every order is a strategy's, or a netted one's with two or more strategies as its legs
    assert all(i["strategy"] in bk.strategies if i["strategy"] else len(legs[cid]) >= 2
               for cid, i in every.items()), every
    # orders the book filled inside (a hand-over, the crossed part of a netted order) never
    # went to the exchange
    intents = {cid: i for cid, i in every.items() if not (i["exchange_id"] or "").startswith(("paper-", "crossed-"))}
    orders = {o["clientOrderId"]: o for o in fake.orders()}
    assert Counter(o["clientOrderId"] for o in fake.orders()).most_common(1)[0][1] == 1
    assert set(orders) == set(intents), (list(orders), list(intents))
    for cid, intent in intents.items():
        order = orders[cid]
        assert (intent["side"], intent["quantity"]) == (order["side"].lower(), plain(order["origQty"]))
        assert intent["status"] == STATUS[order["status"]], (intent, order)
    ids = {str(o["orderId"]): o["clientOrderId"] for o in orders.values()}
    theirs = sorted((ids[str(t["orderId"])], str(t["id"]), plain(t["qty"]), plain(t["price"]), plain(t["commission"]),
                     t["commissionAsset"]) for t in fake.trades() if str(t["orderId"]) in ids)
    fills = journal.fills()
    mine = sorted((f["client_order_id"], f["trade_id"], f["quantity"], f["price"], f["fee"], f["fee_asset"])
                  for f in fills if f["client_order_id"] in intents)
    assert mine == theirs
    for f in fills:
        assert f["strategy"] == every[f["client_order_id"]]["strategy"], f
    # a strategy's fills: its own orders' and its shares of netted orders' (quantity and fee
    # replaced by its share)
    shares = journal.rows("SELECT s.strategy, s.quantity, s.fee, f.side, f.price, f.fee_asset, f.client_order_id "
                          "FROM fill_shares s JOIN fills f ON f.id = s.fill_id ORDER BY f.id, s.rowid")
    for f in fills:
        split = journal.rows("SELECT quantity, fee FROM fill_shares WHERE fill_id = ?", f["id"])
        if f["strategy"] is None:
            assert sum(D(x["quantity"]) for x in split) == D(f["quantity"]), f
            assert sum(D(x["fee"]) for x in split) == D(f["fee"]), f
        else:
            assert split == [], f
    own_fills = [f for f in fills if f["strategy"]] + shares
    # the account: the exchange's balances are the genesis balance plus every trade
    expected = expected_balances([f for f in fills if f["client_order_id"] in intents],
                                 journal.rows("SELECT * FROM adjustments ORDER BY id"))
    internal = own_balances([f for f in fills if f["client_order_id"] not in intents], D(0))
    assert internal == {"cash": 0, "BTC": 0}, internal  # a hand-over moves nothing out of the account
    assert fake.totals() == expected
    books = strategy_books(journal)
    account = books.pop(None)
    assert D(account["cash"]) == expected["USDT"], account
    assert {k: D(v) for k, v in account["positions"].items() if D(v)} == (
        {SYMBOL: expected["BTC"]} if "BTC" in expected else {})
    # each strategy: its capital (an equal share of the account's balance) plus its own fills;
    # their sum is the account
    capitals = {}
    for sid in bk.strategies:
        own = own_balances([f for f in own_fills if f["strategy"] == sid], D(0))
        capitals[sid] = D(books[sid]["cash"]) - own["cash"]
        if not moved:
            assert abs(capitals[sid] - CASH / len(bk.strategies)) < D("0.01"), capitals
        assert D(books[sid]["positions"].get(SYMBOL, "0")) == own["BTC"], (sid, books[sid], own)
    assert sum(capitals.values()) == CASH, capitals
    assert sum(D(b["cash"]) for b in books.values()) == D(account["cash"])
    assert sum(D(b["positions"].get(SYMBOL, "0")) for b in books.values()) == D(
        account["positions"].get(SYMBOL, "0"))
    if clean:
        recs = journal.rows("SELECT outcome, report FROM reconciliations ORDER BY id")
        assert recs and recs[-1]["outcome"] == "clean", recs[-1]["report"]
    journal.close()
    return {"intents": intents, "orders": orders, "fills": fills, "books": books, "account": account}


# ------------------------------------------------------------------------------- tests


def test_three_strategies_trade_one_account_and_each_gets_its_own_fills(book: Callable[..., Book]) -> None:
    bk = book()
    run = bk.run(max_bars=8)
    assert run.returncode == 0, run.stderr
    assert "one account at ccxt:binance" in run.stderr
    seen = assert_book_matches_exchange(bk)
    by_strategy = sorted((i["strategy"], i["side"], i["quantity"], i["status"]) for i in seen["intents"].values())
    assert by_strategy == [
        ("alpha", "buy", "0.01", "filled"), ("alpha", "sell", "0.005", "filled"),
        ("beta", "buy", "0.004", "filled"), ("beta", "sell", "0.002", "filled"),
        ("gamma", "buy", "0.002", "filled"), ("gamma", "sell", "0.002", "filled"),
    ]
    # on_fill reached the strategy that placed the order, and only it
    for sid, p in bk.strategies.items():
        fills = flip_lines(run, sid, "FILL")
        assert [line.split()[:2] for line in fills] == [["buy", p["buy_qty"]], ["sell", p["sell_qty"]]], (sid, fills)
        journal_fills = [f for f in seen["fills"] if f["strategy"] == sid]
        assert [f"{f['side']} {f['quantity']} {f['price']}" for f in journal_fills] == fills
    # each strategy's results hold its own fills, the exchange's prices exactly
    for sid in bk.strategies:
        rows = run.results(f"strategies/{sid}/fills.csv")
        own = [f for f in seen["fills"] if f["strategy"] == sid]
        assert [(r["side"], r["qty"], r["price"]) for r in rows] == [(f["side"], f["quantity"], f["price"]) for f in own]


def positions_and_orders(seen: dict[str, Any]) -> tuple[dict[str, D], list[tuple[str, str, str, str]]]:
    positions = {sid: D(b["positions"].get(SYMBOL, "0")) for sid, b in seen["books"].items()}
    orders = sorted((i["strategy"], i["side"], i["quantity"], i["status"]) for i in seen["intents"].values())
    return positions, orders


@pytest.mark.parametrize("point", ["before_send", "after_send", "after_fill"])
def test_kill_9_at_a_crash_point_then_restart_ends_as_an_uninterrupted_book(
        book: Callable[..., Book], point: str) -> None:
    # the oracle: the same book, uninterrupted, on its own fake account
    whole = book()
    ran = whole.run(max_bars=8)
    assert ran.returncode == 0, ran.stderr
    expected = positions_and_orders(assert_book_matches_exchange(whole))
    # killed at the first order (alpha's, at bar 2; gamma's of the same bar is not sent yet)
    bk = book()
    first = bk.run(max_bars=8, crash=point)
    assert first.returncode == -signal.SIGKILL, (first.returncode, first.stderr)
    journal = bk.journal()
    intents = journal.intents()
    journal.close()
    posted = [p["params"]["newClientOrderId"] for p in bk.fake.order_posts()]
    assert intents[0]["strategy"] == "alpha", intents
    if point == "before_send":
        assert (intents[0]["state"], posted) == ("sent", [])
    elif point == "after_send":
        assert (intents[0]["state"], intents[0]["exchange_id"], posted) == ("sent", None, [intents[0]["client_order_id"]])
    else:
        assert (intents[0]["state"], intents[0]["status"]) == ("final", "filled")
    second = bk.run(max_bars=6)
    assert second.returncode == 0, second.stderr
    assert "HALTED" not in second.stderr
    seen = assert_book_matches_exchange(bk)
    # nothing lost, nothing doubled: every strategy ends with the uninterrupted book's position
    # and orders (its cash is its capital plus its own fills, checked above)
    assert positions_and_orders(seen) == expected
    if point != "after_fill":
        assert f"order {intents[0]['client_order_id']} resolved by client id: filled (0.01 filled)" in second.stderr
    assert "strategy `alpha`: restored the algorithm's state" in second.stderr


def test_a_mismatch_with_the_account_is_found_at_the_book_level_and_halts(book: Callable[..., Book]) -> None:
    """0.5 BTC deposited behind the book's back: the account (every strategy summed) no longer
    matches the exchange; with `critical = "halt"` the breaker trips and later orders of every
    strategy are refused."""
    # The deposit comes after every strategy's buy has filled (bars 2 and 3), and the sells late
    # (bars 9 to 11): a reconciliation (every 2 s) finds it in between, however loaded the
    # machine. Depositing at the first fill let a reconciliation refuse beta's buy under load.
    late = {sid: {**p, "sell_at": 9 + k} for k, (sid, p) in enumerate(STRATEGIES.items())}
    bk = book(late, config={"reconcile": {"critical": "halt", "minor": "sync"}})
    proc, out = bk.start(max_bars=12)
    wait_for("every strategy's buy filled", lambda: len(bk.fake.trades()) >= len(STRATEGIES), timeout=30)
    bk.fake.call("POST", "balances", {"asset": "BTC", "delta": "0.5"})
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "HALTED: reconciliation breaker tripped" in stderr
    journal = bk.journal()
    [halted] = [json.loads(r["report"]) for r in journal.rows(
        "SELECT report FROM reconciliations WHERE outcome = 'halted' ORDER BY id LIMIT 1")]
    [d] = [d for d in halted["discrepancies"] if d["kind"] == "position"]
    # the book's side is the account: every strategy's position summed at that time
    fills_then = [f for f in journal.fills() if f["time"] <= halted["time"]]
    assert (d["symbol"], d["severity"], d["action"]) == (SYMBOL, "critical", "halt")
    assert D(d["broker"]) - D(d["engine"]) == D("0.5")
    assert D(d["engine"]) == sum(own_balances([f for f in fills_then if f["strategy"] == sid], D(0))["BTC"]
                                 for sid in bk.strategies)
    assert journal.rows("SELECT breaker FROM breaker_events WHERE event = 'trip'") == [{"breaker": "reconciliation"}]
    journal.close()
    # after the trip nothing more was journaled or sent; every strategy's later order was refused
    assert journal_intents_after_halt(bk) == []
    refused = {sid: [r["side"] for r in Run(0, "", "", out, 0).results(f"strategies/{sid}/orders.csv")
                     if r["reason"].startswith("trading halted: reconciliation breaker tripped")]
               for sid in bk.strategies}
    assert refused == {"alpha": ["sell"], "beta": ["sell"], "gamma": ["sell"]}, refused


def journal_intents_after_halt(bk: Book) -> list[dict[str, Any]]:
    journal = bk.journal()
    try:
        [trip] = journal.rows("SELECT time FROM breaker_events WHERE event = 'trip'")
        return journal.rows("SELECT * FROM intents WHERE created_at > ?", trip["time"])
    finally:
        journal.close()


def test_stop_with_close_sends_an_exchange_order_and_hand_over_sends_none(book: Callable[..., Book],
                                                                          tmp_path: Path) -> None:
    """Through the control API: `alpha` stopped with its position closed (a real sell at the
    exchange), `beta` stopped with its position handed over to `gamma` (two internal fills at
    the last close, no exchange order). The exchange sees the three buys and one sell; the
    journal's account still matches it, and each strategy's book is its own fills."""
    from test_live_api import Api, token_file
    holders = {sid: {**p, "sell_at": 0} for sid, p in STRATEGIES.items()}
    bk = book(holders)
    proc, out = bk.start(max_bars=40, api=["--api", "127.0.0.1:0", "--api-token-file", str(token_file(tmp_path)),
                                             "--api-rate-limit", "1000"])
    api = Api(proc)
    try:
        wait_for("running", lambda: api.get("/status")["phase"] == "running", timeout=60)
        listing = wait_for("every strategy's buy", lambda: (l := api.get("/strategies")) and all(
            any(D(p["quantity"]) > 0 for p in s["positions"]) for s in l["strategies"]) and l, timeout=40)
        held = {s["id"]: sum(D(p["quantity"]) for p in s["positions"]) for s in listing["strategies"]}
        assert held == {"alpha": D("0.00999"), "beta": D("0.003996"), "gamma": D("0.001998")}
        reply = api.json("POST", "/strategies/alpha/stop", {"positions": "close"})
        [closing] = reply["closing_orders"]
        assert (closing["side"], D(closing["quantity"])) == ("sell", D("0.00999"))
        wait_for("alpha's close at the exchange", lambda: len(bk.fake.trades()) == 4, timeout=30)
        wait_for("alpha flat", lambda: not next(s for s in api.get("/strategies")["strategies"]
                                                 if s["id"] == "alpha")["positions"], timeout=30)
        posts = len(bk.fake.order_posts())
        reply = api.json("POST", "/strategies/beta/stop", {"positions": "hand_over", "to": "gamma"})
        assert {(h["strategy"], h["side"]) for h in reply["handed_over"]} == {("beta", "sell"), ("gamma", "buy")}
        after = {s["id"]: s for s in api.get("/strategies")["strategies"]}
        assert not after["beta"]["positions"]
        assert sum(D(p["quantity"]) for p in after["gamma"]["positions"]) == D("0.003996") + D("0.001998")
        assert len(bk.fake.order_posts()) == posts  # nothing went to the exchange
        # the account reconciles on demand, clean: the hand-over changed nothing there
        assert api.json("POST", "/reconcile")["outcome"] == "clean"
        assert api.get("/status")["reconciliation"]["outcome"] == "clean"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    orders = sorted((o["side"], o["origQty"]) for o in bk.fake.orders())
    assert orders == [("BUY", "0.00200000"), ("BUY", "0.00400000"), ("BUY", "0.01000000"), ("SELL", "0.00999000")]
    seen = assert_book_matches_exchange(bk, moved=True)
    assert D(seen["books"]["alpha"]["positions"].get(SYMBOL, "0")) == 0
    assert D(seen["books"]["beta"]["positions"].get(SYMBOL, "0")) == 0 and D(seen["books"]["beta"]["cash"]) == 0
    assert D(seen["books"]["gamma"]["positions"][SYMBOL]) == D("0.005994")
    internal = [(f["strategy"], f["side"], f["quantity"], f["fee"]) for f in seen["fills"]
                if f["client_order_id"] not in seen["intents"]]
    assert internal == [("beta", "sell", "0.003996", "0"), ("gamma", "buy", "0.003996", "0")]


def hamilton(weights: list[D], total: D, dp: int, capped: bool) -> list[D]:
    """The documented allocation rule (docs/portfolio.md, "Order netting"), written afresh as the
    oracle: each share weight × total / Σweights rounded down to `dp` decimals, then one unit each
    to the largest remainders (earlier first among equals), never past a weight when `capped`."""
    unit = D(1).scaleb(-dp)
    exact = [w * total / sum(weights) for w in weights]
    shares = [e.quantize(unit, rounding="ROUND_DOWN") for e in exact]
    left = total - sum(shares)
    for k in sorted(range(len(weights)), key=lambda k: (-(exact[k] - shares[k]), k)):
        if left < unit:
            break
        if not capped or shares[k] + unit <= weights[k]:
            shares[k] += unit
            left -= unit
    return shares


def assert_split_by_the_rule(journal: Journal, fills: list[dict[str, Any]],
                             wanted: dict[str, D]) -> list[list[tuple[str, D]]]:
    """Each fill of a netted order (in journal order) split over what each leg still `wanted`
    by the rule, its fee too, the shares summing to it exactly; returns the quantity shares."""
    wanted = dict(wanted)
    got = []
    for f in fills:
        shares = journal.rows("SELECT strategy, quantity, fee FROM fill_shares WHERE fill_id = ? ORDER BY rowid",
                              f["id"])
        qty = hamilton(list(wanted.values()), D(f["quantity"]), 3, True)
        fees = hamilton(qty, D(f["fee"]), -D(f["fee"]).as_tuple().exponent, False)
        expected = [(sid, q, fee) for sid, q, fee in zip(wanted, qty, fees) if q or fee]
        assert [(s["strategy"], D(s["quantity"]), D(s["fee"])) for s in shares] == expected, (f, shares)
        assert sum(D(s["quantity"]) for s in shares) == D(f["quantity"])
        assert sum(D(s["fee"]) for s in shares) == D(f["fee"])
        for sid, q in zip(wanted, qty):
            wanted[sid] -= q
        got.append([(s["strategy"], D(s["quantity"])) for s in shares])
    return got


def test_a_netted_order_and_its_partial_fills_are_split_exactly(book: Callable[..., Book]) -> None:
    """At bar 3 `a` buys 0.009, `b` buys 0.003 and `c` sells 0.004 (it bought 0.005 at bar 1):
    0.004 crosses inside the book at the last close (a 0.003, b 0.001: netting's rule), one
    exchange order buys the net 0.008 (legs a 0.006, b 0.002); the exchange fills it in two parts
    (0.005, 0.002) and expires the rest. Each part is split between a and b by the rule, fees
    too, exactly; a's order ends expired with 0.008 filled, b's filled."""
    strategies = {
        "a": {"buy_at": 3, "sell_at": 0, "buy_qty": "0.009", "sell_qty": "0"},
        "b": {"buy_at": 3, "sell_at": 0, "buy_qty": "0.003", "sell_qty": "0"},
        "c": {"buy_at": 1, "sell_at": 3, "buy_qty": "0.005", "sell_qty": "0.004"},
    }
    bk = book(strategies)
    proc, out = bk.start(max_bars=6)
    wait_for("c's first buy", lambda: bk.fake.trades(), timeout=30)
    bk.fake.call("POST", "fill_plan", {"symbol": MARKET, "chunks": ["0.005", "0.002"]})
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    run = Run(proc.returncode, "", stderr, out, 0)
    seen = assert_book_matches_exchange(bk)
    # the exchange saw c's buy and one netted buy of 0.008, which filled 0.005 + 0.002
    orders = list(seen["orders"].values())
    assert [(o["side"], o["origQty"], o["executedQty"], o["status"]) for o in orders] == [
        ("BUY", "0.00500000", "0.00500000", "FILLED"), ("BUY", "0.00800000", "0.00700000", "EXPIRED")]
    netted = orders[1]["clientOrderId"]
    journal = bk.journal()
    legs = journal.rows("SELECT strategy, quantity FROM order_legs WHERE client_order_id = ?", netted)
    assert [(leg["strategy"], leg["quantity"]) for leg in legs] == [("a", "0.006"), ("b", "0.002")]
    # the crossed part: internal fills at bar 3's close, no fee, never sent
    close3 = D(flip_lines(run, "a", "BAR")[2].split(" close ")[1])
    crossed = [(f["strategy"], f["side"], f["quantity"], D(f["price"]), f["fee"]) for f in seen["fills"]
               if f["client_order_id"] not in seen["intents"]]
    assert crossed == [("a", "buy", "0.003", close3, "0"), ("b", "buy", "0.001", close3, "0"),
                       ("c", "sell", "0.004", close3, "0")]
    assert [D(q) for q in hamilton([D("0.009"), D("0.003")], D("0.004"), 3, True)] == [D("0.003"), D("0.001")]
    # each exchange fill of the netted order split by the rule, in journal order
    wanted = {"a": D("0.006"), "b": D("0.002")}
    fills = journal.rows("SELECT id, quantity, fee FROM fills WHERE client_order_id = ? ORDER BY id", netted)
    assert [f["quantity"] for f in fills] == ["0.005", "0.002"]
    got = assert_split_by_the_rule(journal, fills, wanted)
    assert got == [[("a", D("0.004")), ("b", D("0.001"))], [("a", D("0.001")), ("b", D("0.001"))]]
    journal.close()
    # every strategy's own view: a got 0.008 of 0.009 (the rest expired), b all of 0.003
    a_fills = [line.split()[:2] for line in flip_lines(run, "a", "FILL")]
    b_fills = [line.split()[:2] for line in flip_lines(run, "b", "FILL")]
    assert sorted(a_fills) == sorted([["buy", "0.003"], ["buy", "0.004"], ["buy", "0.001"]])
    assert sorted(b_fills) == sorted([["buy", "0.001"], ["buy", "0.001"], ["buy", "0.001"]])
    last = {sid: run.results(f"strategies/{sid}/orders.csv")[-1] for sid in ("a", "b")}
    assert (last["a"]["status"], last["a"]["filled_quantity"]) == ("expired", "0.008")
    assert (last["b"]["status"], last["b"]["filled_quantity"]) == ("filled", "0.003")
    # the books: a and b hold what they got less the BTC fees of their shares
    books = seen["books"]
    assert D(books["a"]["positions"][SYMBOL]) == D("0.008") - D("0.000005")
    assert D(books["b"]["positions"][SYMBOL]) == D("0.003") - D("0.000002")
    assert D(books["c"]["positions"][SYMBOL]) == D("0.005") - D("0.000005") - D("0.004")


NETTED = {
    "a": {"buy_at": 3, "sell_at": 0, "buy_qty": "0.009", "sell_qty": "0"},
    "b": {"buy_at": 3, "sell_at": 0, "buy_qty": "0.003", "sell_qty": "0"},
    "c": {"buy_at": 0, "sell_at": 3, "buy_qty": "0", "sell_qty": "0.004"},
}


def netted_run(bk: Book, *, crash: str | None = None, max_bars: int = 6) -> Run:
    bk.fake.call("POST", "fill_plan", {"symbol": MARKET, "chunks": ["0.005", "0.002"]})
    return bk.run(max_bars=max_bars, crash=crash)


@pytest.mark.parametrize("point", ["before_send", "after_send", "after_fill"])
def test_kill_9_around_a_netted_order_then_restart_splits_every_fill(book: Callable[..., Book], point: str) -> None:
    """The netted order of bar 3 (a 0.006 + b 0.002 of a net 0.008, c's 0.004 crossed inside) is
    the first exchange order; the process dies at `point`. The restart resolves it by client id,
    journals the fills made meanwhile, each split between a and b as the journal says, and every
    strategy ends as in the uninterrupted book."""
    whole = book(NETTED)
    ran = netted_run(whole)
    assert ran.returncode == 0, ran.stderr
    expected = positions_and_orders(assert_book_matches_exchange(whole))
    assert expected[0] == {"a": D("0.008") - D("0.000005"), "b": D("0.003") - D("0.000002"), "c": D("-0.004")}
    bk = book(NETTED)
    first = netted_run(bk, crash=point)
    assert first.returncode == -signal.SIGKILL, (first.returncode, first.stderr)
    second = bk.run(max_bars=3)
    assert second.returncode == 0, second.stderr
    assert "HALTED" not in second.stderr
    seen = assert_book_matches_exchange(bk)
    assert positions_and_orders(seen) == expected
    journal = bk.journal()
    shares = journal.rows("SELECT s.strategy, s.quantity FROM fill_shares s JOIN fills f ON f.id = s.fill_id "
                          "ORDER BY f.id, s.rowid")
    journal.close()
    assert [(s["strategy"], s["quantity"]) for s in shares] == [("a", "0.004"), ("b", "0.001"), ("a", "0.001"),
                                                                ("b", "0.001")]


LINKED = """
from decimal import Decimal
from rustybt_api import Algorithm, OrderError

class Linked(Algorithm):
    def initialize(self, ctx):
        self.n = 0

    def on_tick(self, ctx):
        self.n += 1
        if self.n != 2:
            return
        self.bracket("BTC/USDT", "buy", Decimal("0.01"), limit=Decimal("60000"),
                     take_profit=Decimal("70000"), stop_loss=Decimal("50000"))
        single = self.buy("BTC/USDT", Decimal("0.001"), limit=Decimal("60000"))
        try:
            single.modify(price=Decimal("60001"))
        except OrderError as e:
            self.log.info(f"MODIFY refused: {e}")
"""


def test_linked_orders_are_refused_on_an_exchange_book_and_single_ones_go_out(book: Callable[..., Book],
                                                                             tmp_path: Path) -> None:
    """A strategy's bracket (entry and both exits) is rejected with the exchange broker's reason,
    nothing of it journaled or sent; its single limit order goes out; modifying an order at the
    exchange is refused; the other strategy trades as usual."""
    linked = tmp_path / "linked.py"
    linked.write_text(LINKED)
    bk = book({"flip": STRATEGIES["alpha"], "linked": {"algo": str(linked)}})
    run = bk.run(max_bars=6)
    assert run.returncode == 0, run.stderr
    assert "MODIFY refused: an order at an exchange cannot be modified in place" in (run.out / "log.txt").read_text()
    final: dict[str, dict[str, str]] = {}
    for row in run.results("strategies/linked/orders.csv"):
        final[row["order_id"]] = row
    rejected = [r for r in final.values() if r["status"] == "rejected"]
    assert len(rejected) == 3, final
    assert all(r["reason"].startswith("brackets and OCO groups are paper-only") for r in rejected), rejected
    seen = assert_book_matches_exchange(bk)
    linked_orders = [(i["side"], i["quantity"], i["order_type"]) for i in seen["intents"].values()
                     if i["strategy"] == "linked"]
    assert linked_orders == [("buy", "0.001", "limit")]
    assert sorted(o["clientOrderId"] for o in seen["orders"].values()) == sorted(seen["intents"])


def test_a_strategy_added_through_the_api_trades_on_the_account(book: Callable[..., Book], tmp_path: Path) -> None:
    """`POST /strategies` on an exchange book: the added strategy, funded from alpha's cash,
    trades from the next bar on the same account; its order carries its id, its fill reaches
    it only, and the account still matches the exchange."""
    from test_live_api import Api, token_file
    holders = {sid: {**STRATEGIES[sid], "sell_at": 0} for sid in ("alpha", "gamma")}
    bk = book(holders)
    proc, out = bk.start(max_bars=40, api=["--api", "127.0.0.1:0", "--api-token-file", str(token_file(tmp_path)),
                                             "--api-rate-limit", "1000"])
    api = Api(proc)
    try:
        wait_for("running", lambda: api.get("/status")["phase"] == "running", timeout=60)
        wait_for("the two buys", lambda: len(bk.fake.trades()) == 2, timeout=40)
        params = {"buy_at": 2, "sell_at": 0, "buy_qty": "0.003", "sell_qty": "0"}
        reply = api.json("POST", "/strategies", {"id": "delta", "algo": str(FLIP), "capital": "1000",
                                                 "from": "alpha", "params": params})
        assert (reply["id"], reply["state"], reply["capital"]) == ("delta", "running", "1000")
        bk.strategies = {**holders, "delta": params}
        wait_for("delta's buy at the exchange", lambda: len(bk.fake.trades()) == 3, timeout=40)
        wait_for("delta's position", lambda: any(
            s["id"] == "delta" and s["positions"] for s in api.get("/strategies")["strategies"]), timeout=30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seen = assert_book_matches_exchange(bk, moved=True)
    assert sorted((i["strategy"], i["quantity"]) for i in seen["intents"].values()) == [
        ("alpha", "0.01"), ("delta", "0.003"), ("gamma", "0.002")]
    assert D(seen["books"]["delta"]["positions"][SYMBOL]) == D("0.003") - D("0.000003")
    log = (out / "log.txt").read_text()
    assert [line.split(" delta: FILL ")[1].split()[:2] for line in log.splitlines() if " delta: FILL " in line] == [
        ["buy", "0.003"]]


# the strategies buy at bars 2 and 3 and hold (their sells are far beyond the sessions' bars)
HOLD = {sid: {**p, "sell_at": 90} for sid, p in STRATEGIES.items()}
MINOR_SYNC = {"reconcile": {"minor": "sync", "critical": "halt", "position_absolute": "0.01",
                            "balance_absolute": "10"}}


def journal_position(fills: list[dict[str, Any]], shares: list[dict[str, Any]], sid: str, upto: int) -> D:
    """A strategy's BTC from the journal alone: its fills up to fill row `upto` and its earlier
    adjustment shares."""
    own = own_balances([f for f in fills if f["strategy"] == sid and f["id"] <= upto], D(0))["BTC"]
    return own + sum((D(s["delta"]) for s in shares if s["strategy"] == sid), D(0))


def account_sums(bk: Book) -> dict[str, Any]:
    """The last checkpoint: each strategy's cash and BTC, the book's reserve, and their sums."""
    journal = bk.journal()
    try:
        books = strategy_books(journal)
        [state] = journal.rows("SELECT state FROM book_states ORDER BY id DESC LIMIT 1")
    finally:
        journal.close()
    account = books.pop(None)
    reserve = D(json.loads(state["state"])["reserve"])
    each = {sid: (D(b["cash"]), D(b["positions"].get(SYMBOL, "0"))) for sid, b in books.items()}
    return {"each": each, "reserve": reserve, "account": account,
            "cash": sum((c for c, _ in each.values()), D(0)) + reserve,
            "BTC": sum((q for _, q in each.values()), D(0))}


@pytest.mark.parametrize("point", ["after_adjustment", "after_checkpoint"])
def test_an_adopted_difference_is_attributed_and_survives_kill_9(book: Callable[..., Book], point: str) -> None:
    """0.0017 BTC and 7.25 USDT deposited behind the book's back, minor, adopted with `sync`: the
    USDT goes to the book's reserve, the BTC to the strategies holding BTC in proportion to their
    positions (netting's rule), in the adjustment's transaction. Every strategy's ledger plus the
    reserve is then exactly the exchange's account. The process dies right after the adoption is
    journaled (`after_adjustment`: nothing applied in memory, no checkpoint since) or after a
    checkpoint that has it; the restart re-derives the same per-strategy figures from the
    journal and adopts nothing twice."""
    bk = book(HOLD, config=MINOR_SYNC)
    proc, _ = bk.start(max_bars=60, crash=point if point == "after_adjustment" else None)
    wait_for("the three buys", lambda: len(bk.fake.trades()) >= 3, timeout=30)
    bk.fake.call("POST", "balances", {"asset": "BTC", "delta": "0.0017"})
    bk.fake.call("POST", "balances", {"asset": "USDT", "delta": "7.25"})

    def adopted_and_checkpointed() -> bool:
        journal = bk.journal()
        try:
            adj = journal.rows("SELECT COALESCE(MAX(id), 0) AS n FROM adjustments")[0]["n"]
            snap = journal.rows("SELECT COALESCE(MAX(last_adjustment_id), 0) AS n FROM book_snapshots")[0]["n"]
            return bool(adj >= 2 and snap >= adj)
        finally:
            journal.close()

    before = None
    if point == "after_checkpoint":
        wait_for("the adoption and a checkpoint after it", adopted_and_checkpointed, timeout=40)
        before = account_sums(bk)
        proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr
    totals = bk.fake.totals()
    if before is not None:
        # the strategies plus the reserve are the exchange's account, exactly
        assert (before["cash"], before["BTC"]) == (totals["USDT"], totals["BTC"]), (before, totals)
        assert before["reserve"] == D("7.25")
        assert "adopted position BTC/USDT +" in stderr and "to the book's reserve" in stderr, stderr
    journal = bk.journal()
    adjustments = journal.rows("SELECT id, target, delta FROM adjustments ORDER BY id")
    assert [(a["target"], D(a["delta"])) for a in adjustments] == [("position", D("0.0017")), ("cash", D("7.25"))]
    shares = journal.rows("SELECT adjustment_id, strategy, delta, after_fill_id FROM adjustment_shares ORDER BY id")
    fills = journal.fills()
    # the cash to the reserve, whole
    assert [(s["strategy"], D(s["delta"])) for s in shares if s["adjustment_id"] == adjustments[1]["id"]] == [
        (None, D("7.25"))]
    # the BTC split between the holders at that point of the journal, by the documented rule
    position_shares = [s for s in shares if s["adjustment_id"] == adjustments[0]["id"]]
    upto = position_shares[0]["after_fill_id"]
    held = {sid: journal_position(fills, [], sid, upto) for sid in HOLD}
    held = {sid: q for sid, q in held.items() if q}
    assert set(held) == {"alpha", "beta", "gamma"}, held
    dp = max(-q.normalize().as_tuple().exponent for q in [*held.values(), D("0.0017")])
    split = hamilton(list(held.values()), D("0.0017"), dp, False)
    assert [(s["strategy"], D(s["delta"])) for s in position_shares] == [
        (sid, q) for sid, q in zip(held, split) if q]
    assert sum(D(s["delta"]) for s in position_shares) == D("0.0017")
    # the reconciliation's report says who got what, as journaled
    [synced] = [json.loads(r["report"]) for r in journal.rows(
        "SELECT report FROM reconciliations WHERE outcome = 'synced'")]
    assert [(a["strategy"], D(str(a["delta"]))) for a in synced["attribution"]] == [
        (s["strategy"], D(s["delta"])) for s in shares]
    journal.close()
    # the restart: nothing adopted twice, each strategy's figures re-derived from the journal
    again = bk.run(max_bars=2)
    assert again.returncode == 0, again.stderr
    assert "HALTED" not in again.stderr
    after = account_sums(bk)
    assert (after["cash"], after["BTC"]) == (totals["USDT"], totals["BTC"]), (after, totals)
    assert bk.fake.totals() == totals
    assert after["reserve"] == D("7.25")
    for sid, (_, btc) in after["each"].items():
        assert btc == journal_position(fills, shares, sid, 10**9), sid
    if before is not None:
        assert after["each"] == before["each"], (before, after)
    journal = bk.journal()
    assert len(journal.rows("SELECT id FROM adjustments")) == 2
    recs = journal.rows("SELECT outcome FROM reconciliations ORDER BY id")
    assert recs[-1]["outcome"] == "clean", recs
    journal.close()


def test_a_position_difference_no_strategy_holds_is_not_adopted_but_halts(book: Callable[..., Book]) -> None:
    """0.0005 BTC deposited before any strategy holds BTC: minor, but no strategy's drift; the book
    does not adopt it (nothing journaled) and halts with the reason."""
    late = {sid: {**p, "buy_at": 70, "sell_at": 90} for sid, p in STRATEGIES.items()}
    bk = book(late, config=MINOR_SYNC)
    bk.fake.call("POST", "balances", {"asset": "BTC", "delta": "0.0005"})
    run = bk.run(max_bars=2)
    assert run.returncode == 0, run.stderr
    assert "no strategy of the book holds BTC/USDT" in run.stderr, run.stderr
    assert "HALTED: reconciliation breaker tripped" in run.stderr
    journal = bk.journal()
    assert journal.rows("SELECT * FROM adjustments") == []
    assert journal.rows("SELECT * FROM adjustment_shares") == []
    assert journal.rows("SELECT outcome FROM reconciliations ORDER BY id")[0]["outcome"] == "halted"
    journal.close()


LIMIT_AT_CLOSE = FIXTURES / "exchange_limit_at_close.py"
# at bar 3, each a limit order at bar 3's close: a buys 0.009, b buys 0.003, c sells 0.004
NETTED_LIMITS = {
    "a": {"algo": LIMIT_AT_CLOSE, "at": 3, "side": "buy", "qty": "0.009"},
    "b": {"algo": LIMIT_AT_CLOSE, "at": 3, "side": "buy", "qty": "0.003"},
    "c": {"algo": LIMIT_AT_CLOSE, "at": 3, "side": "sell", "qty": "0.004"},
}


def test_a_netted_limit_order_open_at_kill_9_is_taken_back_per_leg_and_split_after_restart(
        book: Callable[..., Book]) -> None:
    """Limit orders of three strategies at one price (bar 3's close) and time in force net as
    market orders do: 0.004 crosses inside the book at the limit (a 0.003, b 0.001: netting's
    rule), one exchange limit order buys the net 0.008 at the limit (legs a 0.006, b 0.002). It
    rests (the fake's book has no liquidity and its clock stops after bar 3); the process is
    killed with it open. The restart takes it back as a's and b's orders; the exchange then fills
    it in two parts (0.005, then 0.003), each split between a and b by the rule, fees too."""
    bk = book(NETTED_LIMITS, bars=3)
    bk.fake.call("POST", "liquidity", {"symbol": MARKET, "qty": "0"})
    proc, out = bk.start()

    def netted_acknowledged() -> list[dict[str, Any]]:
        if not (bk.state / "journal.sqlite").exists():
            return []
        journal = bk.journal()
        try:
            return journal.rows("SELECT * FROM intents WHERE strategy IS NULL AND exchange_id IS NOT NULL")
        except sqlite3.OperationalError:  # the binary is still creating the journal (no tables yet)
            return []
        finally:
            journal.close()

    [netted] = wait_for("the netted limit order at the exchange", netted_acknowledged, timeout=40)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, stderr
    limit = D("64020.10")  # bar 3's close (the fake's path rises 10 a bar from 64000.10)
    assert D(netted["limit_price"]) == limit
    cid = netted["client_order_id"]
    [order] = [o for o in bk.fake.orders() if o["clientOrderId"] == cid]
    assert (order["type"], order["side"], D(order["price"]), D(order["origQty"]), order["status"]) == (
        "LIMIT", "BUY", limit, D("0.008"), "NEW")
    journal = bk.journal()
    legs = journal.rows("SELECT strategy, quantity FROM order_legs WHERE client_order_id = ?", cid)
    assert [(leg["strategy"], leg["quantity"]) for leg in legs] == [("a", "0.006"), ("b", "0.002")]
    crossed = [(f["strategy"], f["side"], f["quantity"], D(f["price"]), f["fee"]) for f in journal.fills()]
    assert crossed == [("a", "buy", "0.003", limit, "0"), ("b", "buy", "0.001", limit, "0"),
                       ("c", "sell", "0.004", limit, "0")]
    assert [D(q) for q in hamilton([D("0.009"), D("0.003")], D("0.004"), 3, True)] == [D("0.003"), D("0.001")]
    runs = len(journal.rows("SELECT id FROM runs"))
    journal.close()
    # the restart takes the order back (per leg), then the exchange fills it
    proc, out = bk.start()

    def restarted() -> bool:
        journal = bk.journal()
        try:
            [run] = journal.rows("SELECT started_at FROM runs ORDER BY id DESC LIMIT 1")
            later = journal.rows("SELECT id FROM reconciliations WHERE time >= ?", run["started_at"])
            return len(journal.rows("SELECT id FROM runs")) == runs + 1 and bool(later)
        finally:
            journal.close()

    wait_for("the restart's reconciliation", restarted, timeout=40)

    def fills_of_netted(n: int) -> Callable[[], bool]:
        def check() -> bool:
            journal = bk.journal()
            try:
                return len(journal.rows("SELECT id FROM fills WHERE client_order_id = ?", cid)) >= n
            finally:
                journal.close()
        return check

    bk.fake.call("POST", "advance", {"symbol": MARKET, "price": str(limit), "qty": "0.005"})
    wait_for("the first part journaled", fills_of_netted(1), timeout=20)
    bk.fake.call("POST", "advance", {"symbol": MARKET, "price": str(limit)})
    wait_for("the second part journaled", fills_of_netted(2), timeout=20)
    time.sleep(2.5)  # one more poll: the strategies' orders see the final status
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "tracked again" in stderr, stderr
    second = Run(0, "", stderr, out, 0)
    seen = assert_book_matches_exchange(bk)
    [order] = [o for o in bk.fake.orders() if o["clientOrderId"] == cid]
    assert (order["status"], D(order["executedQty"])) == ("FILLED", D("0.008"))
    # each exchange fill split by the rule over what each leg still wanted, fees too
    journal = bk.journal()
    wanted = {"a": D("0.006"), "b": D("0.002")}
    fills = journal.rows("SELECT id, quantity, fee FROM fills WHERE client_order_id = ? ORDER BY id", cid)
    assert [D(f["quantity"]) for f in fills] == [D("0.005"), D("0.003")]
    got = assert_split_by_the_rule(journal, fills, wanted)
    assert got == [[("a", D("0.004")), ("b", D("0.001"))], [("a", D("0.002")), ("b", D("0.001"))]]
    journal.close()
    # the strategies' taken-back orders received their shares (on_fill) and ended filled
    assert [line.split()[:2] for line in flip_lines(second, "a", "FILL")] == [["buy", "0.004"], ["buy", "0.002"]]
    assert [line.split()[:2] for line in flip_lines(second, "b", "FILL")] == [["buy", "0.001"], ["buy", "0.001"]]
    for sid, filled in (("a", "0.006"), ("b", "0.002")):
        rows = [r for r in second.results(f"strategies/{sid}/orders.csv") if r["status"] != "cancelled"]
        assert (rows[-1]["status"], D(rows[-1]["filled_quantity"])) == ("filled", D(filled)), rows
    books = seen["books"]
    fee = {sid: sum(D(s["fee"]) for s in journal_shares(bk, sid)) for sid in ("a", "b")}
    assert D(books["a"]["positions"][SYMBOL]) == D("0.009") - fee["a"]
    assert D(books["b"]["positions"][SYMBOL]) == D("0.003") - fee["b"]
    assert D(books["c"]["positions"][SYMBOL]) == D("-0.004")


def journal_shares(bk: Book, sid: str) -> list[dict[str, Any]]:
    journal = bk.journal()
    try:
        return journal.rows("SELECT quantity, fee FROM fill_shares WHERE strategy = ?", sid)
    finally:
        journal.close()
