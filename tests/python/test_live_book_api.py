"""The control API of a live book (`rustybt live --portfolio FILE --broker paper --api ADDR`), end
to end on the real binary over real HTTP: the whole-book endpoints, the per-strategy views, and
the changes an operator makes while the session runs (a strategy stopped with its positions
closed or handed over, a strategy added), each journaled and reproduced by a restart after
`kill -9`.

Oracles: the account is the exact Decimal sum of the strategies and the unallocated cash in one
snapshot; a hand-over moves exactly what the giver was worth; the journal's last book of each
strategy after a restart is the one the API showed before the kill.

Nothing waits a fixed time: every check polls with a generous deadline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT
from test_live_api import TOKEN, Api, env, token_file
from test_live_book import book_argv, combined_file, run
from test_live_exchange import wait_for
from test_live_paper import ENV, TRADER, query, read_csv

BOOK = """\
    [portfolio]
    cash = "100000"

    [[strategy]]
    id = "holder"
    algo = "{trader}"
    symbols = ["A"]
    params = {{ every = 0, initial_buy = 5 }}

    [[strategy]]
    id = "receiver"
    algo = "{trader}"
    params = {{ every = 0 }}
"""


@pytest.fixture
def book(tmp_path: Path) -> dict[str, Any]:
    data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 400, timedelta(minutes=1))
    portfolio = tmp_path / "book.toml"
    portfolio.write_text(textwrap.dedent(BOOK.format(trader=TRADER)))
    return {"data": data, "argv": ["--portfolio", str(portfolio)], "state": tmp_path / "state"}


@pytest.fixture
def start(book: dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    started: list[Api] = []

    def go(out: str = "out", speed: str = "60") -> Api:
        argv = book_argv(book["argv"], book["data"], "A,B", book["state"], tmp_path / out,
                         "--api", "127.0.0.1:0", "--api-token-file", str(token_file(tmp_path)),
                         "--api-rate-limit", "1000", speed=speed)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env(RUSTYBT_HOME=str(ROOT)), cwd=ROOT)
        api = Api(proc)
        started.append(api)
        wait_for("running", lambda: api.get("/status")["phase"] == "running", timeout=60)
        return api

    yield go
    for api in started:
        if api.proc.poll() is None:
            api.proc.kill()
            api.proc.wait()


def strategies(api: Api) -> dict[str, Any]:
    return api.get("/strategies")


def by_id(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in listing["strategies"]}


def assert_account_is_the_sum(listing: dict[str, Any]) -> None:
    """One snapshot: the account's equity and cash are the strategies' plus the unallocated cash,
    exactly."""
    unallocated = D(listing["unallocated"])
    assert D(listing["equity"]) == sum((D(s["equity"]) for s in listing["strategies"]), unallocated)
    assert D(listing["cash"]) == sum((D(s["cash"]) for s in listing["strategies"]), unallocated)


def position(strategy: dict[str, Any], symbol: str) -> D:
    return sum((D(p["quantity"]) for p in strategy["positions"] if p["symbol"] == symbol), D(0))


def kill(api: Api) -> None:
    api.proc.send_signal(signal.SIGKILL)
    assert api.proc.wait(timeout=30) == -signal.SIGKILL


def restart(book: dict[str, Any], tmp_path: Path, out: str = "out2") -> subprocess.CompletedProcess[str]:
    proc = run(book_argv(book["argv"], book["data"], "A,B", book["state"], tmp_path / out))
    assert proc.returncode == 0, proc.stderr
    assert "differs from the journal's fills" not in proc.stderr
    return proc


def last_book(state: Path, strategy: str) -> dict[str, Any]:
    [(text,)] = query(state, "SELECT book FROM book_snapshots WHERE strategy = ? ORDER BY id DESC LIMIT 1",
                      strategy)
    return json.loads(text)


# ---- the views ---------------------------------------------------------------------------------


def test_the_book_api_shows_the_account_and_each_strategy(start):
    api = start()
    try:
        listing = wait_for("the holder's fill", lambda: (l := strategies(api)) and
                           position(by_id(l)["holder"], "A") == 5 and l)
        assert [s["id"] for s in listing["strategies"]] == ["holder", "receiver"]
        holder, receiver = by_id(listing)["holder"], by_id(listing)["receiver"]
        assert holder["state"] == receiver["state"] == "running"
        assert holder["symbols"] == ["A"] and receiver["symbols"] == ["A", "B"]
        assert D(holder["allocated_capital"]) == D(receiver["allocated_capital"]) == 50000
        assert D(holder["weight"]) == D("0.5") and D(listing["unallocated"]) == 0
        assert_account_is_the_sum(listing)
        detail = api.get("/strategies/holder")
        assert detail["id"] == "holder" and detail["fills"][0]["strategy"] == "holder"
        assert D(detail["fills"][0]["quantity"]) == 5 and detail["orders"] == []
        # The whole-book endpoints keep their meaning: the account, every strategy's orders.
        status = api.get("/status")
        assert status["strategy"]["class"] == "portfolio"
        assert [p["symbol"] for p in status["positions"]] == ["A"]
        orders = api.get("/orders")["orders"]
        assert orders and all(o["strategy"] == "holder" for o in orders)
        assert api.get("/fills")["fills"][0]["strategy"] == "holder"
        status_code, _, text = api.call("GET", "/metrics")
        assert status_code == 200
        metrics = text.decode()
        assert 'rustybt_live_strategy_equity{strategy="holder"}' in metrics
        assert 'rustybt_live_strategy_running{strategy="receiver"} 1' in metrics
        # Same auth as every endpoint; an unknown strategy is a 404 naming the book's.
        assert api.call("GET", "/strategies", token=None)[0] == 401
        code, _, body = api.call("GET", "/strategies/nobody")
        assert code == 404 and "holder, receiver" in json.loads(body)["error"]
        assert api.get("/openapi.json")["paths"]["/strategies/{id}/stop"]
    finally:
        assert api.stop() == 0, api.stderr()


def test_a_single_algorithm_session_has_no_strategies(binary: Path, tmp_path: Path) -> None:
    from test_live_api import paper_argv
    argv = paper_argv(binary, tmp_path, "--api", "127.0.0.1:0", "--api-token-file", str(token_file(tmp_path)))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            cwd=tmp_path)
    api = Api(proc)
    try:
        wait_for("running", lambda: api.get("/status")["phase"] == "running", timeout=60)
        for method, path, body in [("GET", "/strategies", None), ("GET", "/strategies/x", None),
                                   ("POST", "/strategies/x/stop", {"positions": "close"}),
                                   ("POST", "/strategies", {"id": "x", "algo": str(TRADER), "capital": "1"})]:
            code, _, text = api.call(method, path, body)
            assert code == 404, (path, text)
            assert "hosts one algorithm" in json.loads(text)["error"]
    finally:
        assert api.stop() == 0, api.stderr()


# ---- stopping -----------------------------------------------------------------------------------


def test_stop_with_close_closes_at_the_next_bar_and_a_restart_keeps_it_stopped(start, book, tmp_path):
    api = start()
    wait_for("the holder's fill", lambda: position(by_id(strategies(api))["holder"], "A") == 5)
    reply = api.json("POST", "/strategies/holder/stop", {"positions": "close"})
    assert reply["state"] == "stopped" and reply["positions"] == "close"
    [closing] = reply["closing_orders"]
    assert closing["side"] == "sell" and D(closing["quantity"]) == 5 and closing["strategy"] == "holder"
    # The market order fills at the next bar; the proceeds stay with the stopped strategy.
    holder = wait_for("the close", lambda: (h := by_id(strategies(api))["holder"]) and
                      not h["positions"] and h["open_orders"] == 0 and h)
    assert holder["state"] == "stopped" and "by `ops`" in holder["stop_reason"]
    assert D(holder["cash"]) == D(holder["equity"])
    # Stopped already: closing again is refused; its cash can still be handed over.
    code, _, text = api.call("POST", "/strategies/holder/stop", {"positions": "close"})
    assert code == 409 and "already" in json.loads(text)["error"]
    assert query(book["state"], "SELECT action, strategy, token FROM strategy_changes") == [("stop", "holder", "ops")]
    wait_for("the actions journaled", lambda: query(book["state"], "SELECT action, status FROM control_actions") == [
        ("stop_strategy", 200), ("stop_strategy", 409)])
    kill(api)

    again = restart(book, tmp_path)
    assert "strategy `holder` stopped at" in again.stderr and "stays stopped" in again.stderr
    # It placed nothing more; its book is flat.
    assert query(book["state"], "SELECT COUNT(*) FROM intents WHERE strategy = 'holder' AND run_id = 2") == [(0,)]
    assert last_book(book["state"], "holder")["positions"] == {}
    metrics = json.loads((tmp_path / "out2" / "metrics.json").read_text())
    status = {s["id"]: s["status"] for s in metrics["portfolio"]["strategies"]}
    assert status["holder"] == "stopped"


def test_hand_over_moves_positions_and_cash_exactly_and_survives_kill_9(start, book, tmp_path):
    api = start()
    before = wait_for("the holder's fill", lambda: (l := strategies(api)) and
                      position(by_id(l)["holder"], "A") == 5 and l)
    reply = api.json("POST", "/strategies/holder/stop", {"positions": "hand_over", "to": "receiver"})
    handed = {(h["strategy"], h["side"]) for h in reply["handed_over"]}
    assert handed == {("holder", "sell"), ("receiver", "buy")}
    [price] = {D(h["price"]) for h in reply["handed_over"]}
    after = strategies(api)
    assert_account_is_the_sum(after)
    holder, receiver = by_id(after)["holder"], by_id(after)["receiver"]
    assert D(holder["equity"]) == 0 and holder["positions"] == [] and D(holder["cash"]) == 0
    assert position(receiver, "A") == 5
    # Exactly what the giver was worth at the last close: its cash plus 5 × that close (the
    # internal sale turned the position into cash, all of which moved).
    giver_cash = D(by_id(before)["holder"]["cash"])
    assert D(reply["value_moved"]) == D(reply["cash_moved"]) == giver_cash + 5 * price
    assert D(receiver["cash"]) == D(by_id(before)["receiver"]["cash"]) - 5 * price + D(reply["cash_moved"])
    # Two internal fills at the last close with no fee, journaled with their strategies.
    fills = query(book["state"], "SELECT strategy, side, quantity, fee FROM fills ORDER BY id")
    assert fills[-2:] == [("holder", "sell", "5", "0"), ("receiver", "buy", "5", "0")]
    # A positions-free hand-over to the unallocated cash: refused while it holds positions…
    code, _, text = api.call("POST", "/strategies/receiver/stop", {"positions": "hand_over"})
    assert code == 409 and "unallocated cash holds no positions" in json.loads(text)["error"]
    wait_for("a checkpoint", lambda: by_id(strategies(api))["receiver"]["equity"] != receiver["equity"], timeout=30)
    seen = by_id(strategies(api))["receiver"]
    kill(api)

    restart(book, tmp_path)
    holder_book = last_book(book["state"], "holder")
    assert D(holder_book["cash"]) == 0 and not holder_book["positions"]
    assert D(last_book(book["state"], "receiver")["positions"]["A"]) == 5
    assert D(last_book(book["state"], "receiver")["cash"]) == D(seen["cash"])


def test_a_flat_strategy_hands_its_cash_to_the_unallocated_cash(start):
    api = start()
    try:
        wait_for("the holder's fill", lambda: position(by_id(strategies(api))["holder"], "A") == 5)
        cash = D(by_id(strategies(api))["receiver"]["cash"])
        reply = api.json("POST", "/strategies/receiver/stop", {"positions": "hand_over"})
        assert D(reply["cash_moved"]) == cash and reply["handed_over"] == []
        listing = strategies(api)
        assert D(listing["unallocated"]) == cash
        assert by_id(listing)["receiver"]["state"] == "stopped"
        assert_account_is_the_sum(listing)
        # With every strategy stopped the session still runs, and still stops on SIGTERM.
        api.json("POST", "/strategies/holder/stop", {"positions": "close"})
        assert all(s["state"] == "stopped" for s in strategies(api)["strategies"])
    finally:
        assert api.stop(timeout=30) == 0, api.stderr()


# ---- adding -------------------------------------------------------------------------------------


def test_an_added_strategy_trades_from_the_next_bar_and_is_back_after_kill_9(start, book, tmp_path):
    api = start()
    wait_for("the holder's fill", lambda: position(by_id(strategies(api))["holder"], "A") == 5)
    funder_cash = D(by_id(strategies(api))["receiver"]["cash"])
    request = {"id": "added", "algo": str(TRADER), "capital": "10000", "from": "receiver",
               "symbols": ["B"], "params": {"every": 2, "qty": 3}, "weight": "0.2"}
    reply = api.json("POST", "/strategies", request)
    assert reply == {"id": "added", "state": "running", "symbols": ["B"], "weight": "0.2", "capital": "10000",
                     "from": "receiver"}
    listing = strategies(api)
    assert_account_is_the_sum(listing)
    added = by_id(listing)["added"]
    assert D(added["allocated_capital"]) == 10000 and added["symbols"] == ["B"]
    assert D(by_id(listing)["receiver"]["cash"]) == funder_cash - 10000
    # It trades from the next bar on.
    wait_for("the added strategy's fills", lambda: by_id(strategies(api))["added"]["fills_total"] >= 2, timeout=60)
    code, _, text = api.call("POST", "/strategies", request)
    assert code == 409 and "already (running)" in json.loads(text)["error"]
    assert query(book["state"], "SELECT strategies FROM runs") == [('["holder","receiver","added"]',)]
    kill(api)

    again = restart(book, tmp_path)
    assert "live book: 3 strategies (holder, receiver, added)" in again.stderr
    assert "strategy `added`: restored the algorithm's state from" in again.stderr
    assert query(book["state"], "SELECT COUNT(*) FROM intents WHERE strategy = 'added' AND run_id = 2") != [(0,)]
    # Its results are there, with its capital and the trades it made.
    metrics = json.loads((tmp_path / "out2" / "metrics.json").read_text())
    strategies_ = {s["id"]: s for s in metrics["portfolio"]["strategies"]}
    assert D(strategies_["added"]["initial_capital"]) == 10000
    assert (tmp_path / "out2" / "strategies" / "added" / "fills.csv").exists()


def test_an_added_strategys_capital_moves_inside_the_account(start, tmp_path):
    """Funded from the unallocated cash (a stopped strategy's, handed over): the account's results
    start from what the account had, and allocation.csv shows each move."""
    api = start()
    try:
        wait_for("the holder's fill", lambda: position(by_id(strategies(api))["holder"], "A") == 5)
        api.json("POST", "/strategies/receiver/stop", {"positions": "hand_over"})
        reply = api.json("POST", "/strategies", {"id": "late", "algo": str(TRADER), "capital": "20000.50",
                                                   "symbols": ["B"], "params": {"every": 1}})
        assert reply["from"] is None and D(reply["weight"]) > 0
        listing = strategies(api)
        assert_account_is_the_sum(listing)
        assert D(listing["unallocated"]) == D(by_id(listing)["receiver"]["allocated_capital"]) - D("20000.50")
        wait_for("its fills", lambda: by_id(strategies(api))["late"]["fills_total"] >= 2, timeout=60)
    finally:
        assert api.stop() == 0, api.stderr()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert D(metrics["initial_cash"]) == 100000
    moves = [(r["strategy"], D(r["transfer"])) for r in read_csv(tmp_path / "out" / "allocation.csv")]
    assert ("(reserve)", D(-50000)) not in moves
    assert ("receiver", D(-50000)) in moves and ("(reserve)", D(50000)) in moves
    assert ("(reserve)", D("-20000.50")) in moves and ("late", D("20000.50")) in moves
    assert (tmp_path / "out" / "strategies" / "late" / "metrics.json").exists()


def test_a_strategy_added_by_weight_alone_is_funded_at_the_next_rebalance(tmp_path):
    """`POST /strategies` with a `weight` and no `capital` in a book that rebalances every five
    minutes: the strategy joins with nothing, the next rebalance gives it its normalized weight's
    share (value moved between strategies, none created), it trades from then on, and after
    `kill -9` a restart brings it back with what it holds."""
    data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 400, timedelta(minutes=1))
    portfolio = tmp_path / "book.toml"
    portfolio.write_text(textwrap.dedent(BOOK.format(trader=TRADER)).replace(
        '[portfolio]\ncash = "100000"', '[portfolio]\ncash = "100000"\nrebalance = "*/5 * * * *"'))
    book = {"data": data, "argv": ["--portfolio", str(portfolio)], "state": tmp_path / "state"}
    argv = book_argv(book["argv"], data, "A,B", book["state"], tmp_path / "out", "--api", "127.0.0.1:0",
                     "--api-token-file", str(token_file(tmp_path)), "--api-rate-limit", "1000", speed="30")
    api = Api(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env(RUSTYBT_HOME=str(ROOT)), cwd=ROOT))
    try:
        wait_for("running", lambda: api.proc.poll() is None and api.get("/status")["phase"] == "running", timeout=60)
        reply = api.json("POST", "/strategies", {"id": "later", "algo": str(TRADER), "weight": "0.25",
                                                 "symbols": ["B"], "params": {"every": 1}})
        assert reply == {"id": "later", "state": "running", "symbols": ["B"], "weight": "0.25", "capital": "0",
                         "from": None}
        listing = strategies(api)
        assert_account_is_the_sum(listing)
        assert D(by_id(listing)["later"]["cash"]) == 0
        wait_for("the rebalance's funding", lambda: D(by_id(strategies(api))["later"]["transfers"]) > 0, timeout=60)
        listing = strategies(api)
        assert_account_is_the_sum(listing)
        # Its normalized weight, 0.25 / (0.5 + 0.5 + 0.25), of the book at the rebalance (prices
        # have moved a little since), taken from the other two: the account did not change.
        later = by_id(listing)["later"]
        assert abs(D(later["transfers"]) / D(listing["equity"]) - D("0.2")) < D("0.005"), listing
        assert sum(D(s["transfers"]) for s in listing["strategies"]) == 0
        wait_for("its fills", lambda: by_id(strategies(api))["later"]["fills_total"] >= 2, timeout=60)
        kill(api)
        funded = last_book(book["state"], "later")
    finally:
        if api.proc.poll() is None:
            api.proc.kill()
            api.proc.wait()
    again = restart(book, tmp_path)
    assert "live book: 3 strategies (holder, receiver, later)" in again.stderr
    # Its row as the journal re-adds it (its configured weight, nothing moved), then each
    # rebalance keeps it at its normalized weight.
    moves = [r for r in read_csv(tmp_path / "out2" / "allocation.csv") if r["strategy"] == "later"]
    assert (D(moves[0]["weight"]), D(moves[0]["transfer"])) == (D("0.25"), 0), moves[0]
    assert moves[1:] and all(D(r["weight"]) == D("0.2") for r in moves[1:]), moves
    metrics = json.loads((tmp_path / "out2" / "metrics.json").read_text())
    later = {s["id"]: s for s in metrics["portfolio"]["strategies"]}["later"]
    assert D(later["initial_capital"]) == 0
    assert D(last_book(book["state"], "later")["cash"]) > 0 and funded
    own = json.loads((tmp_path / "out2" / "strategies" / "later" / "metrics.json").read_text())
    assert D(own["final_equity"]) > 0 and own["total_return"] is not None


BROKEN = "from rustybt_api import Algorithm\n\nclass Broken(Algorithm)\n    pass\n"
RAISES = ("from rustybt_api import Algorithm\n\nclass Raises(Algorithm):\n"
          "    def initialize(self, ctx):\n        raise ValueError('no market for me')\n")


@pytest.mark.parametrize("case", ["unknown_id", "unknown_to", "duplicate_id", "missing_file", "broken_file",
                                  "initialize_raises", "symbol_not_in_session", "too_much_capital", "bad_body",
                                  "bad_capital", "weight_only_without_rebalance", "neither_capital_nor_weight"])
def test_bad_changes_are_refused_with_clear_errors(start, book, tmp_path, case):
    broken = tmp_path / "broken.py"
    broken.write_text(BROKEN)
    raises = tmp_path / "raises.py"
    raises.write_text(RAISES)
    add = {"id": "new", "algo": str(TRADER), "capital": "1000", "from": "receiver"}
    method, path, body, status, text = {
        "unknown_id": ("POST", "/strategies/nobody/stop", {"positions": "close"}, 404, "no strategy `nobody`"),
        "unknown_to": ("POST", "/strategies/holder/stop", {"positions": "hand_over", "to": "x"}, 422, "no strategy `x`"),
        "duplicate_id": ("POST", "/strategies", {**add, "id": "holder"}, 409, "already (running)"),
        "missing_file": ("POST", "/strategies", {**add, "algo": "nowhere.py"}, 422, "`nowhere.py` does not exist"),
        "broken_file": ("POST", "/strategies", {**add, "algo": str(broken)}, 422, "broken.py"),
        "initialize_raises": ("POST", "/strategies", {**add, "algo": str(raises)}, 422, "no market for me"),
        "symbol_not_in_session": ("POST", "/strategies", {**add, "symbols": ["C"]}, 422,
                                  "`C` is not a symbol of this session (A, B)"),
        "too_much_capital": ("POST", "/strategies", {**add, "from": None}, 409, "the unallocated cash is 0"),
        "bad_body": ("POST", "/strategies/holder/stop", {"positions": "sell"}, 400, "unknown variant"),
        "bad_capital": ("POST", "/strategies", {**add, "capital": "lots"}, 400, "`lots` is not a decimal"),
        "weight_only_without_rebalance": ("POST", "/strategies", {"id": "new", "algo": str(TRADER), "weight": "0.3"},
                                          422, "never rebalances"),
        "neither_capital_nor_weight": ("POST", "/strategies", {"id": "new", "algo": str(TRADER)}, 422,
                                       "give `capital` (more than zero)"),
    }[case]
    api = start()
    try:
        code, _, reply = api.call(method, path, body)
        assert code == status, reply
        assert text in json.loads(reply)["error"], reply
        listing = strategies(api)
        assert [s["id"] for s in listing["strategies"]] == ["holder", "receiver"]
        assert all(s["state"] == "running" for s in listing["strategies"])
        assert query(book["state"], "SELECT COUNT(*) FROM strategy_changes") == [(0,)]
    finally:
        assert api.stop() == 0, api.stderr()


@pytest.mark.parametrize("kind", ["book", "single"])
def test_a_read_right_after_an_answer_shows_the_change(tmp_path, kind):
    """The session answers an operator's action only after publishing the snapshot that shows
    it, so a read right after the answer never shows the state before. The test seam
    `RUSTYBT_LIVE_PAUSE=before_publish` holds the session 300 ms between applying the action and
    publishing, which is where an early answer would let the read in."""
    data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 400, timedelta(minutes=1))
    portfolio = tmp_path / "book.toml"
    portfolio.write_text(textwrap.dedent(BOOK.format(trader=TRADER)))
    book = ["--portfolio", str(portfolio)] if kind == "book" else ["--algo", str(TRADER)]
    argv = book_argv(book, data, "A,B", tmp_path / "state", tmp_path / "out", "--api", "127.0.0.1:0",
                     "--api-token-file", str(token_file(tmp_path)), "--api-rate-limit", "1000", speed="20")
    api = Api(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env(RUSTYBT_HOME=str(ROOT), RUSTYBT_LIVE_PAUSE="before_publish"), cwd=ROOT))
    try:
        wait_for("running", lambda: api.proc.poll() is None and api.get("/status")["phase"] == "running", timeout=60)
        if kind == "book":
            api.json("POST", "/strategies/receiver/stop", {"positions": "close"})
            assert by_id(strategies(api))["receiver"]["state"] == "stopped"
        else:
            api.json("POST", "/halt", {"reason": "check"})
            assert api.get("/status")["halted"] is not None
    finally:
        assert api.stop() == 0, api.stderr()


# ---- hot reload ---------------------------------------------------------------------------------


def test_saving_a_strategy_file_reloads_that_strategy_alone(tmp_path):
    """Two strategies from files in one folder: saving one reloads it at the next bar (its new
    code logs a new line), and the other, whose folder changed too, is not reloaded."""
    from test_live_book import wait_for_mark
    from test_live_exchange import audit_events
    from test_live_paper import MINUTE, START_NS
    first, second = tmp_path / "first.py", tmp_path / "second.py"
    code = TRADER.read_text()
    first.write_text(code)
    second.write_text(code)
    data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 400, timedelta(minutes=1))
    state = tmp_path / "state"
    argv = book_argv(["--algo", str(first), "--algo", str(second)], data, "A,B", state, tmp_path / "out",
                     speed="60")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        wait_for_mark(proc, state, START_NS + 3 * MINUTE)
        first.write_text(code.replace('"count %d close %s"', '"reloaded %d close %s"'))

        def reloaded_lines() -> list[dict[str, Any]]:
            return [e for e in audit_events(state) if e["kind"] == "log" and "reloaded" in str(e["fields"])]
        wait_for("the new code's log lines", reloaded_lines, timeout=60)
        reloads = [e["fields"] for e in audit_events(state) if e["kind"] == "reload"]
        assert reloads and all(r["strategy"] == "first" and r["ok"] for r in reloads), reloads
        assert all("first:" in str(e["fields"]) for e in reloaded_lines())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


IMPORTER = """\
from rustybt_api import Algorithm, Context

from helpers.words import WORD
from shared import TAG


class Importer(Algorithm):
    def on_tick(self, ctx: Context) -> None:
        self.log.info("%s %s %s", TAG, WORD, ctx.history(ctx.symbols[0]).decimal("close"))
"""

LONER = """\
from rustybt_api import Algorithm, Context

from shared import TAG


class Loner(Algorithm):
    def on_tick(self, ctx: Context) -> None:
        self.log.info("%s alone %s", TAG, ctx.history(ctx.symbols[0]).decimal("close"))
"""


def test_saving_a_module_a_strategy_imports_reloads_the_strategies_that_import_it(tmp_path):
    """A book's strategy reloads when a local module it imports is saved, even one in a subfolder
    (`helpers/`), and only the strategies importing that module reload: `helpers/words.py`
    reloads `importer` alone; `shared.py`, imported by both, reloads both. Each reload is seen
    in the new code's log lines and in the audit log's reload events."""
    from test_live_book import wait_for_mark
    from test_live_exchange import audit_events
    from test_live_paper import MINUTE, START_NS
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    words = tmp_path / "helpers" / "words.py"
    words.write_text('WORD = "before"\n')
    shared = tmp_path / "shared.py"
    shared.write_text('TAG = "old"\n')
    (tmp_path / "importer.py").write_text(IMPORTER)
    (tmp_path / "loner.py").write_text(LONER)
    data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 400, timedelta(minutes=1))
    state = tmp_path / "state"
    argv = book_argv(["--algo", str(tmp_path / "importer.py"), "--algo", str(tmp_path / "loner.py")], data,
                     "A,B", state, tmp_path / "out", speed="60")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)

    def logged(text: str) -> list[str]:
        return [str(e["fields"]) for e in audit_events(state) if e["kind"] == "log" and text in str(e["fields"])]

    def reloads() -> list[dict[str, Any]]:
        return [e["fields"] for e in audit_events(state) if e["kind"] == "reload"]

    try:
        wait_for_mark(proc, state, START_NS + 3 * MINUTE)
        words.write_text('WORD = "after"\n')
        wait_for("the importer's new words", lambda: logged("old after"), timeout=60)
        assert {r["strategy"] for r in reloads()} == {"importer"}, reloads()
        assert all("importer:" in line for line in logged("old after"))

        shared.write_text('TAG = "new"\n')
        wait_for("both strategies' new tag", lambda: logged("new after") and logged("new alone"), timeout=60)
        done = reloads()
        assert all(r["ok"] for r in done), done
        assert {r["strategy"] for r in done} == {"importer", "loner"}, done

        # A reload that adds an import follows the new module from then on.
        (tmp_path / "loner.py").write_text(LONER.replace("from shared import TAG", "from shared import TAG\nfrom helpers.words import WORD")
                                           .replace('"%s alone %s", TAG,', '"%s alone %s %s", TAG, WORD,'))
        wait_for("the loner's new import", lambda: logged("new alone after"), timeout=60)
        words.write_text('WORD = "again"\n')
        wait_for("both strategies' third words", lambda: logged("new again") and logged("new alone again"), timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_a_single_live_session_reloads_when_a_module_in_a_subfolder_is_saved(tmp_path):
    """`rustybt live --algo` (one strategy) watches the folders of the local modules its algorithm
    imports, not only its own: saving `helpers/words.py` reloads it, and the new code logs."""
    from test_live_book import wait_for_mark
    from test_live_exchange import audit_events
    from test_live_paper import MINUTE, START_NS
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    words = tmp_path / "helpers" / "words.py"
    words.write_text('WORD = "before"\n')
    (tmp_path / "shared.py").write_text('TAG = "tag"\n')
    (tmp_path / "importer.py").write_text(IMPORTER)
    data = combined_file(tmp_path / "AB.csv", {"A": 4, "B": 5}, 400, timedelta(minutes=1))
    state = tmp_path / "state"
    argv = book_argv(["--algo", str(tmp_path / "importer.py")], data, "A", state, tmp_path / "out", speed="60")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        wait_for_mark(proc, state, START_NS + 3 * MINUTE)
        words.write_text('WORD = "after"\n')
        wait_for("the new words", lambda: [e for e in audit_events(state)
                                           if e["kind"] == "log" and "tag after" in str(e["fields"])], timeout=60)
        assert [e for e in audit_events(state) if e["kind"] == "reload" and e["fields"]["ok"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


# ---- fuzzing ------------------------------------------------------------------------------------


def test_schemathesis_finds_no_server_error_in_a_book(start, book):
    """Every documented operation against a running book, the per-strategy ones included: no 5xx,
    answers as documented, invalid input refused. Random strategy ids answer 404 by design (the
    "missing test data" warning is off), and a schema-valid change naming a strategy that does
    not exist or an algorithm file that is not there is refused with 422, which the schema
    cannot express: allowed for those two operations only."""
    from conftest import VENV_PYTHON
    from test_live_api import OPENAPI
    config = book["state"].parent / "schemathesis.toml"
    config.write_text(textwrap.dedent("""\
        [[operations]]
        include-name = "POST /strategies"
        checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422", "429"]

        [[operations]]
        include-name = "POST /strategies/{id}/stop"
        checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422", "429"]
    """))
    api = start()
    try:
        st = Path(VENV_PYTHON).parent / "st"
        proc = subprocess.run(
            [str(st), "--config-file", str(config), "run", str(OPENAPI), "--url", api.url,
             "--header", f"Authorization: Bearer {TOKEN}",
             "--max-examples", "25", "--exclude-path", "/ready", "--exclude-path", "/events", "--workers", "1",
             "--no-color", "--seed", "7", "--warnings", "off"],
            capture_output=True, text=True, timeout=600, cwd=book["state"].parent, env=env())
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
        assert "No issues found" in proc.stdout, proc.stdout[-3000:]
        assert api.proc.poll() is None, "the session still runs"
        # Whatever the fuzzer did, the account is still the exact sum.
        assert_account_is_the_sum(strategies(api))
    finally:
        assert api.stop() == 0, api.stderr()
