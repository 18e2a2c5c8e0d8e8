"""`rustybt live` sessions you can leave running (issue 18 §1), end to end on the real binary.

- one session per state folder: a second is refused naming the first; a killed one's lock is
  taken over;
- a journal failure that is a storage condition has its own message and exit code (6);
- each session's results cover that session; `rustybt live report` gives the whole history;
- the status line never garbles the terminal, and is not drawn when stdout is not one;
- the restore message says what was restored and what was dropped; `Order` handles survive.
"""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import re
import signal
import sqlite3
import struct
import subprocess
import termios
import textwrap
import time
from decimal import Decimal
from pathlib import Path

from conftest import BIN, ROOT
from test_live_exchange import fake_exchange, live  # noqa: F401 (fixtures)
from test_live_paper import (
    ENV,
    TRADER,
    Paced,
    generated,
    live_argv,
    log_texts,
    query,
    read_csv,
    run_live,
)

USAGE, STORAGE = 2, 6


# ---- 1. one session per state folder ---------------------------------------------------------


def test_a_second_session_is_refused_at_once_and_a_killed_sessions_lock_is_taken_over(tmp_path):
    data = generated(tmp_path / "L.csv", 60, seed=21)
    state = tmp_path / "state"
    # Bars 3 s apart: the first session stays up while the second one tries.
    first = Paced.start(TRADER, data, "L", state, tmp_path / "out1", "--param", "every=0",
                        speed="20", quiet=False)
    try:
        first.wait_for("Trader: count 1 ")
        started = time.monotonic()
        second = run_live(TRADER, data, "L", state, tmp_path / "out2", "--param", "every=0", timeout=30)
        elapsed = time.monotonic() - started
    finally:
        pid = first.proc.pid
        first.proc.kill()  # kill -9: its lock is left behind
        killed = first.finish(timeout=10)
    assert killed.returncode == -signal.SIGKILL

    assert second.returncode == USAGE, second.stderr
    second.clean()
    assert elapsed < 5, "refused at once, before the interpreter starts"
    assert (f"error: the state folder `{state}` is in use by another rustybt session: pid {pid} (started "
            in second.stderr)
    assert f"--state {state}" in second.stderr  # the holder's command line
    assert "hint: " in second.stderr
    assert not (tmp_path / "out2").exists()
    assert query(state, "SELECT COUNT(*) FROM runs") == [(1,)]  # the journal was never touched

    third = run_live(TRADER, data, "L", state, tmp_path / "out3", "--param", "every=0")
    assert third.returncode == 0, third.stderr
    assert f"the state folder's lock was left by pid {pid}" in third.stderr
    assert "taking it over" in third.stderr
    assert query(state, "SELECT id, stop_reason FROM runs") == [
        (1, "ended without a clean stop (killed or crashed)"), (2, "end of feed")]

    # A clean end releases the lock: the next session has nothing stale to say.
    fourth = run_live(TRADER, data, "L", state, tmp_path / "out4", "--param", "every=0")
    assert fourth.returncode == 0, fourth.stderr
    assert "lock was left" not in fourth.stderr


# ---- 1b. storage failures --------------------------------------------------------------------


def test_a_journal_that_cannot_be_opened_is_a_storage_error(tmp_path):
    data = generated(tmp_path / "O.csv", 10, seed=23)
    state = tmp_path / "state"
    (state / "journal.sqlite").mkdir(parents=True)
    live = run_live(TRADER, data, "O", state, tmp_path / "out")
    assert live.returncode == STORAGE, live.stderr
    live.clean()
    assert f"error: cannot open the journal `{state / 'journal.sqlite'}`" in live.stderr
    assert "hint: " in live.stderr
    assert "internal error" not in live.stderr


