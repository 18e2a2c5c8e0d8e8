"""Zero-copy history views and the no-lookahead guarantee, observed from inside an algorithm."""

from __future__ import annotations

import json
from decimal import Decimal

from conftest import read_bars

ZERO_COPY_ALGO = '''
import json
from rustybt_api import Algorithm

class Probe(Algorithm):
    report = ""

    def initialize(self, ctx):
        self.seen = []
        self.bases = set()

    def on_tick(self, ctx):
        first = ctx.history("TEST").close
        second = ctx.history("TEST").close
        row = {
            "len": len(first),
            "same_pointer": first.ctypes.data == second.ctypes.data,
            "writeable": bool(first.flags.writeable),
            "slice_writeable": bool(first[-3:].flags.writeable),
            "base_type": type(first.base).__module__ + "." + type(first.base).__name__,
            "owndata": bool(first.flags.owndata),
            "contiguous": bool(first.flags.c_contiguous),
            "dtype": str(first.dtype),
            "time_dtype": str(ctx.history("TEST").time.dtype),
            "pointer": first.ctypes.data,
        }
        self.bases.add(id(first.base))
        try:
            first[0] = 1.0
            row["assign"] = "allowed"
        except ValueError:
            row["assign"] = "refused"
        try:
            first.flags.writeable = True
            row["make_writeable"] = "allowed"
        except ValueError:
            row["make_writeable"] = "refused"
        self.seen.append(row)

    def on_stop(self, ctx):
        with open(self.report, "w") as f:
            json.dump({"rows": self.seen, "bases": len(self.bases)}, f)
'''


def test_history_arrays_are_read_only_views_of_engine_memory(run_rustybt, write_algo, bars_csv, tmp_path):
    data = bars_csv(rows=200, name="TEST")
    report = tmp_path / "zero_copy.json"
    algo = write_algo(ZERO_COPY_ALGO)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--param", f"report={report}")
    assert result.returncode == 0, result.stderr
    probe = json.loads(report.read_text())
    rows = probe["rows"]
    assert [r["len"] for r in rows] == list(range(1, 201))
    for row in rows:
        assert row["same_pointer"]
        assert row["writeable"] is False
        assert row["slice_writeable"] is False
        assert row["assign"] == "refused"
        assert row["make_writeable"] == "refused"
        assert row["base_type"] == "_rustybt.SeriesBuffer"
        assert row["owndata"] is False
        assert row["contiguous"]
        assert row["dtype"] == "float64"
        assert row["time_dtype"] == "datetime64[ns]"
    # The same engine buffer for the whole run: views grow, memory never moves or is copied.
    assert len({r["pointer"] for r in rows}) == 1
    assert probe["bases"] == 1


LOOKAHEAD_ALGO = '''
import json
from rustybt_api import Algorithm

class Recorder(Algorithm):
    report = ""
    every = 7

    def initialize(self, ctx):
        self.ticks = []
        self.orders = []
        self.fills = []
        self.tick = 0

    def on_tick(self, ctx):
        self.tick += 1
        row = {"time_ns": ctx.time_ns, "tick": self.tick}
        for symbol in ctx.symbols:
            bars = ctx.history(symbol)
            row[symbol] = [len(bars), int(bars.time_ns[-1]) if len(bars) else None,
                           float(bars.close[-1]) if len(bars) else None]
        self.ticks.append(row)
        if self.tick % self.every == 0:
            for symbol in ctx.symbols:
                order = self.buy(symbol, 1) if self.tick % 2 else self.sell(symbol, "1")
                self.orders.append({"id": order.id, "symbol": symbol, "time_ns": ctx.time_ns,
                                    "tick": self.tick, "status": order.status})

    def on_fill(self, fill):
        self.fills.append({"order_id": fill.order_id, "time_ns": fill.time_ns,
                           "price": str(fill.price), "tick": self.tick + 1})

    def on_stop(self, ctx):
        with open(self.report, "w") as f:
            json.dump({"ticks": self.ticks, "orders": self.orders, "fills": self.fills}, f)
'''


def _ns(text: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) * 1_000_000_000


