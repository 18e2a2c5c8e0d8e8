"""Samples of what ``rustybt_api._live.host`` returns, from a real run against the fake exchange.

The Rust side (``src/live/venue.rs``) parses the saved files in its unit tests, and
``tests/python/test_live_host.py`` checks that the facade still produces JSON of the same shape,
so the two sides cannot drift apart. Regenerate after changing the facade's output::

    .venv/bin/python -m tests.support.venue_fixtures     # writes tests/fixtures/venue/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pylib"))

from rustybt_api._live.host import KINDS, HostVenue, VenueError, open_venue  # noqa: E402

from .fake_binance import FakeBinance, Market  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "venue"
MINUTE = 60_000
T0 = 1_700_000_000_000 // MINUTE * MINUTE
API_KEY = "k-PUBLIC-0123456789abcdef"
SECRET = "s-SECRET-fedcba9876543210"
FAST_RETRY = {"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 0.02, "seed": 7}


def new_fake() -> FakeBinance:
    return FakeBinance(
        [Market("BTCUSDT", "BTC", "USDT"), Market("ETHUSDT", "ETH", "USDT", tick_size="0.1", min_price="0.1", step_size="0.001", min_qty="0.001")],
        balances={"USDT": "100000", "BTC": "1"},
        prices={"BTCUSDT": "64000.10", "ETHUSDT": "50"},
        candles={"BTCUSDT": {"1m": [[T0 + i * MINUTE, "64000.10", "64010", "63990.5", "64000.11", "0.00001"] for i in range(3)]}},
        now_ms=T0 + 2 * MINUTE + 1,  # candle 2 is forming
        api_key=API_KEY,
        secret=SECRET,
    )


def config(fake: FakeBinance, **kw: Any) -> str:
    cfg: dict[str, Any] = {
        "api_key": fake.api_key,
        "secret": fake.secret,
        "urls": fake.url,
        "sandbox": False,
        "timeout_ms": 1000,
        "recv_window_ms": 300,
        "rate_limit_ms": 1,
        "settle_margin_ms": 0,
        "retry": FAST_RETRY,
    }
    cfg.update(kw)
    return json.dumps(cfg)


def intent(cid: str, qty: str = "0.001", **kw: Any) -> str:
    d: dict[str, Any] = {
        "client_order_id": cid,
        "symbol": "BTC/USDT",
        "side": "buy",
        "quantity": qty,
        "order_type": "market",
        "limit_price": None,
        "time_in_force": "gtc",
        "reference_price": None,
    }
    d.update(kw)
    return json.dumps(d)


def error_json(err: VenueError) -> dict[str, Any]:
    return {"kind": err.kind, "message": err.message, "retry_after_s": err.retry_after_s, "state_json": err.state_json}


def expect_error(call: Any, *args: Any) -> dict[str, Any]:
    try:
        call(*args)
    except VenueError as err:
        return error_json(err)
    raise AssertionError(f"{call.__name__}{args} did not raise VenueError")


def generate() -> dict[str, Any]:
    """Runs the scenario; returns {file stem: parsed JSON} (errors as their attributes)."""
    out: dict[str, Any] = {"kinds": list(KINDS), "intent": json.loads(intent("rbt-fx-2", order_type="limit", limit_price="63000.10"))}
    with new_fake() as fake:
        venue: HostVenue = open_venue("binance", config(fake))
        out["markets"] = json.loads(venue.markets(json.dumps(["BTC/USDT", "ETH/USDT"])))
        out["candles"] = json.loads(venue.closed_candles("BTC/USDT", "1m", T0, T0 + 2 * MINUTE + 1))
        out["order_filled"] = json.loads(venue.submit(intent("rbt-fx-1", reference_price="64000.10")))
        out["order_accepted"] = json.loads(venue.submit(intent("rbt-fx-2", order_type="limit", limit_price="63000.10")))
        out["lookup_found"] = json.loads(venue.lookup("rbt-fx-2", "BTC/USDT"))
        out["lookup_missing"] = json.loads(venue.lookup("rbt-fx-404", "BTC/USDT"))
        out["open_orders"] = json.loads(venue.open_orders())
        out["account_view"] = json.loads(venue.account_view("USDT"))
        out["balances"] = json.loads(venue.balances())
        out["order_cancelled"] = json.loads(venue.cancel("rbt-fx-2", "BTC/USDT"))
        out["fills"] = json.loads(venue.fills("BTC/USDT", None, None))
        venue.take_events()
        fake.inject(kind="status", method="GET", path="account", status=429, retry_after=0.01)
        venue.balances()
        out["events"] = json.loads(venue.take_events())
        fake.inject(kind="status", method="GET", path="account", status=429, retry_after=120)
        fake.inject(kind="reject", method="POST", path="order")
        out["errors"] = [
            expect_error(venue.cancel, "rbt-fx-1", "BTC/USDT"),  # not_cancellable: it filled
            expect_error(venue.balances),  # rate_limited: Retry-After 120 s > the policy's 60 s
            expect_error(venue.submit, intent("rbt-fx-3")),  # rejected: insufficient balance
            expect_error(venue.cancel, "rbt-fx-404", "BTC/USDT"),  # unknown_order
            expect_error(venue.lookup, "rbt-fx-1", "BTCUSDT"),  # unknown_symbol
            expect_error(venue.submit, intent("rbt-fx-4", qty="0.000015")),  # rule_violation: lot step
        ]
        venue.close()
    return out


def write(out: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, value in out.items():
        (OUT / f"{name}.json").write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    write(generate())
    print(f"wrote {len(list(OUT.glob('*.json')))} files to {OUT}")