def test_a_journal_locked_by_another_program_mid_session_is_a_storage_error(tmp_path):
    data = generated(tmp_path / "B.csv", 60, seed=24)
    state = tmp_path / "state"
    # An order every tick: every bar writes to the journal. Bars 0.5 s apart.
    session = Paced.start(TRADER, data, "B", state, tmp_path / "out", "--param", "every=1",
                          speed="120", quiet=False)
    session.wait_for("Trader: count 2 ")
    holder = sqlite3.connect(state / "journal.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held until the session gives up
        live = session.finish(timeout=90)
    finally:
        holder.close()
    assert live.returncode == STORAGE, live.stderr
    live.clean()
    assert f"error: the journal `{state / 'journal.sqlite'}` is locked by another program" in live.stderr
    assert "internal error" not in live.stderr and "a bug in rustybt" not in live.stderr
    assert "hint: " in live.stderr


# ---- 2. each session's results; the whole history ---------------------------------------------


def test_each_sessions_results_cover_that_session_and_report_gives_the_history(tmp_path):
    data = generated(tmp_path / "S.csv", 60, seed=22)
    state = tmp_path / "state"
    params = ["--param", "every=4", "--param", "qty=2"]
    # Ticks 4, 12, 20, 28 buy and 8, 16, 24 sell: session one ends long 2 (bought at bar 29).
    one = run_live(TRADER, data, "S", state, tmp_path / "out1", *params, "--max-bars", "30")
    assert one.returncode == 0, one.stderr
    two = run_live(TRADER, data, "S", state, tmp_path / "out2", *params)
    assert two.returncode == 0, two.stderr

    bars = read_csv(data)
    first_open = Decimal(bars[30]["open"])  # bar 31: the second session's first
    start_cash = Decimal(read_csv(one.out / "equity.csv")[-1]["cash"])
    for session in (one, two):
        fills = session.fills()
        trades = read_csv(session.out / "trades.csv")
        # A trade belongs to the session that closed it: one per closing (sell) fill here.
        assert len(trades) == sum(1 for f in fills if f["side"] == "sell"), (trades, fills)
        fill_times = {f["time"] for f in fills}
        assert all(t["exit_time"] in fill_times for t in trades), (trades, fills)

    metrics = two.metrics()
    # The second session starts with its cash and the carried position at its first price.
    start_equity = start_cash + 2 * first_open
    assert Decimal(metrics["initial_cash"]) == start_equity
    final_equity = Decimal(read_csv(two.out / "equity.csv")[-1]["equity"])
    assert Decimal(metrics["net_profit"]) == final_equity - start_equity
    assert Decimal(one.metrics()["initial_cash"]) == Decimal("100000")

    # The whole history, from the journal.
    report_dir = tmp_path / "report"
    proc = subprocess.run([str(BIN), "live", "report", "--state", str(state), "--out", str(report_dir)],
                          capture_output=True, text=True, timeout=60, env=ENV, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    runs = read_csv(report_dir / "runs.csv")
    assert [(r["run"], r["stop_reason"]) for r in runs] == [("1", "--max-bars reached"), ("2", "end of feed")]
    assert [int(r["fills"]) for r in runs] == [len(one.fills()), len(two.fills())]
    all_fills = read_csv(report_dir / "fills.csv")
    assert [(f["run"], f["side"], f["qty"], f["price"]) for f in all_fills] == \
        [("1", f["side"], f["qty"], f["price"]) for f in one.fills()] + \
        [("2", f["side"], f["qty"], f["price"]) for f in two.fills()]
    trades = read_csv(report_dir / "trades.csv")
    assert len(trades) == 3 + len(read_csv(two.out / "trades.csv"))
    straddling = trades[3]  # bought in session one, sold in session two, at its real entry
    assert (straddling["entry_run"], straddling["exit_run"]) == ("1", "2")
    assert straddling["entry_time"] == one.fills()[-1]["time"]
    realized = sum(Decimal(t["pnl"]) for t in trades)
    total = re.search(r"all runs: (\d+) fills, (\d+) trades closed, fees \S+, realized profit (\S+)", proc.stdout)
    assert total, proc.stdout
    assert (int(total[1]), int(total[2]), Decimal(total[3])) == (len(all_fills), len(trades), realized)
    assert "run 1" in proc.stdout and "run 2" in proc.stdout


# ---- 3. the status line -----------------------------------------------------------------------


def run_on_terminal(argv: list[str], stdout_is_terminal: bool = True) -> str:
    """Runs argv with stderr (and stdout unless told) on a pseudo-terminal; returns what the
    terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=slave if stdout_is_terminal else subprocess.DEVNULL,
                            stderr=slave, env=ENV, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows for `raw` (enough of VT100 for a one-line status)."""
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        m = CSI.match(raw, i)
        if m:
            arg, op = m.groups()
            n = int(arg) if arg.isdigit() else 1
            if op == "K":
                if arg == "2":
                    lines[row] = []
                else:
                    del lines[row][col:]
            elif op == "A":
                row = max(0, row - n)
            elif op == "B":
                row += n
            elif op == "G":
                col = n - 1
            while len(lines) <= row:
                lines.append([])
            i = m.end()
            continue
        ch = raw[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            while len(lines) <= row:
                lines.append([])
        elif ch == "\x1b":
            continue
        else:
            line = lines[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    return ["".join(line).rstrip() for line in lines]


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO +Trader: count (\d+) close [0-9.]+$")


def test_the_status_line_never_garbles_the_log_lines(tmp_path):
    data = generated(tmp_path / "T.csv", 12, seed=25)
    argv = live_argv(TRADER, data, "T", tmp_path / "state", tmp_path / "out", "--param", "every=3",
                     speed="60", quiet=False)
    raw = run_on_terminal(argv)
    assert "breakers ok" in raw, "the status line was drawn"
    shown = screen(raw)
    logged = [line for line in shown if "Trader: count" in line]
    assert [int(LOG_LINE.match(line).group(1)) for line in logged if LOG_LINE.match(line)] == list(range(1, 13)), \
        "\n".join(shown)
    assert not any("breakers ok" in line and "Trader" in line for line in shown), "\n".join(shown)
    assert not any("breakers ok" in line for line in shown), "cleared at the end:\n" + "\n".join(shown)


def test_no_status_line_when_stdout_is_not_a_terminal(tmp_path):
    data = generated(tmp_path / "N.csv", 6, seed=26)
    argv = live_argv(TRADER, data, "N", tmp_path / "state", tmp_path / "out", speed="60", quiet=False)
    raw = run_on_terminal(argv, stdout_is_terminal=False)
    assert "Trader: count 6" in raw
    assert "breakers ok" not in raw


# ---- 4. the restore message and Order handles --------------------------------------------------

KEEPER = """
import threading
from decimal import Decimal
from rustybt_api import Algorithm

class Keeper(Algorithm):
    def initialize(self, ctx):
        self.count = 0
        self.orders = {}
        self.placed = []
        self.guard = threading.Lock()

    def on_tick(self, ctx):
        self.count += 1
        symbol = ctx.symbols[0]
        if self.count == 2:
            entry = self.buy(symbol, 3)
            self.orders["entry"] = entry
            self.placed.append(entry)
            self.last = entry
        if self.count == 3:
            resting = self.buy(symbol, 1, limit=Decimal("1"))
            self.orders["resting"] = resting
            self.placed.append(resting)
        for name, order in sorted(self.orders.items()):
            self.log.info("tick %d %s %s %s %s filled %s at %s open %s", self.count, name, order.status,
                          order.side, order.quantity, order.filled_quantity, order.fill_price, order.is_open)
        if self.orders:
            self.log.info("tick %d same %s %s", self.count, self.orders["entry"] is self.placed[0],
                          self.last is self.placed[0])
"""


def test_the_restore_names_what_it_restored_and_dropped_and_order_handles_survive(tmp_path):
    algo = tmp_path / "keeper.py"
    algo.write_text(textwrap.dedent(KEEPER))
    data = generated(tmp_path / "K.csv", 10, seed=27)
    state = tmp_path / "state"
    one = run_live(algo, data, "K", state, tmp_path / "out1", "--max-bars", "5")
    assert one.returncode == 0, one.stderr
    [fill] = one.fills()
    two = run_live(algo, data, "K", state, tmp_path / "out2", "--max-bars", "2")
    assert two.returncode == 0, two.stderr
    assert "__setstate__" not in two.stderr
    assert re.search(r"restored the algorithm's state from \S+ \(count, last, orders, placed\); "
                     r"2 order handles re-bound to the journal's orders", two.stderr), two.stderr
    assert ("not restored: guard (it does not pickle: TypeError: cannot pickle '_thread.lock' object)"
            in two.stderr), two.stderr
    assert log_texts(two.out, "tick 6") == [
        f"tick 6 entry filled buy 3 filled 3 at {fill['price']} open False",
        "tick 6 resting cancelled buy 1 filled 0 at None open False",
        "tick 6 same True True",
    ]
    # The re-bound handles are saved again: a third session still has them.
    three = run_live(algo, data, "K", state, tmp_path / "out3", "--max-bars", "1")
    assert three.returncode == 0, three.stderr
    assert log_texts(three.out, "tick 8 entry") == [f"tick 8 entry filled buy 3 filled 3 at {fill['price']} open False"]
    assert log_texts(three.out, "tick 8 same") == ["tick 8 same True True"]


SETSTATE = """
from rustybt_api import Algorithm

class Custom(Algorithm):
    def initialize(self, ctx):
        self.count = 0

    def on_tick(self, ctx):
        self.count += 1

    def __getstate__(self):
        return {"n": self.count}

    def __setstate__(self, state):
        self.count = state["n"]
"""

NOTHING = """
import threading
from rustybt_api import Algorithm

class Nothing(Algorithm):
    def initialize(self, ctx):
        self.guard = threading.Lock()

    def on_tick(self, ctx):
        pass
"""


def test_the_restore_message_says_setstate_only_when_the_class_defines_it(tmp_path):
    data = generated(tmp_path / "M.csv", 6, seed=28)
    custom = tmp_path / "custom.py"
    custom.write_text(textwrap.dedent(SETSTATE))
    nothing = tmp_path / "nothing.py"
    nothing.write_text(textwrap.dedent(NOTHING))
    for algo, state in ((custom, tmp_path / "s1"), (nothing, tmp_path / "s2")):
        first = run_live(algo, data, "M", state, tmp_path / f"{algo.stem}1", "--max-bars", "3")
        assert first.returncode == 0, first.stderr
    two = run_live(custom, data, "M", tmp_path / "s1", tmp_path / "custom2")
    assert two.returncode == 0, two.stderr
    assert re.search(r"restored the algorithm's state from \S+ \(through `Custom.__setstate__`\)\n", two.stderr)
    three = run_live(nothing, data, "M", tmp_path / "s2", tmp_path / "nothing2")
    assert three.returncode == 0, three.stderr
    assert "__setstate__" not in three.stderr
    assert re.search(r"restored the algorithm's state from \S+ \(no attributes\)\n", three.stderr), three.stderr
    assert "not restored: guard (it does not pickle" in three.stderr


# ---- 4b. an exchange order left open comes back as a live handle -------------------------------

HOLDER = """
import os
from decimal import Decimal
from rustybt_api import Algorithm

class Holder(Algorithm):
    def initialize(self, ctx):
        self.n = 0
        self.book = {}

    def on_tick(self, ctx):
        self.n += 1
        if "rest" not in self.book:
            self.book["rest"] = self.buy(ctx.symbols[0], Decimal("0.01"), limit=Decimal("1000.00"))
            return
        order = self.book["rest"]
        self.log.info("HANDLE %s %s open %s", type(order).__name__, order.status, order.is_open)
        if os.environ.get("HOLDER_CANCEL") and order.is_open:
            self.log.info("CANCEL %s", order.cancel())
"""


def test_a_restart_rebinds_a_handle_on_an_open_exchange_order_to_the_live_order(live, tmp_path):
    from test_live_exchange import algorithm_lines, between_bars, finish, wait_for

    algo = tmp_path / "holder.py"
    algo.write_text(textwrap.dedent(HOLDER))
    session = live(algo=algo, config={"live": {"cancel_open_orders_on_exit": False}})

    def acknowledged() -> bool:
        if not (session.state / "journal.sqlite").exists():
            return False
        try:
            return [s for (s,) in query(session.state, "SELECT state FROM intents")] == ["acknowledged"]
        except sqlite3.OperationalError:  # still being created
            return False

    started = time.monotonic()
    proc, out = session.start()
    try:
        wait_for("the resting order's acknowledgement", acknowledged)
        between_bars()
        proc.send_signal(signal.SIGTERM)
        first = finish(proc, out, started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert first.returncode == 0, first.stderr

    second = session.run(max_bars=2, env=session.env(HOLDER_CANCEL="1"))
    assert second.returncode == 0, second.stderr
    assert "1 orders open at the exchange since an earlier session are tracked again" in second.stderr
    assert "(book, n); 1 order handle re-bound to the journal's orders" in second.stderr
    # The handle is the engine's live order: its cancel goes to the exchange.
    assert algorithm_lines(second, "HANDLE")[0] == "HANDLE Order accepted open True"
    assert algorithm_lines(second, "CANCEL") == ["CANCEL True"]
    assert [(o["clientOrderId"], o["status"]) for o in session.fake.orders()] == [("rbt-r1-1", "CANCELED")]
    assert [p["params"]["newClientOrderId"] for p in session.fake.order_posts()] == ["rbt-r1-1"]
