"""`rustybt data fetch --source ccxt:binance`: the real ccxt client inside the binary against the
local Binance stand-in (`tests/support/fake_binance.py`, in this process): paging, retries on
429/5xx, the forming candle, incremental requests proven by the stand-in's request log,
`kill -9` in the middle and a rerun, and the refusals."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support.catalog_files import read_bars
from tests.support.fake_binance import Fault, FakeBinance, Market, generate_history

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MIN = 60_000


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return tmp_path / "catalog"


def exchange(count: int, *, forming_at: int | None = None, page_cap: int = 1000) -> FakeBinance:
    """BTC/USDT and ETH/USDT with `count` one-minute candles from T0 each; the fake's clock is
    30 s into the last one, which is therefore still forming."""
    fake = FakeBinance(
        markets=[Market("BTCUSDT", "BTC", "USDT"), Market("ETHUSDT", "ETH", "USDT")],
        now_ms=T0 + (forming_at if forming_at is not None else count - 1) * MIN + 30_000,
        max_klines_limit=page_cap,
        time_follows_clock=True,
    )
    fake.add_candles("BTCUSDT", "1m", generate_history(T0, count, "1m"))
    fake.add_candles("ETHUSDT", "1m", generate_history(T0, count, "1m", price="2000.00", seed=3))
    return fake


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeBinance]]:
    started: list[FakeBinance] = []

    def start(count: int, **kw: Any) -> FakeBinance:
        f = exchange(count, **kw).start()
        started.append(f)
        return f

    yield start
    for f in started:
        f.stop()


@pytest.fixture
def fetch(run_rustybt: Callable[..., Any], catalog: Path) -> Callable[..., Any]:
    def run(url: str, *args: str, symbols: str = "BTC/USDT", start: str = "2024-01-01") -> Any:
        return run_rustybt(
            "data", "--catalog", catalog, "fetch", "--source", "ccxt:binance", "--symbols", symbols,
            "--timeframe", "1m", "--start", start, "--exchange-url", url, *args,
        )

    return run


def datasets(run_rustybt: Callable[..., Any], catalog: Path, symbol: str = "BTC/USDT") -> dict[str, Any]:
    shown = run_rustybt("data", "--catalog", catalog, "show", symbol, "--json")
    assert shown.returncode == 0, shown.stderr
    [d] = json.loads(shown.stdout)
    return d  # type: ignore[no-any-return]


def stored_bars(catalog: Path, symbol: str = "BTC/USDT", timeframe: str = "1m") -> list[list[Any]]:
    """The catalog's bars read with pyarrow: [open ms, open, high, low, close, volume]."""
    return read_bars(catalog / "bars" / "ccxt%3Abinance" / symbol.replace("/", "%2F") / timeframe)


def expected(count: int, **kw: Any) -> list[list[Any]]:
    return [[int(r[0]), *(Decimal(r[k]) for k in range(1, 6))] for r in generate_history(T0, count, "1m", **kw)]


def klines(f: FakeBinance) -> list[Any]:
    return [r for r in f.requests if r.path == "klines"]


