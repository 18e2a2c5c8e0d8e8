"""`rustybt data fetch --source yahoo`: the unmodified yfinance library inside the binary, its
HTTP session pointed at a local Yahoo chart-API stand-in (`tests/support/fake_yahoo.py`,
`--yahoo-url`). Raw (unsplit) bars, splits and dividends as events, the forming day left out."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT
from tests.support.catalog_files import read_bars
from tests.support.fake_yahoo import FakeYahoo, Listing, weekdays

DAYS = weekdays(dt.date(2024, 1, 2), 30)


def listings() -> dict[str, Listing]:
    aapl = {d: (f"{180 + i}.15", f"{181 + i}.35", f"{179 + i}.05", f"{180 + i}.85", str(50_000_000 + 4 * i)) for i, d in enumerate(DAYS)}
    spy = {d: (f"{470 + i}.10", f"{472 + i}.00", f"{469 + i}.50", f"{471 + i}.25", str(80_000_000 + i)) for i, d in enumerate(DAYS)}
    fx = {d: (f"1.09{i:02d}", f"1.10{i:02d}", f"1.08{i:02d}", f"1.095{i % 10}", "0") for i, d in enumerate(DAYS)}
    today = dt.datetime.now(ZoneInfo("America/New_York")).date()
    aapl[today] = ("999.00", "999.00", "999.00", "999.00", "1")  # still forming: never stored
    return {
        "AAPL": Listing(aapl, splits={DAYS[10]: (4, 1)}, dividends={DAYS[5]: "0.77", DAYS[20]: "0.24"}),
        "SPY": Listing(spy, dividends={DAYS[15]: "1.906"}, instrument="ETF"),
        "EURUSD=X": Listing(fx, timezone="Europe/London", currency="USD", instrument="CURRENCY", price_hint=4, open_time=dt.time(0)),
    }


@pytest.fixture
def yahoo() -> Iterator[FakeYahoo]:
    with FakeYahoo(listings()) as fake:
        yield fake


@pytest.fixture
def data(run_rustybt: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        return run_rustybt("data", "--catalog", tmp_path / "catalog", *args)

    return run


def midnight_ms(day: dt.date, zone: str) -> int:
    return int(dt.datetime.combine(day, dt.time(0), ZoneInfo(zone)).timestamp() * 1000)


def test_raw_bars_and_events(yahoo: FakeYahoo, data: Callable[..., Any], tmp_path: Path) -> None:
    result = data("fetch", "--source", "yahoo", "--symbols", "AAPL,SPY,EURUSD=X", "--timeframe", "1d",
                  "--start", "2023-12-01", "--yahoo-url", yahoo.url)
    assert result.returncode == 0, result.stderr
    result.assert_clean_failure()
    assert "fetched 30 bars of AAPL 1d from yahoo" in result.stdout
    assert "3 split/dividend events" in result.stdout
    for symbol, listing in listings().items():
        shown = data("show", symbol, "--json")
        assert shown.returncode == 0, shown.stderr
        [d] = json.loads(shown.stdout)
        assert d["rows"] == 30, (symbol, d["rows"])  # the forming day left out
        got = read_bars(tmp_path / "catalog" / "bars" / "yahoo" / symbol / "1d")
        want = [[midnight_ms(day, listing.timezone), *(Decimal(x) for x in listing.bars[day])] for day in DAYS]
        assert got == want, symbol
    [aapl] = json.loads(data("show", "AAPL", "--json").stdout)
    ny = "America/New_York"
    assert aapl["events"] == [
        {"time": iso(midnight_ms(DAYS[5], ny)), "kind": "dividend", "value": "0.77"},
        {"time": iso(midnight_ms(DAYS[10], ny)), "kind": "split", "value": "4"},
        {"time": iso(midnight_ms(DAYS[20], ny)), "kind": "dividend", "value": "0.24"},
    ]
    text = data("show", "AAPL")
    assert "split" in text.stdout and "dividend" in text.stdout
    # Bars before the split are the traded ones (Yahoo sent them divided by 4).
    assert Decimal(listings()["AAPL"].bars[DAYS[0]][3]) == Decimal("180.85")
    # A second fetch finds the span covered up to the forming day: nothing more is stored.
    again = data("fetch", "--source", "yahoo", "--symbols", "AAPL", "--timeframe", "1d", "--start", "2023-12-01", "--yahoo-url", yahoo.url)
    assert again.returncode == 0, again.stderr
    assert json.loads(data("show", "AAPL", "--json").stdout)[0]["rows"] == 30


def test_a_fetch_that_ends_before_a_split_stores_the_traded_prices(yahoo: FakeYahoo, data: Callable[..., Any],
                                                                    tmp_path: Path) -> None:
    """Yahoo divides every bar by the ratios of all the splits after it, up to today, whatever
    range was asked for: a fetch ending before AAPL's split (DAYS[10]) must still multiply its
    bars back (it stored them divided by 4), and so must the rest fetched later."""
    first = data("fetch", "--source", "yahoo", "--symbols", "AAPL", "--timeframe", "1d", "--start", "2023-12-01",
                 "--end", DAYS[5].isoformat(), "--yahoo-url", yahoo.url)
    assert first.returncode == 0, first.stderr
    rest = data("fetch", "--source", "yahoo", "--symbols", "AAPL", "--timeframe", "1d", "--start", "2023-12-01",
                "--yahoo-url", yahoo.url)
    assert rest.returncode == 0, rest.stderr
    listing = listings()["AAPL"]
    got = read_bars(tmp_path / "catalog" / "bars" / "yahoo" / "AAPL" / "1d")
    want = [[midnight_ms(day, listing.timezone), *(Decimal(x) for x in listing.bars[day])] for day in DAYS]
    assert got == want
    # The dividend before the split is the traded amount too; each event is stored once.
    [aapl] = json.loads(data("show", "AAPL", "--json").stdout)
    assert [(e["kind"], e["value"]) for e in aapl["events"]] == [("dividend", "0.77"), ("split", "4"), ("dividend", "0.24")]


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--symbols", "NOPE"], 2, "Yahoo has no ticker `NOPE`"),
        (["--timeframe", "4h"], 2, "Yahoo has no `4h` bars"),
        (["--exchange-url", "http://127.0.0.1:9"], 2, "`--exchange-url` is for `--source ccxt:<exchange>`"),
    ],
)
def test_yahoo_refusals(yahoo: FakeYahoo, data: Callable[..., Any], args: list[str], code: int, message: str) -> None:
    base = {"--source": "yahoo", "--symbols": "AAPL", "--timeframe": "1d", "--start": "2024-01-01", "--yahoo-url": yahoo.url}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    if "--exchange-url" in base:
        del base["--yahoo-url"]
    result = data("fetch", *[x for kv in base.items() for x in kv])
    result.assert_clean_failure()
    assert result.returncode == code, result.stderr
    assert message in result.stderr, result.stderr


def test_unreachable_yahoo(data: Callable[..., Any]) -> None:
    result = data("fetch", "--source", "yahoo", "--symbols", "AAPL", "--timeframe", "1d", "--start", "2024-01-01", "--yahoo-url", "http://127.0.0.1:9")
    result.assert_clean_failure()
    assert result.returncode == 4, result.stderr
    assert "Yahoo" in result.stderr


HOLD = """
from rustybt_api import Algorithm


