"""The format matrix: every layout option and preset of `rustybt data import` / `run --data`,
each refusal message, run against the real binary. Imported bars are read back from the
catalog's Parquet files with pyarrow and compared as exact Decimals."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow.parquet as pq
import pytest

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)
# open, high, low, close, volume of three one-minute bars from T0.
BARS = [
    ("100.10", "100.50", "99.90", "100.25", "1200"),
    ("100.25", "100.75", "100.00", "100.50", "900.5"),
    ("100.50", "101.00", "100.40", "100.95", "0"),
]
EXPECTED = [(T0 + i * MIN, *map(Decimal, b)) for i, b in enumerate(BARS)]


def rows(times: list[str], sep: str = ",") -> str:
    return "".join(f"{t}{sep}{sep.join(b)}\n" for t, b in zip(times, BARS))


ISO = [(T0 + i * MIN).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(3)]
EPOCH_S = [str(int((T0 + i * MIN).timestamp())) for i in range(3)]


def read_catalog(catalog: Path, symbol: str, timeframe: str = "1m") -> list[tuple[Any, ...]]:
    folder = catalog / "bars" / "file" / symbol / timeframe
    files = sorted(p for p in folder.glob("*.parquet"))
    assert files, f"no partitions in {folder}"
    table = pq.read_table(files)  # type: ignore[arg-type]
    out = []
    for rec in table.to_pylist():
        out.append((rec["time"], rec["open"], rec["high"], rec["low"], rec["close"], rec["volume"]))
    return out


@pytest.fixture
def importer(run_rustybt: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    counter = iter(range(1000))

    def run(text: str | bytes | None, *options: str, name: str = "X.csv", path: Path | None = None) -> Any:
        if path is None:
            path = tmp_path / f"in{next(counter)}" / name
            path.parent.mkdir()
            if isinstance(text, bytes):
                path.write_bytes(text)
            else:
                assert text is not None
                path.write_text(text)
        catalog = tmp_path / "catalog"
        result = run_rustybt("data", "import", path, "--symbol", "X", "--catalog", catalog, *options)
        result.catalog = catalog
        result.path = path
        return result

    return run


def assert_imported(result: Any, expected: list[tuple[Any, ...]] = EXPECTED) -> None:
    assert result.returncode == 0, result.stderr
    got = read_catalog(result.catalog, "X")
    assert got == expected
    # Exactly the same Decimals, digit for digit (100.10 stays 100.10, not 100.1).
    for g, e in zip(got, expected):
        assert [str(v) for v in g[1:]] == [str(v) for v in e[1:]] or [v.normalize() for v in g[1:]] == [
            v.normalize() for v in e[1:]
        ]


HEADER = "timestamp,open,high,low,close,volume\n"


@pytest.mark.parametrize(
    ("text", "options"),
    [
        pytest.param(HEADER + rows(ISO), [], id="rustybt-layout"),
        pytest.param(HEADER.replace(",", ";") + rows(ISO, ";"), [], id="semicolon-detected"),
        pytest.param(HEADER.replace(",", "\t") + rows(ISO, "\t"), [], id="tab-detected"),
        pytest.param(HEADER.replace(",", "|") + rows(ISO, "|"), [], id="pipe-detected"),
        pytest.param(HEADER.replace(",", ";") + rows(ISO, ";"), ["--delimiter", ";"], id="delimiter-option"),
        pytest.param(HEADER.replace(",", "\t") + rows(ISO, "\t"), ["--delimiter", "\\t"], id="delimiter-tab"),
        pytest.param(rows(EPOCH_S), ["--no-header"], id="no-header"),
        pytest.param(
            "Date,Time,Open,High,Low,Close,Volume\n"
            + "".join(f"02.01.2024,09:{30 + i}," + ",".join(b) + "\n" for i, b in enumerate(BARS)),
            ["--date-format", "%d.%m.%Y"],
            id="date-and-time-columns",
        ),
        pytest.param(
            "".join(f"02.01.2024,09:{30 + i}:00,ignored," + ",".join(b) + "\n" for i, b in enumerate(BARS)),
            ["--no-header", "--columns", "date,time,_,open,high,low,close,volume", "--date-format", "%d.%m.%Y"],
            id="columns-by-role-in-order",
        ),
        pytest.param(
            "When,C,H,L,O,V,Extra\n"
            + "".join(f"{t},{b[3]},{b[1]},{b[2]},{b[0]},{b[4]},x\n" for t, b in zip(ISO, BARS)),
            ["--columns", "timestamp=When,open=O,high=H,low=L,close=C,volume=V"],
            id="columns-by-name",
        ),
        pytest.param(
            "".join(f"x,{t},{b[0]},{b[1]},{b[2]},{b[3]},{b[4]}\n" for t, b in zip(ISO, BARS)),
            ["--no-header", "--columns", "timestamp=1,open=2,high=3,low=4,close=5,volume=6"],
            id="columns-by-position",
        ),
        pytest.param(
            "timestamp,open,high,low,close,volume\n"
            + rows([(T0 + i * MIN).strftime("%d.%m.%Y %H:%M") for i in range(3)]),
            ["--date-format", "%d.%m.%Y %H:%M"],
            id="date-format",
        ),
        pytest.param(HEADER + rows(EPOCH_S), [], id="epoch-seconds"),
        pytest.param(HEADER + rows([s + "000" for s in EPOCH_S]), [], id="epoch-ms"),
        pytest.param(HEADER + rows([s + "000000" for s in EPOCH_S]), [], id="epoch-us"),
        pytest.param(HEADER + rows([s + "000000000" for s in EPOCH_S]), [], id="epoch-ns"),
        pytest.param(
            HEADER + rows([(T0 + i * MIN + dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S") for i in range(3)]),
            ["--tz", "Europe/Berlin"],
            id="tz-berlin-winter",
        ),
        pytest.param(HEADER + "".join(reversed(rows(ISO).splitlines(keepends=True))), [], id="newest-first"),
    ],
)
def test_layouts_import_exactly(importer: Callable[..., Any], text: str, options: list[str]) -> None:
    assert_imported(importer(text, *options))


def test_tz_summer_time_and_offsets(importer: Callable[..., Any]) -> None:
    # 11:30 in Berlin in July is 09:30 UTC; a time with its own offset ignores --tz.
    july = dt.datetime(2024, 7, 2, 9, 30, tzinfo=UTC)
    text = HEADER + rows(["2024-07-02 11:30:00", "2024-07-02T09:31:00Z", "2024-07-02 11:32:00"])
    result = importer(text, "--tz", "Europe/Berlin")
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in read_catalog(result.catalog, "X")] == [july + i * MIN for i in range(3)]


YAHOO = (
    "Date,Open,High,Low,Close,Adj Close,Volume\n"
    "2024-01-02,100.10,100.50,99.90,100.25,99.00,1200\n"
    "2024-01-03,null,null,null,null,null,null\n"
    "2024-01-04,100.50,101.00,100.40,100.95,99.70,0\n"
)
DAY = dt.timedelta(days=1)
D0 = dt.datetime(2024, 1, 2, tzinfo=UTC)


def test_on_missing_fail_is_the_default_and_says_how(importer: Callable[..., Any]) -> None:
    result = importer(YAHOO)
    assert result.returncode == 3
    assert "X.csv line 3, column `Open`" in result.stderr
    assert "try `--on-missing skip`" in result.stderr
    result.assert_clean_failure()


def test_on_missing_skip_and_ffill(importer: Callable[..., Any]) -> None:
    skip = importer(YAHOO, "--on-missing", "skip", "--timeframe", "1d")
    assert skip.returncode == 0, skip.stderr
    got = read_catalog(skip.catalog, "X", "1d")
    assert [r[0] for r in got] == [D0, D0 + 2 * DAY]
    ffill = importer(YAHOO, "--on-missing", "ffill", "--timeframe", "1d")
    assert ffill.returncode == 0, ffill.stderr
    got = read_catalog(ffill.catalog, "X", "1d")
    assert [r[0] for r in got] == [D0, D0 + DAY, D0 + 2 * DAY]
    c = Decimal("100.25")
    assert got[1][1:] == (c, c, c, c, Decimal(0))


def test_preset_yahoo_skips_null_rows(importer: Callable[..., Any]) -> None:
    result = importer(YAHOO, "--preset", "yahoo", "--timeframe", "1d")
    assert result.returncode == 0, result.stderr
    got = read_catalog(result.catalog, "X", "1d")
    assert [r[3] for r in got] == [Decimal("99.90"), Decimal("100.40")]  # low: not Adj Close


def binance_rows() -> str:
    out = []
    for i, b in enumerate(BARS):
        ms = int((T0 + i * MIN).timestamp() * 1000)
        out.append(f"{ms},{b[0]},{b[1]},{b[2]},{b[3]},{b[4]},{ms + 59999},1.0,5,0.5,0.5,0\n")
    return "".join(out)


BINANCE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore\n"
)


@pytest.mark.parametrize(
    ("text", "preset"),
    [
        pytest.param(binance_rows(), "binance", id="binance-no-header"),
        pytest.param(BINANCE_HEADER + binance_rows(), "binance", id="binance-header"),
        pytest.param(
            "".join(f"2024.01.02,09:{30 + i}," + ",".join(b) + "\n" for i, b in enumerate(BARS)),
            "metatrader",
            id="metatrader-mt4",
        ),
        pytest.param(
            "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
            + "".join(f"2024.01.02\t09:{30 + i}:00\t" + "\t".join(b) + "\t0\t2\n" for i, b in enumerate(BARS)),
            "metatrader",
            id="metatrader-mt5",
        ),
        pytest.param(
            "time,open,high,low,close,Volume,MA,Plot\n"
            + "".join(f"{t}," + ",".join(b) + ",1,2\n" for t, b in zip(EPOCH_S, BARS)),
            "tradingview",
            id="tradingview",
        ),
    ],
)
def test_presets(importer: Callable[..., Any], text: str, preset: str) -> None:
    assert_imported(importer(text, "--preset", preset))


@pytest.mark.parametrize(
    ("text", "options", "where", "hint"),
    [
        pytest.param(
            HEADER.replace(",", ";") + rows(ISO, ";"),
            ["--delimiter", ","],
            "X.csv line 1",
            "looks `;`-separated: try `--delimiter ';'`",
            id="wrong-delimiter",
        ),
        pytest.param(rows(ISO), [], "X.csv line 1", "try `--no-header`", id="headerless"),
        pytest.param(binance_rows(), [], "X.csv line 1", "try `--preset binance`", id="binance-headerless"),
        pytest.param(
            "".join(f"2024.01.02,09:{30 + i}," + ",".join(b) + "\n" for i, b in enumerate(BARS)),
            [],
            "X.csv line 1",
            "try `--preset metatrader`",
            id="metatrader-headerless",
        ),
        pytest.param(
            "timestamp,open,high,low,close,volume\n" + rows(["02.01.2024", "03.01.2024", "04.01.2024"]),
            [],
            "X.csv line 2, column `timestamp`",
            "try `--date-format '%d.%m.%Y'`",
            id="day-first-date",
        ),
        pytest.param(
            "When,open,high,low,close,volume\n" + rows(ISO),
            [],
            "X.csv line 1",
            "`--columns timestamp=NAME`",
            id="unknown-time-column",
        ),
        pytest.param(
            HEADER + rows(ISO[:1] + ["2024-01-02T09:29:00Z", ISO[2]]),
            [],
            "X.csv line 3, column `timestamp`",
            None,
            id="unsorted-middle",
        ),
        pytest.param(
            HEADER + rows(["2024-03-31 02:30:00", ISO[1], ISO[2]]),
            ["--tz", "Europe/Berlin"],
            "X.csv line 2, column `timestamp`",
            None,
            id="tz-nonexistent-hour",
        ),
    ],
)
def test_refusals_name_place_and_option(
    importer: Callable[..., Any], text: str, options: list[str], where: str, hint: str | None
) -> None:
    result = importer(text, *options)
    assert result.returncode == 3, result.stderr
    assert where in result.stderr, result.stderr
    if hint is not None:
        assert f"hint: {hint}" in result.stderr or hint in result.stderr, result.stderr
    result.assert_clean_failure()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--delimiter", "ab"], "must be one character"),
        (["--on-missing", "guess"], "skip, fail or ffill"),
        (["--preset", "bloomberg"], "not a preset"),
        (["--tz", "Mars/Olympus"], "IANA"),
        (["--columns", "price=2"], "not a column role"),
        (["--date-format", "%Q"], "strftime"),
    ],
)
def test_bad_options_are_usage_errors(importer: Callable[..., Any], options: list[str], message: str) -> None:
    result = importer(HEADER + rows(ISO), *options)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("named", [False, True])
def test_pandas_parquet_with_time_index(importer: Callable[..., Any], tmp_path: Path, named: bool) -> None:
    frame = pd.DataFrame(
        {k: [Decimal(b[i]) for b in BARS] for i, k in enumerate(["Open", "High", "Low", "Close", "Volume"])},
        index=pd.DatetimeIndex([T0 + i * MIN for i in range(3)], name="open_time" if named else None),
    )
    path = tmp_path / f"pandas_{named}.parquet"
    frame.to_parquet(path)
    columns = pq.read_schema(path).names
    assert ("open_time" if named else "__index_level_0__") in columns
    assert_imported(importer(None, path=path))


def test_run_data_accepts_the_same_options(
    run_rustybt: Callable[..., Any], tmp_path: Path, bars_csv: Callable[..., Path]
) -> None:
    """A run on a `;`-separated, day-first, Berlin-time, newest-first copy of a file gives the
    same results as on the original."""
    original = bars_csv(rows=300)
    frame = pd.read_csv(original, dtype=str)
    times = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_convert("Europe/Berlin")
    frame["timestamp"] = times.dt.strftime("%d.%m.%Y %H:%M:%S")
    copy = tmp_path / "copy.csv"
    frame.iloc[::-1].to_csv(copy, sep=";", index=False)
    sma = Path(__file__).resolve().parents[2] / "algorithms" / "sma_cross.py"
    a = run_rustybt("run", "--algo", sma, "--data", original, "--symbol", "X", "--no-progress")
    b = run_rustybt(
        "run", "--algo", sma, "--data", copy, "--symbol", "X", "--no-progress",
        "--date-format", "%d.%m.%Y %H:%M:%S", "--tz", "Europe/Berlin",
    )
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    ma, mb = a.metrics(), b.metrics()
    for key in ("final_equity", "total_return", "trades", "start_time", "end_time"):
        if key in ma:
            assert ma[key] == mb[key], key
    assert a.csv_rows("fills.csv") == b.csv_rows("fills.csv")
    assert json.dumps(ma["run"]["symbols"]) == json.dumps(mb["run"]["symbols"])
