"""`rustybt data fetch --source yahoo` of intraday bars: the unmodified yfinance library against the
local Yahoo stand-in (`tests/support/fake_yahoo.py`), which builds intraday bars from raw minute
bars as Yahoo does and enforces Yahoo's intraday limits with Yahoo's answers.

The minute bars lie on the weekdays before today (New York), so none is still forming."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import pytest

from test_data_fetch_yahoo import data  # noqa: F401  (the fixture: `rustybt data` on a temporary catalog)
from tests.support.catalog_files import read_bars
from tests.support.fake_yahoo import FakeYahoo, Listing

NY = ZoneInfo("America/New_York")
SESSION_MINUTES = 390  # 09:30 to 16:00


def past_weekdays(count: int) -> list[dt.date]:
    """The `count` weekdays before today in New York, oldest first."""
    day, out = dt.datetime.now(NY).date(), []
    while len(out) < count:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            out.append(day)
    return out[::-1]


DAYS = past_weekdays(12)
SPLIT_DAY = DAYS[8]  # a 2-for-1 split inside the minute bars: Yahoo sends the bars before it halved


def minute_bars() -> dict[int, tuple[str, str, str, str, str]]:
    bars: dict[int, tuple[str, str, str, str, str]] = {}
    for d, day in enumerate(DAYS):
        session_open = dt.datetime.combine(day, dt.time(9, 30), NY)
        level = 200 if day < SPLIT_DAY else 100  # the traded prices halve at the split
        for m in range(SESSION_MINUTES):
            t = int((session_open + dt.timedelta(minutes=m)).timestamp())
            base = Decimal(level) + Decimal((d * 7 + m * 3) % 400) / 100
            bars[t] = (str(base), str(base + Decimal("0.37")), str(base - Decimal("0.21")),
                       str(base + Decimal("0.05")), str(1000 + (m * 13) % 900))
    return bars


def daily_of(minutes: dict[int, tuple[str, str, str, str, str]]) -> dict[dt.date, tuple[str, str, str, str, str]]:
    days: dict[dt.date, list[tuple[str, str, str, str, str]]] = {}
    for t in sorted(minutes):
        days.setdefault(dt.datetime.fromtimestamp(t, NY).date(), []).append(minutes[t])
    return {day: aggregate(rows) for day, rows in days.items()}


def aggregate(rows: list[tuple[str, str, str, str, str]]) -> tuple[str, str, str, str, str]:
    """The reference aggregation: first open, highest high, lowest low, last close, summed volume."""
    return (rows[0][0], str(max(Decimal(r[1]) for r in rows)), str(min(Decimal(r[2]) for r in rows)), rows[-1][3],
            str(sum(Decimal(r[4]) for r in rows)))


MINUTES = minute_bars()


@pytest.fixture
def yahoo() -> Iterator[FakeYahoo]:
    listing = Listing(daily_of(MINUTES), splits={SPLIT_DAY: (2, 1)}, minutes=MINUTES)
    with FakeYahoo({"MSFT": listing}) as fake:
        yield fake


def chart_requests(fake: FakeYahoo, interval: str) -> list[tuple[int, int]]:
    return [(int(p["period1"]), int(p["period2"])) for path, p in fake.requests
            if path.startswith("/v8/finance/chart/") and p.get("interval") == interval and "period1" in p]


def test_one_minute_bars_come_in_requests_yahoo_accepts_and_are_stored_as_traded(
        yahoo: FakeYahoo, data: Callable[..., Any], tmp_path: Path) -> None:
    start = DAYS[0] - dt.timedelta(days=1)
    result = data("fetch", "--source", "yahoo", "--symbols", "MSFT", "--timeframe", "1m", "--start", start.isoformat(),
                  "--yahoo-url", yahoo.url)
    assert result.returncode == 0, result.stderr
    result.assert_clean_failure()
    got = read_bars(tmp_path / "catalog" / "bars" / "yahoo" / "MSFT" / "1m")
    want = [[t * 1000, *(Decimal(x) for x in MINUTES[t])] for t in sorted(MINUTES)]
    assert len(got) == len(want) == 12 * SESSION_MINUTES
    assert got == want  # the bars before the split multiplied back: what traded, exactly
    # Yahoo answers at most 7 days of 1m bars per request: the span took several.
    spans = chart_requests(yahoo, "1m")
    assert len(spans) >= 2 and all(hi - lo <= 7 * 86_400 for lo, hi in spans)
    [d] = json.loads(data("show", "MSFT", "--json").stdout)
    assert [(e["kind"], e["value"]) for e in d["events"]] == [("split", "2")]
    # Fetching again asks only for what is not covered yet (today's bars, none so far).
    before = len(chart_requests(yahoo, "1m"))
    again = data("fetch", "--source", "yahoo", "--symbols", "MSFT", "--timeframe", "1m", "--start", start.isoformat(),
                 "--yahoo-url", yahoo.url)
    assert again.returncode == 0, again.stderr
    assert all(lo >= int(dt.datetime.combine(DAYS[-1], dt.time(16), NY).timestamp()) - 60
               for lo, _ in chart_requests(yahoo, "1m")[before:])
    assert read_bars(tmp_path / "catalog" / "bars" / "yahoo" / "MSFT" / "1m") == want


def test_hourly_bars_keep_yahoos_session_alignment(yahoo: FakeYahoo, data: Callable[..., Any], tmp_path: Path) -> None:
    """Yahoo's 60m bars open at 09:30, 10:30, … 15:30 (the last one half an hour long)."""
    result = data("fetch", "--source", "yahoo", "--symbols", "MSFT", "--timeframe", "1h", "--start",
                  (DAYS[0] - dt.timedelta(days=1)).isoformat(), "--yahoo-url", yahoo.url)
    assert result.returncode == 0, result.stderr
    got = read_bars(tmp_path / "catalog" / "bars" / "yahoo" / "MSFT" / "1h")
    want = []
    for day in DAYS:
        session_open = dt.datetime.combine(day, dt.time(9, 30), NY)
        for hour in range(7):
            start = int((session_open + dt.timedelta(hours=hour)).timestamp())
            rows = [MINUTES[t] for t in range(start, start + 3600, 60) if t in MINUTES]
            want.append([start * 1000, *(Decimal(x) for x in aggregate(rows))])
    assert got == want
    assert [dt.datetime.fromtimestamp(t / 1000, NY).strftime("%H:%M") for t, *_ in got[:7]] == [
        "09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]


def test_a_start_older_than_yahoo_keeps_is_refused_with_the_date_to_use(
        yahoo: FakeYahoo, data: Callable[..., Any], tmp_path: Path) -> None:
    start = dt.date.today() - dt.timedelta(days=45)
    result = data("fetch", "--source", "yahoo", "--symbols", "MSFT", "--timeframe", "1m", "--start", start.isoformat(),
                  "--yahoo-url", yahoo.url)
    result.assert_clean_failure()
    assert result.returncode == 2, result.stderr
    assert "Yahoo keeps `1m` bars for the last 30 days only: start at " in result.stderr
    assert "or fetch a coarser timeframe" in result.stderr
    assert chart_requests(yahoo, "1m") == []  # refused before asking Yahoo for bars it would refuse


def test_a_run_reads_the_fetched_minute_bars(yahoo: FakeYahoo, data: Callable[..., Any], run_rustybt: Callable[..., Any],
                                             tmp_path: Path) -> None:
    fetched = data("fetch", "--source", "yahoo", "--symbols", "MSFT", "--timeframe", "1m", "--start",
                   (DAYS[0] - dt.timedelta(days=1)).isoformat(), "--yahoo-url", yahoo.url)
    assert fetched.returncode == 0, fetched.stderr
    algo = tmp_path / "hold.py"
    algo.write_text("from rustybt_api import Algorithm\n\n\nclass Hold(Algorithm):\n"
                    "    def on_tick(self, ctx):\n        if not ctx.portfolio.position('MSFT'):\n"
                    "            self.buy('MSFT', 10)\n")
    run = run_rustybt("run", "--algo", algo, "--symbols", "MSFT", "--timeframe", "1m", "--catalog", tmp_path / "catalog",
                      "--offline", "--no-progress", "-q")
    assert run.returncode == 0, run.stderr
    assert run.metrics()["run"]["bars_processed"] == 12 * SESSION_MINUTES
    assert [f["qty"] for f in run.csv_rows("fills.csv")] == ["10"]
    # The split in the middle doubles the position: the 10 shares bought at the start are 20.
    actions = run.csv_rows("corporate_actions.csv")
    assert [(a["kind"], a["value"], a["quantity_before"]) for a in actions] == [("split", "2", "10")]