class Hold(Algorithm):
    def initialize(self, ctx):
        self.bought = False
        self.seen = []

    def on_tick(self, ctx):
        self.seen.append((ctx.time.date().isoformat(), str(ctx.portfolio.position("AAPL")), str(ctx.portfolio.cash)))
        if not self.bought:
            self.bought = True
            self.buy("AAPL", 10)

    def on_stop(self, ctx):
        self.log.info("seen %s", self.seen)
"""


def fetched_split_listing(run_rustybt: Callable[..., Any], tmp_path: Path) -> tuple[Path, list[dt.date]]:
    """AAPL over 20 weekdays: 400 + i before a 4:1 split on day 10, 100 + i/4 after, dividends
    0.77 on day 5 and 0.24 on day 15, fetched into a catalog."""
    days = weekdays(dt.date(2024, 1, 2), 20)
    bars = {}
    for i, day in enumerate(days):
        price = Decimal(400 + i) if i < 10 else Decimal(100) + Decimal(i) / 4
        bars[day] = (f"{price:.2f}", f"{price + 1:.2f}", f"{price - 1:.2f}", f"{price:.2f}", "1000000")
    listing = Listing(bars, splits={days[10]: (4, 1)}, dividends={days[5]: "0.77", days[15]: "0.24"})
    catalog = tmp_path / "catalog"
    with FakeYahoo({"AAPL": listing}) as fake:
        fetched = run_rustybt("data", "--catalog", catalog, "fetch", "--source", "yahoo", "--symbols", "AAPL",
                              "--timeframe", "1d", "--start", "2023-12-01", "--yahoo-url", fake.url)
        assert fetched.returncode == 0, fetched.stderr
    return catalog, days


def run_hold(run_rustybt: Callable[..., Any], tmp_path: Path, catalog: Path, *extra: Any) -> Any:
    algo = tmp_path / "hold.py"
    algo.write_text(HOLD)
    return run_rustybt("run", "--algo", algo, "--symbols", "AAPL", "--source", "yahoo", "--timeframe", "1d",
                       "--catalog", catalog, "--offline", "--cash", "10000", "--no-progress", *extra)


def adjusted(value: Decimal, factor: Decimal) -> Decimal:
    """The reference: value × factor, half to even at 2 + 6 places (the run's rounding)."""
    return (value * factor).quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN).normalize()