def test_no_lookahead_across_two_symbols_with_gaps(run_rustybt, write_algo, bars_csv, tmp_path):
    minute = 60 * 1_000_000_000
    dense = bars_csv(rows=300, seed=1, name="AAA")
    sparse_full = bars_csv(rows=300, seed=2, name="BBB")
    # Drop every third bar of BBB: its clock has gaps the engine must not paper over.
    lines = sparse_full.read_text().splitlines()
    sparse_full.write_text("\n".join([lines[0]] + [l for i, l in enumerate(lines[1:]) if i % 3 != 1]) + "\n")
    report = tmp_path / "lookahead.json"
    algo = write_algo(LOOKAHEAD_ALGO)
    result = run_rustybt(
        "run", "--algo", algo, "--data", dense, "--data", sparse_full, "--param", f"report={report}"
    )
    assert result.returncode == 0, result.stderr
    rec = json.loads(report.read_text())
    files = {"AAA": read_bars(dense), "BBB": read_bars(sparse_full)}
    opens = {s: [_ns(r["timestamp"]) for r in rows] for s, rows in files.items()}

    for row in rec["ticks"]:
        now = row["time_ns"]
        for symbol, (length, last_open, last_close) in ((s, row[s]) for s in files):
            # Exactly the bars whose close (open + 1 minute) is at or before now are visible.
            visible = sum(1 for t in opens[symbol] if t + minute <= now)
            assert length == visible, (symbol, now)
            if length:
                assert last_open + minute <= now
                assert last_close == float(files[symbol][length - 1]["close"])

    by_id = {o["id"]: o for o in rec["orders"]}
    assert len(rec["fills"]) >= len(rec["orders"]) - 2  # orders on the last ticks may not fill
    for fill in rec["fills"]:
        order = by_id[fill["order_id"]]
        symbol = order["symbol"]
        assert order["status"] == "accepted"
        # Reported at a later tick than the decision, at the open of the first bar of that
        # symbol that opens at or after the decision time: never an earlier price.
        assert fill["tick"] > order["tick"]
        assert fill["time_ns"] >= order["time_ns"]
        index = next(i for i, t in enumerate(opens[symbol]) if t >= order["time_ns"])
        assert fill["time_ns"] == opens[symbol][index]
        assert Decimal(fill["price"]) == Decimal(files[symbol][index]["open"])


ORDERS_ALGO = '''
import json
from rustybt_api import Algorithm

class Orders(Algorithm):
    report = ""

    def initialize(self, ctx):
        self.tick = 0
        self.notes = {}

    def on_tick(self, ctx):
        self.tick += 1
        symbol = ctx.symbols[0]
        if self.tick == 1:
            self.notes["symbols_type"] = type(ctx.symbols).__name__
            self.buy(symbol, 2)
            self.buy(symbol, 1)
        elif self.tick == 3:
            first = self.close(symbol)
            second = self.close(symbol)  # the first close is still open: nothing more to do
            self.notes["first_close_qty"] = str(first.quantity)
            self.notes["second_close"] = second is None
            self.notes["open_orders"] = len(self.open_orders(symbol))
        elif self.tick == 5:
            self.notes["position_after_close"] = str(ctx.portfolio.position(symbol))
            order = self.sell(symbol, "1.5")
            self.notes["cancelled"] = order.cancel()
            self.notes["status"] = order.status
            self.notes["cancel_again"] = order.cancel()
        elif self.tick == 6:
            self.buy(symbol, 1)
            # Flattening counts the open buy: it sells what that buy will bring.
            self.notes["close_nets_pending"] = str(self.close(symbol).quantity)

    def on_stop(self, ctx):
        self.late = self.buy(ctx.symbols[0], 1)
        self.notes["late_status_in_on_stop"] = self.late.status
        with open(self.report, "w") as f:
            json.dump(self.notes, f)
'''


def test_order_handles_close_and_cancel(run_rustybt, write_algo, bars_csv, tmp_path):
    report = tmp_path / "orders.json"
    result = run_rustybt(
        "run", "--algo", write_algo(ORDERS_ALGO), "--data", bars_csv(rows=10), "--param", f"report={report}"
    )
    assert result.returncode == 0, result.stderr
    notes = json.loads(report.read_text())
    assert notes == {
        "symbols_type": "tuple",
        "first_close_qty": "3",
        "second_close": True,
        "open_orders": 1,
        "position_after_close": "0",
        "cancelled": True,
        "status": "cancelled",
        "cancel_again": False,
        "close_nets_pending": "1",
        "late_status_in_on_stop": "accepted",
    }
    fills = result.csv_rows("fills.csv")
    assert [(f["side"], f["qty"]) for f in fills] == [
        ("buy", "2"), ("buy", "1"), ("sell", "3"), ("buy", "1"), ("sell", "1"),
    ]
    assert result.metrics()["num_fills"] == 5
