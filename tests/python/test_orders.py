"""Order types, brackets, events and rejections through the real binary."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from conftest import ROOT

MIN = "2024-01-01T00:{:02d}:00Z"


def write_bars(path: Path, rows: list[tuple[str, str, str, str]], volume: int = 100) -> Path:
    """One-minute bars from (open, high, low, close) text."""
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{MIN.format(i)},{o},{h},{l},{c},{volume}" for i, (o, h, l, c) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bracket_breakout_exits_are_one_cancels_other(run_rustybt):
    result = run_rustybt("run", "--algo", ROOT / "algorithms" / "bracket_breakout.py", "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    events = result.csv_rows("orders.csv")
    by_order: dict[str, list[dict[str, str]]] = {}
    for e in events:
        by_order.setdefault(e["order_id"], []).append(e)
    entries = [o for o in by_order.values() if o[0]["type"] == "market"]
    assert len(entries) > 50
    fills = {f["order_id"]: f for f in result.csv_rows("fills.csv")}
    for oid, history in by_order.items():
        statuses = [e["status"] for e in history]
        assert statuses[0] == "new"
        if history[0]["type"] == "market":
            continue
        # An exit waits in `new` until its entry fills, then is accepted.
        assert statuses[:2] == ["new", "accepted"]
        if statuses[-1] == "cancelled":
            assert history[-1]["reason"].startswith("OCO: order") or history[-1]["reason"] == "end of data"
    exits_filled = [o for o in by_order.values() if o[0]["type"] != "market" and o[-1]["status"] == "filled"]
    assert len(exits_filled) == result.metrics()["num_trades"]
    # Every exit fill comes after its entry's fill (never the same bar: exits are active from
    # the end of the entry's bar).
    entry_ids = sorted(int(o[0]["order_id"]) for o in entries)
    for exit_history in exits_filled:
        exit_id = int(exit_history[0]["order_id"])
        entry_id = max(i for i in entry_ids if i < exit_id)
        assert fills[exit_history[0]["order_id"]]["time"] > fills[str(entry_id)]["time"]


SCRIPT = '''
import json
from decimal import Decimal
from rustybt_api import Algorithm

class Script(Algorithm):
    def initialize(self, ctx):
        self.events = []
        self.orders = {}

    def on_order(self, event):
        self.events.append([event.order_id, event.status, str(event.fill_price) if event.fill_price is not None else None, event.reason])

    def on_tick(self, ctx):
        n = len(ctx.history("T"))
        if n == 1:
            o = self.orders
            o["limit"] = self.buy("T", 1, limit="9.50")
            o["stop"] = self.buy("T", 1, stop="10.80")
            o["stop_limit"] = self.buy("T", 1, stop="10.60", limit="10.40")
            o["trail"] = self.sell("T", 1, trail="0.50")
            o["moc"] = self.buy("T", 1, at="close")
            o["ioc"] = self.buy("T", 1, limit="9.00", tif="ioc")
            o["day_gtd"] = self.buy("T", 1, limit="1.00", good_till=ctx.time_ns + 3 * 60 * 10**9)
            o["modified"] = self.buy("T", 2, limit="8.00")
            o["modified"].modify(quantity=3, price="9.70")
            o["cancelled"] = self.buy("T", 1, limit="5.00")
            assert o["cancelled"].cancel()
            o["oco_a"] = self.buy("T", 1, limit="9.60")
            o["oco_b"] = self.buy("T", 1, stop="12.00")
            self.oco(o["oco_a"], o["oco_b"])

    def on_stop(self, ctx):
        out = {name: {"status": o.status, "price": str(o.average_price), "filled": str(o.filled_quantity),
                      "type": o.order_type, "tif": o.tif, "reason": o.reason}
               for name, o in self.orders.items()}
        with open(OUT, "w") as f:
            json.dump({"orders": out, "events": self.events}, f)
'''

# Bar 0 closes (orders placed); bar 1: open 10, low 9.4 first (nearer), then high 11, close 10.9;
# bar 2 falls: open 10.9, high 11.2, low 10.1, close 10.2; bar 3..5 quiet.
ROWS = [
    ("10.00", "10.10", "9.90", "10.00"),
    ("10.00", "11.00", "9.40", "10.90"),
    ("10.90", "11.20", "10.10", "10.20"),
    ("10.20", "10.30", "10.10", "10.20"),
    ("10.20", "10.30", "10.10", "10.20"),
    ("10.20", "10.30", "10.10", "10.20"),
]


def test_each_order_type_fills_where_the_path_says(run_rustybt, write_algo, tmp_path):
    report = tmp_path / "report.json"
    data = write_bars(tmp_path / "T.csv", ROWS)
    algo = write_algo(SCRIPT.replace("OUT", repr(str(report))))
    result = run_rustybt("run", "--algo", algo, "--data", data, "--symbol", "T", "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    got = json.loads(report.read_text())["orders"]

    def state(name):
        return got[name]["status"], got[name]["price"]

    # Path of bar 1: 10 → 9.40 → 11 → 10.90.
    assert state("limit") == ("filled", "9.50")  # touched on the way down, fills at the limit
    assert state("stop") == ("filled", "10.80")  # touched on the way up
    # Stop-limit: triggers at 10.60 on the way up, then needs 10.40 or lower: bar 2's low 10.10.
    assert state("stop_limit") == ("filled", "10.40")
    # Trailing 0.50 below the best price: starts at 9.50 (open 10), price drops to 9.40 → fills.
    assert state("trail") == ("filled", "9.50")
    assert state("moc") == ("filled", "10.90")
    assert got["ioc"]["status"] == "expired" and got["ioc"]["reason"] == "IOC: not marketable on its first bar"
    assert got["day_gtd"]["status"] == "expired" and got["day_gtd"]["tif"] == "gtd"
    assert state("modified") == ("filled", "9.70") and got["modified"]["filled"] == "3"
    assert got["cancelled"]["status"] == "cancelled"
    assert state("oco_a") == ("filled", "9.60")
    assert got["oco_b"]["status"] == "cancelled" and got["oco_b"]["reason"].startswith("OCO: order")
    events = json.loads(report.read_text())["events"]
    assert ["1", "accepted"] not in events  # ids are ints
    statuses = {(e[0], e[1]) for e in events}
    assert (1, "accepted") in statuses and (1, "filled") in statuses
    assert (3, "triggered") in statuses
    rows = result.csv_rows("orders.csv")
    assert {r["status"] for r in rows} >= {"new", "accepted", "triggered", "filled", "cancelled", "expired"}


REJECTS = '''
import json
from decimal import Decimal
from rustybt_api import Algorithm, OrderError

class Rejects(Algorithm):
    def on_tick(self, ctx):
        if len(ctx.history("T")) != 1:
            return
        out = {}
        out["lot"] = self.buy("T", 15)
        out["tick"] = self.buy("T", 10, limit="10.02")
        out["notional"] = self.buy("T", 10, limit="0.50")
        out["power"] = self.buy("T", 1000000)
        out["ok"] = self.buy("T", 10, limit="9.95")
        result = {k: [o.status, o.reason] for k, o in out.items()}
        errors = []
        for bad in (Decimal("NaN"), -5, 1.5):
            try:
                self.buy("T", bad)
            except OrderError as e:
                errors.append(str(e))
        result["errors"] = errors
        with open(OUT, "w") as f:
            json.dump(result, f)
'''


def test_rule_breaches_are_rejected_orders_and_malformed_requests_raise(run_rustybt, write_algo, tmp_path):
    report = tmp_path / "report.json"
    data = write_bars(tmp_path / "T.csv", ROWS)
    config = tmp_path / "run.toml"
    config.write_text(
        '[instruments.T]\ntick_size = "0.05"\nlot_size = "10"\nmin_notional = "50"\n'
        '[execution]\nvolume_share = "0.5"\nslippage_bps = "10"\nlatency = "5ms"\n'
    )
    algo = write_algo(REJECTS.replace("OUT", repr(str(report))))
    result = run_rustybt("run", "--algo", algo, "--data", data, "--symbol", "T", "--config", config,
                         "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    got = json.loads(report.read_text())
    assert got["lot"] == ["rejected", "quantity 15 is not a multiple of the lot size 10"]
    assert got["tick"] == ["rejected", "price 10.02 is not on the tick size 0.05"]
    assert got["notional"] == ["rejected", "order value 5.00 is below the minimum notional 50"]
    assert got["power"][0] == "rejected" and got["power"][1].startswith("insufficient buying power")
    assert got["ok"] == ["accepted", None]
    assert got["errors"][0] == "quantity is NaN"
    assert "quantity must be positive" in got["errors"][1]
    assert "floats are inexact" in got["errors"][2]
    rejected = [r for r in result.csv_rows("orders.csv") if r["status"] == "rejected"]
    assert len(rejected) == 4


def test_bad_execution_settings_are_usage_errors(run_rustybt, write_algo, tmp_path):
    data = write_bars(tmp_path / "T.csv", ROWS)
    algo = write_algo("from rustybt_api import Algorithm\nclass A(Algorithm):\n    pass\n")
    for text, message in [
        ('[execution]\npath = "sideways"\n', "execution.path: `sideways` is not a path"),
        ('[execution]\nvolume_share = "2"\n', "execution.volume_share must be in (0, 1]"),
        ('[instruments.T]\nmargin = "0"\n', "instrument T: margin must be in (0, 1]"),
        ('[instruments.NOPE]\ntick_size = "0.01"\n', "[instruments.NOPE] names a symbol that is not loaded"),
    ]:
        config = tmp_path / "bad.toml"
        config.write_text(text)
        result = run_rustybt("run", "--algo", algo, "--data", data, "--symbol", "T", "--config", config)
        assert result.returncode == 2, (text, result.stderr)
        assert message in result.stderr, (text, result.stderr)


CLOSE_WITH_BRACKET = '''
import json
from rustybt_api import Algorithm

class A(Algorithm):
    def on_tick(self, ctx):
        n = len(ctx.history("T"))
        if n == 1:
            self.bracket("T", "buy", 4, take_profit="50", stop_loss="1")
        elif n == 3:
            # Long 4 with two resting exits: close() sells the 4, it does not count the exits.
            order = self.close("T")
            with open(OUT, "w") as f:
                json.dump([order.side, str(order.quantity)], f)
'''


def test_close_ignores_bracket_exits_and_counts_only_unfilled_parts(run_rustybt, write_algo, tmp_path):
    report = tmp_path / "report.json"
    data = write_bars(tmp_path / "T.csv", ROWS)
    algo = write_algo(CLOSE_WITH_BRACKET.replace("OUT", repr(str(report))))
    result = run_rustybt("run", "--algo", algo, "--data", data, "--symbol", "T", "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text()) == ["sell", "4"]


PROFILE_ALGO = '''
import json
from rustybt_api import Algorithm

class A(Algorithm):
    def on_tick(self, ctx):
        n = len(ctx.history("T"))
        if n == 1:
            self.small = self.buy("T", 10)
            self.big = self.buy("T", 1500)     # 1.5x the equity at ~10: needs leverage
    def on_stop(self, ctx):
        with open(OUT, "w") as f:
            json.dump([self.big.status, self.big.reason, self.small.status], f)
'''


def test_a_broker_profile_sets_commission_slippage_latency_and_margin(run_rustybt, write_algo, tmp_path):
    report = tmp_path / "report.json"
    data = write_bars(tmp_path / "T.csv", ROWS, volume=1_000_000)
    algo = write_algo(PROFILE_ALGO.replace("OUT", repr(str(report))))
    plain = run_rustybt("run", "--algo", algo, "--data", data, "--symbol", "T", "--cash", "10000",
                        "--no-progress", "--quiet")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(report.read_text())[0] == "rejected"  # no profile: margin 1, no leverage
    config = tmp_path / "ibkr.toml"
    config.write_text(f'[execution]\nbroker_profile = "{ROOT / "config" / "brokers" / "ibkr_like.toml"}"\n')
    result = run_rustybt("run", "--algo", algo, "--data", data, "--symbol", "T", "--cash", "10000",
                         "--config", config, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    big, reason, small = json.loads(report.read_text())
    assert big != "rejected", reason  # Reg T-like 50% margin allows it
    fills = result.csv_rows("fills.csv")
    assert fills
    small_fills = [f for f in fills if f["order_id"] == "1"]
    assert small_fills, fills
    for f in small_fills:
        # IBKR-like: 0.005 per share, minimum 1, at most 1% of the value.
        quantity, price = Decimal(f["qty"]), Decimal(f["price"])
        assert Decimal(f["fee"]) == min(max(Decimal("0.005") * quantity, Decimal(1)), quantity * price / 100)
        # 100 ms into the bar the path (10 → 9.40 first) is at 10 - 0.6 × 0.005 legs = 9.997;
        # half spread and impact make a buy pay a little more, never less.
        assert Decimal("9.997") < price < Decimal("10.00")
        # 100 ms latency: the fill is 100 ms into the bar.
        assert f["time"] == "2024-01-01T00:01:00.100Z", f["time"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[execution]\nbroker_profile = "/nope.toml"\n')
    result = run_rustybt("run", "--algo", algo, "--data", data, "--symbol", "T", "--config", bad)
    assert result.returncode == 2 and "execution.broker_profile" in result.stderr


INITIALIZE_ORDERS = '''
from rustybt_api import Algorithm

class Eager(Algorithm):
    def initialize(self, ctx):
        # 100,000 cash, price 10: 100,000 shares need 1,000,000; 6,000 fit, 6,000 more do not.
        self.huge = self.buy("GOOG", 100000)
        self.first = self.buy("GOOG", 6000)
        self.second = self.buy("GOOG", 6000)
'''


def test_orders_placed_in_initialize_pass_the_buying_power_check(run_rustybt, write_algo, tmp_path):
    # Regression: before the symbol's first bar there is no price, and the check was skipped:
    # the huge order filled and cash went to -900,000 in a cash account.
    data = write_bars(tmp_path / "GOOG.csv", [("10", "10", "10", "10")] * 5)
    algo = write_algo(INITIALIZE_ORDERS)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--symbol", "GOOG", "--cash", "100000",
                         "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    final = {}
    for row in result.csv_rows("orders.csv"):
        final[row["order_id"]] = (row["status"], row["reason"])
    assert final["1"][0] == "rejected" and final["1"][1].startswith("insufficient buying power"), final
    assert final["2"] == ("filled", ""), final
    assert final["3"][0] == "rejected" and final["3"][1].startswith("insufficient buying power"), final
    fills = result.csv_rows("fills.csv")
    assert [(f["order_id"], f["qty"]) for f in fills] == [("2", "6000")]
    cash = [Decimal(r["cash"]) for r in result.csv_rows("equity.csv")]
    assert min(cash) == Decimal("40000"), "a cash account never goes below zero"


BATCH = '''
import json
import numpy as np
from decimal import Decimal
from rustybt_api import Algorithm

class Batch(Algorithm):
    batch = True

    def initialize(self, ctx):
        self.n = 0

    def on_tick(self, ctx):
        self.n += 1
        if self.n % 7:
            return
        # A rotating book: buy some symbols, sell others, leave one alone.
        k = len(ctx.symbols)
        wanted = np.array([((self.n // 7 + i) % 3 - 1) * (i + 1) for i in range(k)], dtype=np.int64)
        if self.batch:
            placed = self.order_many(wanted)
            assert [o.symbol for o in placed] == [s for s, q in zip(ctx.symbols, wanted) if q]
            assert [o.quantity * (1 if o.side == "buy" else -1) for o in placed] == [q for q in wanted.tolist() if q]
        else:
            for symbol, q in zip(ctx.symbols, wanted.tolist()):
                if q > 0:
                    self.buy(symbol, q)
                elif q < 0:
                    self.sell(symbol, -q)
'''


def test_order_many_places_the_orders_buy_and_sell_would(run_rustybt, write_algo):
    algo = write_algo(BATCH)
    one = run_rustybt("run", "--algo", algo, "--no-progress", "--quiet")
    assert one.returncode == 0, one.stderr
    each = run_rustybt("run", "--algo", algo, "--param", "batch=False", "--no-progress", "--quiet")
    assert each.returncode == 0, each.stderr
    orders = one.csv_rows("orders.csv")
    assert len({o["symbol"] for o in orders}) >= 3 and {o["side"] for o in orders} == {"buy", "sell"}
    assert any(o["status"] == "rejected" for o in orders) or len(orders) > 20
    for name in ("orders.csv", "fills.csv", "equity.csv"):
        assert (one.out / name).read_bytes() == (each.out / name).read_bytes(), name


BATCH_ERRORS = '''
import json
import numpy as np
from decimal import Decimal
from rustybt_api import Algorithm

class Errors(Algorithm):
    def on_tick(self, ctx):
        if len(ctx.history(ctx.symbols[0])) != 2:
            return
        errors = []
        k = len(ctx.symbols)
        for bad in (np.ones(k), np.ones(k + 1, dtype=np.int64), [1.5] * k, "abc"):
            try:
                self.order_many(bad)
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
        try:
            self.order_many([1], symbols=["NOPE"])
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
        # Exact quantities of every accepted kind, and a NumPy integer for a single order.
        placed = self.order_many([Decimal("2"), "3", np.int64(4)][:k], symbols=list(ctx.symbols[:3]))
        one = self.buy(ctx.symbols[0], np.int64(5))
        with open(OUT, "w") as f:
            json.dump({"errors": errors, "placed": [str(o.quantity) for o in placed],
                       "one": str(one.quantity)}, f)
'''


def test_order_many_refuses_inexact_or_mismatched_quantities(run_rustybt, write_algo, tmp_path):
    report = tmp_path / "report.json"
    algo = write_algo(BATCH_ERRORS.replace("OUT", repr(str(report))))
    result = run_rustybt("run", "--algo", algo, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    got = json.loads(report.read_text())
    floats, mismatch, float_list, text, unknown = got["errors"]
    assert "got a float64 array (floats are inexact): round first" in floats, floats
    assert "4 quantities for 3 symbols: give one per symbol of ctx.symbols" in mismatch, mismatch
    assert "floats are inexact" in float_list, float_list
    assert "quantity" in text, text
    assert unknown.startswith("UnknownSymbolError") and "`NOPE`" in unknown, unknown
    assert got["placed"] == ["2", "3", "4"] and got["one"] == "5"