def test_adjust_split_scales_the_bars_before_the_split_and_scales_the_dividends(
    run_rustybt: Callable[..., Any], tmp_path: Path
) -> None:
    catalog, days = fetched_split_listing(run_rustybt, tmp_path)
    run = run_hold(run_rustybt, tmp_path, catalog, "--adjust", "split")
    assert run.returncode == 0, run.stderr
    assert "note: --adjust split" in run.stderr
    # Bought 10 at the second day's open: 401 / 4.
    assert [(f["qty"], f["price"]) for f in run.csv_rows("fills.csv")] == [("10", "100.25")]
    # The split is in the prices; the dividends stay, per adjusted share (0.77 / 4 before it).
    actions = run.csv_rows("corporate_actions.csv")
    assert [(a["kind"], a["value"], a["quantity_before"], Decimal(a["cash"])) for a in actions] == [
        ("dividend", "0.1925", "10", Decimal("1.925")),
        ("dividend", "0.24", "10", Decimal("2.40")),
    ]
    last = Decimal(100) + Decimal(19) / 4
    cash = Decimal(10000) - Decimal("1002.5") + Decimal("1.925") + Decimal("2.40")
    assert Decimal(run.metrics()["final_equity"]) == cash + 10 * last
    assert run.metrics()["data"][0]["adjust"] == "split"
    # The same economics as the raw run: 40 shares after the split there, 10 here.
    raw = run_hold(run_rustybt, tmp_path, catalog)
    assert raw.returncode == 0, raw.stderr
    raw_final = Decimal(raw.metrics()["final_equity"])
    assert raw_final == Decimal(10000) - 4010 + Decimal("7.70") + Decimal("9.60") + 40 * last


