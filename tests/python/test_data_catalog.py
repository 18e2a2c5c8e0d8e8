"""The data catalog end to end: import, list, show, verify, rm; exact storage readable by
pandas and polars; runs from the catalog (and the checksums they record); validation findings;
crash safety under `kill -9`; and a property test from random text to the values a run sees."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
CASES = itertools.count()
SMA = ROOT / "algorithms" / "sma_cross.py"

DUMP_ALGO = '''
import json, os
from pathlib import Path
from rustybt_api import Algorithm, Context


class Dump(Algorithm):
    def on_stop(self, ctx: Context) -> None:
        out = []
        for s in ctx.symbols:
            b = ctx.history(s)
            for i in range(len(b)):
                out.append([s, int(b.time_ns[i])] + [str(b.decimal(f, i)) for f in ("open", "high", "low", "close", "volume")])
        Path(os.environ["RUSTYBT_TEST_DUMP"]).write_text(json.dumps(out))
'''


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return tmp_path / "catalog"


@pytest.fixture
def data(run_rustybt: Callable[..., Any], catalog: Path) -> Callable[..., Any]:
    def run(*args: Any, env: dict[str, str] | None = None) -> Any:
        return run_rustybt("data", *args, "--catalog", catalog, env=env)

    return run


def listing(data: Callable[..., Any]) -> list[dict[str, Any]]:
    result = data("list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def partitions(catalog: Path, symbol: str = "TEST", timeframe: str = "1m") -> list[Path]:
    return sorted((catalog / "bars" / "file" / symbol / timeframe).glob("*.parquet"))


def test_import_list_show_verify_rm(data: Callable[..., Any], bars_csv: Callable[..., Path], catalog: Path) -> None:
    path = bars_csv(rows=3000)  # 2024-01-02 onwards, one-minute bars: one month
    result = data("import", path)
    assert result.returncode == 0, result.stderr
    assert "imported 3000 bars of TEST 1m" in result.stdout
    [d] = listing(data)
    assert (d["source"], d["symbol"], d["timeframe"], d["rows"], d["gaps"]) == ("file", "TEST", "1m", 3000, 0)
    text = data("list")
    assert "TEST" in text.stdout and "3000" in text.stdout
    show = data("show", "TEST")
    assert show.returncode == 0, show.stderr
    first = pd.read_csv(path, dtype=str).iloc[0]
    assert first["close"] in show.stdout and "covers" in show.stdout
    verify = data("verify")
    assert verify.returncode == 0 and "ok" in verify.stdout, verify.stdout + verify.stderr
    rm = data("rm", "TEST")
    assert rm.returncode == 0 and "removed file TEST 1m" in rm.stdout
    assert listing(data) == []
    missing = data("show", "TEST")
    assert missing.returncode == 2 and "no dataset of `TEST`" in missing.stderr


def test_partitions_are_exact_for_pandas_and_polars(
    data: Callable[..., Any], bars_csv: Callable[..., Path], catalog: Path
) -> None:
    path = bars_csv(rows=500)
    assert data("import", path).returncode == 0
    files = partitions(catalog)
    frame = pd.concat([pd.read_parquet(f) for f in files])
    source = pd.read_csv(path, dtype=str)
    for col in ("open", "high", "low", "close", "volume"):
        assert [Decimal(v) for v in source[col]] == list(frame[col]), col
        assert all(isinstance(v, Decimal) for v in frame[col])
    assert list(frame["time"]) == list(pd.to_datetime(source["timestamp"], utc=True))
    polars = pl.read_parquet(files[0])
    assert polars["close"].dtype.is_decimal()
    assert [Decimal(v) for v in source["close"][: len(polars)]] == polars["close"].to_list()


def test_an_update_rewrites_only_the_months_it_touches(
    data: Callable[..., Any], catalog: Path, tmp_path: Path
) -> None:
    from rustybt_api.testing import generate_bars, write_csv

    start = dt.datetime(2024, 1, 30, tzinfo=dt.timezone.utc)
    first = write_csv(tmp_path / "a" / "TEST.csv", generate_bars(4 * 1440, seed=1, start=start))
    assert data("import", first).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in partitions(catalog)}
    assert sorted(k[:7] for k in before) == ["2024-01", "2024-02"]
    # One more day in February: January's file stays as it was.
    later = write_csv(
        tmp_path / "b" / "TEST.csv", generate_bars(1440, seed=2, start=start + dt.timedelta(days=4))
    )
    assert data("import", later).returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in partitions(catalog)}
    jan = [k for k in before if k.startswith("2024-01")]
    assert jan and all(after.get(k) == before[k] for k in jan)
    assert not any(k in after for k in before if k.startswith("2024-02")), "February was rewritten"
    [d] = listing(data)
    assert d["rows"] == 5 * 1440 and d["gaps"] == 0


def test_run_from_catalog_equals_run_from_csv_and_records_checksums(
    run_rustybt: Callable[..., Any], data: Callable[..., Any], bars_csv: Callable[..., Path], catalog: Path
) -> None:
    path = bars_csv(rows=2000)
    assert data("import", path).returncode == 0
    from_csv = run_rustybt("run", "--algo", SMA, "--data", path, "--no-progress")
    from_catalog = run_rustybt(
        "run", "--algo", SMA, "--symbols", "TEST", "--timeframe", "1m", "--catalog", catalog, "--no-progress"
    )
    assert from_csv.returncode == 0, from_csv.stderr
    assert from_catalog.returncode == 0, from_catalog.stderr
    a, b = from_csv.metrics(), from_catalog.metrics()
    for key in ("final_equity", "net_profit", "total_return", "start_time", "end_time"):
        assert a[key] == b[key], key
    assert from_csv.csv_rows("fills.csv") == from_catalog.csv_rows("fills.csv")
    [d] = listing(data)
    assert "data" not in a
    assert b["data"] == [
        {
            "source": "file",
            "symbol": "TEST",
            "timeframe": "1m",
            "checksum": d["checksum"],
            "first": d["first"],
            "last": d["last"],
            "rows": 2000,
            "catalog": str(catalog),
        }
    ]
    # --start/--end narrow a catalog run as they do a file run.
    part = run_rustybt(
        "run", "--algo", SMA, "--symbols", "TEST", "--catalog", catalog, "--no-progress",
        "--start", "2024-01-01T10:00:00Z", "--end", "2024-01-01T12:00:00Z",
    )
    assert part.returncode == 0, part.stderr
    assert part.metrics()["start_time"].startswith("2024-01-01T10:0")


def test_config_keys_read_the_catalog(
    run_rustybt: Callable[..., Any], data: Callable[..., Any], bars_csv: Callable[..., Path], catalog: Path, tmp_path: Path
) -> None:
    assert data("import", bars_csv(rows=200)).returncode == 0
    config = tmp_path / "run.toml"
    config.write_text(f'[data]\nsymbols = ["TEST"]\ntimeframe = "1m"\ncatalog = "{catalog}"\n')
    result = run_rustybt("run", "--algo", SMA, "--config", config, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.metrics()["data"][0]["symbol"] == "TEST"


def test_run_refuses_missing_and_ambiguous_datasets(
    run_rustybt: Callable[..., Any], data: Callable[..., Any], bars_csv: Callable[..., Path], catalog: Path
) -> None:
    result = run_rustybt("run", "--algo", SMA, "--symbols", "NOPE", "--catalog", catalog)
    assert result.returncode == 2
    assert "no data of `NOPE`" in result.stderr and "rustybt data import" in result.stderr
    path = bars_csv(rows=200)
    assert data("import", path).returncode == 0
    assert data("import", path, "--source", "other").returncode == 0
    result = run_rustybt("run", "--algo", SMA, "--symbols", "TEST", "--catalog", catalog)
    assert result.returncode == 2 and "several datasets of `TEST`" in result.stderr


def test_findings_are_stored_shown_and_block_a_run(
    run_rustybt: Callable[..., Any], data: Callable[..., Any], catalog: Path, tmp_path: Path
) -> None:
    lines = ["timestamp,open,high,low,close,volume"]
    t0 = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    for i in range(120):
        price = "0" if i == 60 else f"{100 + (i % 5) / 10:.2f}"
        minute = i if i < 100 else i + 10  # a ten-minute gap
        t = (t0 + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{t},{price},{price},{price},{price},5")
    path = tmp_path / "BAD.csv"
    path.write_text("\n".join(lines) + "\n")
    imported = data("import", path, "--timeframe", "1m")
    assert imported.returncode == 0, imported.stderr
    assert "1 error" in imported.stderr
    show = data("show", "BAD", "--json")
    findings = json.loads(show.stdout)[0]["findings"]
    kinds = {(f["severity"], f["kind"]) for f in findings}
    assert ("error", "non-positive price") in kinds
    assert ("warning", "outlier") in kinds
    assert ("info", "gap") in kinds
    assert "10 bars missing after 2024-01-02T01:39:00Z" in data("show", "BAD").stdout
    refused = run_rustybt("run", "--algo", SMA, "--symbols", "BAD", "--catalog", catalog)
    assert refused.returncode == 3
    assert "validation error" in refused.stderr and "open 0.00 at 2024-01-02T01:00:00Z" in refused.stderr
    assert "--allow-bad-data" in refused.stderr
    allowed = run_rustybt("run", "--algo", SMA, "--symbols", "BAD", "--catalog", catalog, "--allow-bad-data")
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("point", ["partition-written", "data-written", "committed"])
def test_a_crash_at_each_point_leaves_a_verifiable_catalog(
    data: Callable[..., Any], bars_csv: Callable[..., Path], catalog: Path, tmp_path: Path, point: str
) -> None:
    from rustybt_api.testing import generate_bars, write_csv

    start = dt.datetime(2024, 1, 30, tzinfo=dt.timezone.utc)
    first = write_csv(tmp_path / "a" / "TEST.csv", generate_bars(3 * 1440, seed=1, start=start))
    assert data("import", first).returncode == 0
    old = listing(data)
    second = write_csv(
        tmp_path / "b" / "TEST.csv", generate_bars(2 * 1440, seed=2, start=start + dt.timedelta(days=2))
    )
    crashed = data("import", second, env={**os.environ, "NO_COLOR": "1", "RUSTYBT_TEST_CRASH": point})
    assert crashed.returncode < 0 or crashed.returncode == 134, crashed.stderr
    # Readers see the old or the new state, whole.
    now = listing(data)
    if point == "committed":
        assert now[0]["rows"] == 4 * 1440
    else:
        assert now == old
    verify = data("verify")
    assert verify.returncode == 0, verify.stdout
    # The interrupted command, run again, finishes.
    assert data("import", second).returncode == 0
    [d] = listing(data)
    assert d["rows"] == 4 * 1440
    assert data("verify").returncode == 0
    assert len(partitions(catalog)) == 2


def test_kill_9_at_random_moments(binary: Path, data: Callable[..., Any], catalog: Path, tmp_path: Path) -> None:
    from rustybt_api.testing import generate_bars, write_csv

    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    path = write_csv(tmp_path / "TEST.csv", generate_bars(90 * 1440, seed=3, start=start))
    rng = random.Random(5)
    for _ in range(6):
        proc = subprocess.Popen(
            [str(binary), "data", "import", str(path), "--catalog", str(catalog)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        verify = data("verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        for d in listing(data):
            assert d["rows"] == 90 * 1440  # never a partial import
    assert data("import", path).returncode == 0
    [d] = listing(data)
    assert d["rows"] == 90 * 1440 and d["gaps"] == 0


# Timestamp renderings and the options that read them.
FORMATS: list[tuple[Callable[[dt.datetime], str], list[str]]] = [
    (lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"), []),
    (lambda t: t.strftime("%Y-%m-%d %H:%M:%S"), []),
    (lambda t: str(int(t.timestamp())), []),
    (lambda t: str(int(t.timestamp()) * 1000), []),
    (lambda t: str(int(t.timestamp()) * 1_000_000_000), []),
    (lambda t: t.strftime("%d.%m.%Y %H:%M"), ["--date-format", "%d.%m.%Y %H:%M"]),
    (
        lambda t: t.astimezone(dt.timezone(dt.timedelta(hours=-5))).strftime("%Y-%m-%d %H:%M:%S"),
        ["--tz", "America/Bogota"],
    ),
]

@st.composite
def price(draw: st.DrawFn) -> Decimal:
    # Up to 8 places and 10^10: every column still fits a 64-bit mantissa at its widest scale.
    return Decimal(draw(st.integers(1, 10**10))).scaleb(-draw(st.integers(0, 8)))


@st.composite
def bar_files(draw: st.DrawFn) -> tuple[list[tuple[int, list[Decimal]]], int, str]:
    n = draw(st.integers(min_value=2, max_value=12))
    rows = []
    for i in range(n):
        p = sorted(draw(st.lists(price(), min_size=4, max_size=4)))
        o, c = draw(st.permutations([p[1], p[2]]))
        vol = Decimal(draw(st.integers(0, 10**9))).scaleb(-draw(st.integers(0, 4)))
        rows.append((i, [o, p[3], p[0], c, vol]))
    return rows, draw(st.integers(0, len(FORMATS) - 1)), draw(st.sampled_from([",", ";", "\t", "|"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bar_files())
def test_random_text_to_run_is_exact(
    case: tuple[list[tuple[int, list[Decimal]]], int, str], binary: Path, tmp_path: Path
) -> None:
    rows, fmt, sep = case
    render, options = FORMATS[fmt]
    t0 = dt.datetime(2024, 3, 4, 9, 0, tzinfo=dt.timezone.utc)
    work = tmp_path / f"case{next(CASES)}"
    work.mkdir()
    lines = [sep.join(["timestamp", "open", "high", "low", "close", "volume"])]
    for i, values in rows:
        lines.append(sep.join([render(t0 + dt.timedelta(minutes=i))] + [str(v) for v in values]))
    path = work / "P.csv"
    path.write_text("\n".join(lines) + "\n")
    catalog = work / "catalog"
    env = {**os.environ, "NO_COLOR": "1"}
    imported = subprocess.run(
        [str(binary), "data", "import", str(path), "--timeframe", "1m", "--catalog", str(catalog), *options],
        capture_output=True, text=True, env=env,
    )
    assert imported.returncode == 0, imported.stderr
    algo = work / "dump.py"
    algo.write_text(DUMP_ALGO)
    dump = work / "dump.json"
    ran = subprocess.run(
        [str(binary), "run", "--algo", str(algo), "--symbols", "P", "--catalog", str(catalog),
         "--no-progress", "--out", str(work / "out")],
        capture_output=True, text=True, env={**env, "RUSTYBT_TEST_DUMP": str(dump)}, cwd=ROOT,
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(dump.read_text())
    assert len(seen) >= len(rows) - 1
    for (i, values), got in zip(rows, seen):
        assert got[1] == int((t0 + dt.timedelta(minutes=i)).timestamp()) * 1_000_000_000
        assert [Decimal(v) for v in got[2:]] == values


HIGHER_ALGO = '''
import json
from rustybt_api import Algorithm


class Higher(Algorithm):
    report = ""

    def on_stop(self, ctx):
        out = {}
        for tf in ("1h", "4h", "1d"):
            b = ctx.history(ctx.symbols[0], tf)
            out[tf] = [[int(b.time_ns[i])] + [float(getattr(b, f)[i]) for f in ("open", "high", "low", "close", "volume")]
                       for i in range(len(b))]
        with open(self.report, "w") as f:
            json.dump(out, f)
'''


def test_resample_in_local_time_equals_the_engines_bars(
    data: Callable[..., Any], run_rustybt: Callable[..., Any], write_algo: Callable[..., Path],
    bars_csv: Callable[..., Path], catalog: Path, tmp_path: Path,
) -> None:
    # Every minute from Friday 1 November 2024 00:00 UTC for five days: New York falls back
    # from EDT to EST early on Sunday 3 November.
    path = bars_csv(rows=5 * 1440, seed=5, start=dt.datetime(2024, 11, 1, tzinfo=dt.timezone.utc))
    assert data("import", path).returncode == 0
    session = ["--timezone", "America/New_York", "--session-open", "09:30", "--session-close", "16:00"]
    for tf in ("1h", "4h", "1d"):
        result = data("resample", "TEST", "--timeframe", "1m", "--to", tf, *session)
        assert result.returncode == 0, result.stderr
        assert f"to {tf} in America/New_York from 09:30 to 16:00:" in result.stdout
    report = tmp_path / "higher.json"
    ran = run_rustybt("run", "--algo", write_algo(HIGHER_ALGO), "--data", path, "--param", f"report={report}", *session)
    assert ran.returncode == 0, ran.stderr
    engine = json.loads(report.read_text())
    for tf, per_day in (("1h", 7), ("4h", 2), ("1d", 1)):
        frame = pd.concat([pd.read_parquet(p) for p in partitions(catalog, timeframe=tf)])
        stored = [[int(t.value)] + [float(frame[c].iloc[i]) for c in ("open", "high", "low", "close", "volume")]
                  for i, t in enumerate(frame["time"])]
        # Five sessions, all covered whole; prices compared as the floats the engine derives
        # from the same exact decimals (volumes are whole, so the engine's float sums are exact).
        assert len(stored) == 5 * per_day, tf
        assert stored == engine[tf], tf
        assert all(isinstance(v, Decimal) for v in frame["close"])
    first = {tf: pd.Timestamp(engine[tf][0][0], tz="UTC") for tf in engine}
    assert first["1d"] == pd.Timestamp("2024-11-01T13:30", tz="UTC")  # 09:30 EDT
    monday = [r[0] for r in engine["1d"]][3]
    assert pd.Timestamp(monday, tz="UTC") == pd.Timestamp("2024-11-04T14:30", tz="UTC")  # 09:30 EST
    # The stored day bars run like any dataset.
    again = run_rustybt("run", "--algo", SMA, "--symbols", "TEST", "--timeframe", "1d", "--catalog", catalog)
    assert again.returncode == 0, again.stderr

    # Refusals: a time zone that does not exist, a session time that does not parse, a bucket
    # longer than the timeframe (the 25-hour local Sunday without session hours), another
    # calendar over a stored resample, and a target that is not a multiple.
    bad = data("resample", "TEST", "--timeframe", "1m", "--to", "1d", "--timezone", "America/NewYork")
    assert bad.returncode == 2 and "--timezone: `America/NewYork` is not an IANA time zone" in bad.stderr, bad.stderr
    assert "did you mean `America/New_York`?" in bad.stderr
    bad = data("resample", "TEST", "--timeframe", "1m", "--to", "1d", "--session-close", "16h")
    assert bad.returncode == 2 and "--session-close: `16h` is not a time of day" in bad.stderr, bad.stderr
    bad = data("resample", "TEST", "--timeframe", "1m", "--to", "2h", "--timezone", "America/New_York")
    assert bad.returncode == 2 and "is longer than `2h` (the clocks go back in it)" in bad.stderr, bad.stderr
    bad = data("resample", "TEST", "--timeframe", "1m", "--to", "1h")
    assert bad.returncode == 2 and "would mix" in bad.stderr, bad.stderr
    bad = data("resample", "TEST", "--timeframe", "1h", "--to", "90m", *session)
    assert bad.returncode == 2 and "is not a multiple" in bad.stderr, bad.stderr
    assert data("verify").returncode == 0


def test_a_run_from_several_partitions_writes_the_same_bytes_as_from_the_csv(
    run_rustybt: Callable[..., Any], data: Callable[..., Any], bars_csv: Callable[..., Path], catalog: Path, tmp_path: Path
) -> None:
    # 60,000 minutes from 20 January 2024: three monthly partitions, decoded on several threads
    # into one series; every result file must be byte for byte the CSV run's.
    path = bars_csv(rows=60_000, seed=3, start=dt.datetime(2024, 1, 20, tzinfo=dt.timezone.utc))
    imported = data("import", path)
    assert imported.returncode == 0 and "(3 partitions written)" in imported.stdout, imported.stdout
    a = run_rustybt("run", "--algo", SMA, "--data", path, "--no-progress", "--quiet", out=tmp_path / "a")
    b = run_rustybt("run", "--algo", SMA, "--symbols", "TEST", "--catalog", catalog, "--no-progress", "--quiet",
                    out=tmp_path / "b")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        if name in ("indicators.csv", "metrics.json"):  # timings; the data's origin
            continue
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b"))
    assert mb.pop("data")[0]["rows"] == 60_000
    for m in (ma, mb):
        m["run"].pop("data_files")
        m["run"].pop("wall_seconds")
    assert ma == mb