def test_pages_retries_and_forming_candle(fake: Callable[..., FakeBinance], fetch: Callable[..., Any], run_rustybt: Callable[..., Any], catalog: Path) -> None:
    f = fake(5001, page_cap=700)  # candle 5000 is forming
    f.inject(Fault(kind="status", status=429, retry_after=0.2, path="klines", skip=2))
    f.inject(Fault(kind="status", status=503, path="klines", skip=4))
    result = fetch(f.url, symbols="BTC/USDT,ETH/USDT")
    assert result.returncode == 0, result.stderr
    result.assert_clean_failure()
    assert "fetched 5000 bars of BTC/USDT 1m" in result.stdout
    # Exactly the stand-in's closed bars, exact decimals, the forming one left out.
    assert stored_bars(catalog) == expected(5000)
    assert stored_bars(catalog, "ETH/USDT") == expected(5000, price="2000.00", seed=3)
    reqs = klines(f)
    statuses = [r.status for r in reqs]
    assert statuses.count(429) == 1 and statuses.count(503) == 1, statuses
    # each failed request was retried with the same page start, which then succeeded
    for i, r in enumerate(reqs):
        if r.status != 200:
            assert reqs[i + 1].params["startTime"] == r.params["startTime"] and reqs[i + 1].status == 200
    # 5000 bars in pages of at most 700, per symbol: the short pages did not end the fetch
    assert sum(1 for r in reqs if r.status == 200 and r.params["symbol"] == "BTCUSDT") == 8
    d = datasets(run_rustybt, catalog)
    assert d["rows"] == 5000 and d["last"] == "2024-01-04T11:19:00Z"
    assert d["intervals"] == [["2024-01-01T00:00:00Z", "2024-01-04T11:20:00Z"]]
    verify = run_rustybt("data", "--catalog", catalog, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_second_fetch_requests_only_the_missing_interval(fake: Callable[..., FakeBinance], fetch: Callable[..., Any], run_rustybt: Callable[..., Any], catalog: Path) -> None:
    f = fake(3001)
    first = fetch(f.url, "--end", "2024-01-01T16:39:00Z")  # bars 0..999 (end inclusive)
    assert first.returncode == 0, first.stderr
    assert "fetched 1000 bars" in first.stdout
    assert stored_bars(catalog) == expected(1000)
    f.requests.clear()
    second = fetch(f.url)  # up to now: bars 0..2999
    assert second.returncode == 0, second.stderr
    assert "fetched 2000 bars" in second.stdout
    starts = [int(r.params["startTime"]) for r in klines(f)]
    assert starts and min(starts) == T0 + 1000 * MIN, starts
    assert stored_bars(catalog) == expected(3000)
    # Nothing missing now but the forming minute: one request, nothing stored.
    f.requests.clear()
    third = fetch(f.url)
    assert third.returncode == 0, third.stderr
    assert [int(r.params["startTime"]) for r in klines(f)] == [T0 + 3000 * MIN]
    assert datasets(run_rustybt, catalog)["rows"] == 3000


def test_kill_mid_fetch_then_rerun(fake: Callable[..., FakeBinance], binary: Path, run_rustybt: Callable[..., Any], catalog: Path) -> None:
    f = fake(20_001, page_cap=500)
    f.inject(Fault(kind="delay", path="klines", delay_s=0.15, times=1_000))  # 40 slow pages
    argv = [str(binary), "data", "--catalog", str(catalog), "fetch", "--source", "ccxt:binance", "--symbols", "BTC/USDT",
            "--timeframe", "1m", "--start", "2024-01-01", "--exchange-url", f.url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 60
    rows = 0
    while time.monotonic() < deadline and rows == 0:  # wait for a committed batch
        time.sleep(0.3)
        listed = run_rustybt("data", "--catalog", catalog, "list", "--json")
        rows = sum(d["rows"] for d in json.loads(listed.stdout or "[]"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < rows < 20_000, rows
    f.faults.clear()
    f.requests.clear()
    rerun = run_rustybt("data", "--catalog", catalog, "fetch", "--source", "ccxt:binance", "--symbols", "BTC/USDT",
                        "--timeframe", "1m", "--start", "2024-01-01", "--exchange-url", f.url)
    assert rerun.returncode == 0, rerun.stderr
    # it continued from what was committed, not from the start
    assert min(int(r.params["startTime"]) for r in klines(f)) >= T0 + rows * MIN
    assert stored_bars(catalog) == expected(20_000)
    d = datasets(run_rustybt, catalog)
    assert d["intervals"] == [["2024-01-01T00:00:00Z", "2024-01-14T21:20:00Z"]]
    verify = run_rustybt("data", "--catalog", catalog, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_crash_after_a_batch_commit_resumes(fake: Callable[..., FakeBinance], fetch: Callable[..., Any], run_rustybt: Callable[..., Any], catalog: Path) -> None:
    f = fake(3001)
    crashed = run_rustybt("data", "--catalog", catalog, "fetch", "--source", "ccxt:binance", "--symbols", "BTC/USDT,ETH/USDT",
                          "--timeframe", "1m", "--start", "2024-01-01", "--exchange-url", f.url,
                          env={**os.environ, "RUSTYBT_TEST_CRASH": "fetch-batch-committed"})
    assert crashed.returncode != 0
    assert datasets(run_rustybt, catalog)["rows"] == 3000
    assert run_rustybt("data", "--catalog", catalog, "list", "--json").stdout.count("ETH/USDT") == 0
    f.requests.clear()
    rerun = fetch(f.url, symbols="BTC/USDT,ETH/USDT")
    assert rerun.returncode == 0, rerun.stderr
    assert {r.params["symbol"] for r in klines(f) if int(r.params["startTime"]) < T0 + 3000 * MIN} == {"ETHUSDT"}
    assert stored_bars(catalog, "ETH/USDT") == expected(3000, price="2000.00", seed=3)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--symbols", "DOGE/USDT"], 2, "binance has no market `DOGE/USDT`"),
        (["--timeframe", "7m"], 2, "binance has no `7m` bars; it has: 1s, 1m"),
        (["--source", "ccxt:binanze"], 2, "ccxt has no exchange `binanze`; did you mean `ccxt:binance`"),
        (["--exchange-url", "http://127.0.0.1:9/api/v3"], 4, "NetworkError"),
        (["--start", "yesterday"], 2, "--start"),
    ],
)
def test_refusals(fake: Callable[..., FakeBinance], run_rustybt: Callable[..., Any], catalog: Path, args: list[str], code: int, message: str) -> None:
    f = fake(10)
    base = {"--source": "ccxt:binance", "--symbols": "BTC/USDT", "--timeframe": "1m", "--start": "2024-01-01", "--exchange-url": f.url}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    result = run_rustybt("data", "--catalog", catalog, "fetch", *flat)
    result.assert_clean_failure()
    assert result.returncode == code, result.stderr
    assert message in result.stderr, result.stderr


# ------------------------------------------------------------------------------ runs that fetch

SMA = ROOT / "algorithms" / "sma_cross.py"


def test_run_fetches_what_the_catalog_misses(fake: Callable[..., FakeBinance], run_rustybt: Callable[..., Any], catalog: Path) -> None:
    f = fake(3001)
    args = ["run", "--algo", SMA, "--symbols", "BTC/USDT", "--timeframe", "1m", "--start", "2024-01-01",
            "--end", "2024-01-02T23:59:00Z", "--source", "ccxt:binance", "--catalog", catalog]
    first = run_rustybt(*args, "--exchange-url", f.url)
    assert first.returncode == 0, first.stderr
    assert "fetched 2880 bars of BTC/USDT 1m from ccxt:binance" in first.stderr
    [used] = first.metrics()["data"]
    assert (used["source"], used["rows"], used["first"], used["last"]) == ("ccxt:binance", 2880, "2024-01-01T00:00:00Z", "2024-01-02T23:59:00Z")
    assert stored_bars(catalog) == expected(2880)
    # The catalog covers the span now: a second run asks the exchange for no bars.
    f.requests.clear()
    second = run_rustybt(*args, "--exchange-url", f.url)
    assert second.returncode == 0, second.stderr
    assert klines(f) == []
    assert second.metrics()["data"] == first.metrics()["data"]
    # --offline never reaches the exchange (here: a closed port) and runs on the catalog.
    offline = run_rustybt(*args, "--exchange-url", "http://127.0.0.1:9/api/v3", "--offline")
    assert offline.returncode == 0, offline.stderr
    assert offline.metrics()["data"] == first.metrics()["data"]


def test_run_config_keys_fetch_too(fake: Callable[..., FakeBinance], run_rustybt: Callable[..., Any], catalog: Path, tmp_path: Path) -> None:
    f = fake(1500)
    config = tmp_path / "run.toml"
    config.write_text(
        f'[run]\nstart = "2024-01-01"\nend = "2024-01-01T23:59:00Z"\n'
        f'[data]\nsymbols = ["ETH/USDT"]\ntimeframe = "1m"\nsource = "ccxt:binance"\n'
        f'catalog = "{catalog}"\nexchange_url = "{f.url}"\n'
    )
    result = run_rustybt("run", "--algo", SMA, "--config", config)
    assert result.returncode == 0, result.stderr
    assert stored_bars(catalog, "ETH/USDT") == expected(1440, price="2000.00", seed=3)
    offline = run_rustybt("run", "--algo", SMA, "--config", config, "--offline", "--catalog", catalog.parent / "empty")
    offline.assert_clean_failure()
    assert offline.returncode == 2 and "has no data of `ETH/USDT`" in offline.stderr, offline.stderr


# ------------------------------------------------------------------------------ size limit

def test_max_size_evicts_least_recently_used(fake: Callable[..., FakeBinance], fetch: Callable[..., Any], run_rustybt: Callable[..., Any], catalog: Path) -> None:
    f = fake(3001)
    assert fetch(f.url, symbols="BTC/USDT").returncode == 0
    assert fetch(f.url, symbols="ETH/USDT").returncode == 0
    sizes = {d["symbol"]: d["bytes"] for d in json.loads(run_rustybt("data", "--catalog", catalog, "list", "--json").stdout)}
    # A run reads BTC/USDT: ETH/USDT is now the least recently used.
    ran = run_rustybt("run", "--algo", SMA, "--symbols", "BTC/USDT", "--timeframe", "1m", "--catalog", catalog)
    assert ran.returncode == 0, ran.stderr
    no_limit = run_rustybt("data", "--catalog", catalog, "prune")
    assert no_limit.returncode == 2 and "no size limit" in no_limit.stderr
    limit = max(sizes.values()) + 100
    pruned = run_rustybt("data", "--catalog", catalog, "prune", "--max-size", str(limit))
    assert pruned.returncode == 0, pruned.stderr
    assert "evicted ccxt:binance ETH/USDT 1m" in pruned.stdout
    left = [d["symbol"] for d in json.loads(run_rustybt("data", "--catalog", catalog, "list", "--json").stdout)]
    assert left == ["BTC/USDT"]
    # The limit is kept: a later fetch keeps what it wrote and evicts the older dataset.
    again = fetch(f.url, symbols="ETH/USDT")
    assert again.returncode == 0, again.stderr
    assert "evicted ccxt:binance BTC/USDT 1m" in again.stdout
    left = [d["symbol"] for d in json.loads(run_rustybt("data", "--catalog", catalog, "list", "--json").stdout)]
    assert left == ["ETH/USDT"]
    bad = run_rustybt("data", "--catalog", catalog, "prune", "--max-size", "12 parsecs")
    assert bad.returncode == 2 and "unknown size unit" in bad.stderr
    verify = run_rustybt("data", "--catalog", catalog, "verify")
    assert verify.returncode == 0, verify.stdout


def test_resample_stores_whole_higher_bars(fake: Callable[..., FakeBinance], fetch: Callable[..., Any], run_rustybt: Callable[..., Any], catalog: Path) -> None:
    f = fake(3031)  # 3030 closed minutes: 50 whole hours and half of the 51st
    assert fetch(f.url).returncode == 0
    result = run_rustybt("data", "--catalog", catalog, "resample", "BTC/USDT", "--to", "1h")
    assert result.returncode == 0, result.stderr
    assert "resampled ccxt:binance BTC/USDT 1m to 1h: 50 bars" in result.stdout
    minutes = expected(3030)
    want = []
    for h in range(50):
        chunk = minutes[h * 60:(h + 1) * 60]
        want.append([T0 + h * 3_600_000, chunk[0][1], max(r[2] for r in chunk), min(r[3] for r in chunk), chunk[-1][4], sum(r[5] for r in chunk)])
    got = stored_bars(catalog, timeframe="1h")
    assert got == want
    # the 1h dataset runs like any other
    ran = run_rustybt("run", "--algo", SMA, "--symbols", "BTC/USDT", "--timeframe", "1h", "--catalog", catalog)
    assert ran.returncode == 0, ran.stderr
    bad = run_rustybt("data", "--catalog", catalog, "resample", "BTC/USDT", "--timeframe", "1h", "--to", "90m")
    assert bad.returncode == 2 and "is not a multiple" in bad.stderr, bad.stderr


def test_optimize_fetches_what_the_catalog_misses(fake: Callable[..., FakeBinance], run_rustybt: Callable[..., Any], catalog: Path, tmp_path: Path) -> None:
    f = fake(1500)
    args = ["optimize", "--algo", SMA, "--symbols", "BTC/USDT", "--timeframe", "1m", "--start", "2024-01-01",
            "--end", "2024-01-01T23:59:00Z", "--source", "ccxt:binance",
            "--param", "fast=5,8", "--maximize", "net_profit", "-j", "1", "--no-progress"]
    study = run_rustybt(*args, "--catalog", catalog, "--exchange-url", f.url, "--study", tmp_path / "study")
    assert study.returncode == 0, study.stderr
    assert "fetched 1440 bars of BTC/USDT 1m from ccxt:binance" in study.stderr
    assert stored_bars(catalog) == expected(1440)
    # The trials ran on those bars: each equals a plain run on the catalog.
    run = run_rustybt("run", "--algo", SMA, "--symbols", "BTC/USDT", "--timeframe", "1m", "--start", "2024-01-01",
                      "--end", "2024-01-01T23:59:00Z", "--catalog", catalog, "--param", "fast=8", "--no-progress")
    assert run.returncode == 0, run.stderr
    shown = run_rustybt("optimize", "show", tmp_path / "study", "--csv")
    assert shown.returncode == 0, shown.stderr
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    [trial] = [r for r in rows if r["fast"] == "8"]
    assert Decimal(trial["net_profit"]) == Decimal(run.metrics()["net_profit"])
    # A failing fetch (nothing listens) stops the study with the fetch's own exit code.
    failed = run_rustybt(*args, "--exchange-url", "http://127.0.0.1:9/api/v3", "--study", tmp_path / "study2",
                         "--catalog", tmp_path / "empty")
    assert failed.returncode == 4, failed.stderr
    assert not (tmp_path / "study2" / "study.sqlite").exists()