def test_adjust_all_folds_the_dividends_into_the_prices_and_applies_no_event(
    run_rustybt: Callable[..., Any], tmp_path: Path
) -> None:
    catalog, days = fetched_split_listing(run_rustybt, tmp_path)
    run = run_hold(run_rustybt, tmp_path, catalog, "--adjust", "all")
    assert run.returncode == 0, run.stderr
    closes = [Decimal(400 + i) if i < 10 else Decimal(100) + Decimal(i) / 4 for i in range(20)]
    # Before each dividend: × (1 − dividend / the close before its ex-date); before the split: × 1/4.
    f15 = 1 - Decimal("0.24") / closes[14]
    f5 = 1 - Decimal("0.77") / closes[4]
    factor_day1 = f15 * Decimal("0.25") * f5
    assert [(f["qty"], f["price"]) for f in run.csv_rows("fills.csv")] == [
        ("10", str(adjusted(Decimal(401), factor_day1)))
    ]
    assert not (run.out / "corporate_actions.csv").exists() or run.csv_rows("corporate_actions.csv") == []
    # Total return: the last bar is raw, so the final equity is cash + 10 × the last close.
    assert Decimal(run.metrics()["final_equity"]) == Decimal(10000) - 10 * adjusted(Decimal(401), factor_day1) + 10 * closes[19]


def test_adjust_refuses_files_and_unknown_modes(run_rustybt: Callable[..., Any], tmp_path: Path) -> None:
    algo = tmp_path / "hold.py"
    algo.write_text(HOLD)
    files = run_rustybt("run", "--algo", algo, "--data", ROOT / "examples" / "data" / "sample" / "SYNA.csv",
                        "--adjust", "split", "--no-progress")
    assert files.returncode == 2
    assert "`--adjust` adjusts for the splits and dividends the data catalog stores" in files.stderr
    bogus = run_rustybt("run", "--algo", algo, "--symbols", "AAPL", "--adjust", "dividends", "--no-progress")
    assert bogus.returncode == 2
    assert "`dividends` is not an adjustment" in bogus.stderr


def test_splits_and_dividends_apply_in_a_run_on_raw_bars(
    run_rustybt: Callable[..., Any], tmp_path: Path
) -> None:
    """Raw bars fall to a quarter at a 4:1 split; the position follows, so equity does not
    drop, and dividends credit cash per share held on their ex-dates."""
    catalog, days = fetched_split_listing(run_rustybt, tmp_path)
    run = run_hold(run_rustybt, tmp_path, catalog)
    assert run.returncode == 0, run.stderr
    # Bought 10 at the second day's open (401), no costs.
    fills = run.csv_rows("fills.csv")
    assert [(f["qty"], f["price"]) for f in fills] == [("10", "401.00")]
    actions = run.csv_rows("corporate_actions.csv")
    ny = "America/New_York"
    assert [(a["kind"], a["value"], a["quantity_before"], a["quantity_after"], a["cash"]) for a in actions] == [
        ("dividend", "0.77", "10", "10", "7.70"),
        ("split", "4", "10", "40", "0"),
        ("dividend", "0.24", "40", "40", "9.60"),
    ]
    assert [a["ex_date"] for a in actions] == [iso(midnight_ms(d, ny)) for d in (days[5], days[10], days[15])]
    equity = {e["time"][:10]: Decimal(e["equity"]) for e in run.csv_rows("equity.csv")}
    cash = Decimal(10000) - 4010 + Decimal("7.70") + Decimal("9.60")
    last = Decimal(100) + Decimal(19) / 4
    assert Decimal(run.metrics()["final_equity"]) == cash + 40 * last
    # Across the split the equity moves with the price (408 → 4 × 102.5 = 410), not to a quarter.
    closes = sorted(equity.items())
    split_day = next(k for k, (t, _) in enumerate(closes) if t >= days[10].isoformat())
    before, after = closes[split_day - 1][1], closes[split_day][1]
    assert abs(after - before) < 50, (before, after)
    assert "AAPL split 4 (ex-date" in run.stderr
