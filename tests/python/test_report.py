"""`rustybt report` and `rustybt run --report`: the HTML file opened in a real headless Chromium.

Every chart is checked against the results files it was drawn from (equity extremes, the
maximum drawdown of metrics.json, the compounding of monthly and yearly returns to the total
return, histogram counts to the number of trades and daily returns, markers to fills), the
metrics table against metrics.json, and the page for console errors, requests and hovering.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import subprocess
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from report_support import chrome, console_errors, drawn_charts, open_report, requested_urls
from rustybt_api.report._reduce import reduce_indices
from rustybt_api.testing import generate_bars, write_csv

ALGO = '''
from rustybt_api import Algorithm, Indicator


class Range(Indicator):
    def update(self, bar):
        value = bar.high - bar.low
        self.record("range", value)
        return value


class Recorder(Algorithm):
    fast = 5
    slow = 20

    def initialize(self, ctx):
        self.books = {s: (self.indicator("SMA", s, period=self.fast), self.indicator("SMA", s, period=self.slow))
                      for s in ctx.symbols}
        self.range = self.indicator(Range, ctx.symbols[0])
        self.ticks = 0

    def on_tick(self, ctx):
        self.ticks += 1
        for symbol, (fast, slow) in self.books.items():
            if not slow.ready:
                continue
            diff = fast.value - slow.value
            self.record(f"{symbol}.diff", diff)
            held = ctx.portfolio.position(symbol)
            if diff > 0 and held <= 0:
                self.buy(symbol, 10)
            elif diff < 0 and held > 0:
                self.close(symbol)
        if self.ticks % 500 == 0:
            self.buy(ctx.symbols[0], 10**9)  # far beyond the cash: rejected with a reason
'''

EXPECTED_CHARTS = ["equity", "drawdown", "monthly", "yearly", "daily_returns", "rolling", "exposure",
                   "symbol_0", "symbol_1", "records", "pnl_hist", "holding_hist", "costs", "orders"]
SYMBOLS = ["AAA", "BBB"]
BARS = 150 * 48  # 150 days of 30-minute bars: more equity points than a chart draws


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, binary) -> Path:
    base = tmp_path_factory.mktemp("report")
    files = []
    for seed, symbol in enumerate(SYMBOLS):
        path = base / f"{symbol}.csv"
        write_csv(path, generate_bars(BARS, seed=seed + 7, start=dt.datetime(2023, 11, 1, tzinfo=dt.timezone.utc),
                                      interval=dt.timedelta(minutes=30), volatility=0.004))
        files.append(path)
    algo = base / "recorder.py"
    algo.write_text(ALGO)
    config = base / "costs.toml"
    config.write_text('[commission]\nrate = "0.0005"\nminimum = "0"\n')
    out = base / "run"
    argv = [str(binary), "run", "--algo", str(algo), "--out", str(out), "--config", str(config), "--no-progress",
            "--quiet", "--report"]
    for f in files:
        argv += ["--data", str(f)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"report: {out / 'report.html'}" in done.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    driver = chrome()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(run_dir, browser):
    open_report(browser, run_dir / "report.html")
    return {
        "charts": drawn_charts(browser),
        "order": browser.execute_script("return window.rustybt.charts"),
        "urls": requested_urls(browser),
        "errors": console_errors(browser),
    }


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def leaves(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            leaves(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value
    return out


def test_the_page_is_offline_and_clean(run_dir, page):
    assert page["errors"] == []
    # data: URLs (an inline image plotly makes) are not requests; nothing else may be asked
    assert {u for u in page["urls"] if not u.startswith("data:")} == {(run_dir / "report.html").resolve().as_uri()}
    html = (run_dir / "report.html").read_text()
    assert "https://" not in html.split("<script>")[0]  # no external stylesheet, font or image
    # plotly.js mentions its CDN in a constant it never uses here; nothing is loaded by URL
    assert "<script src" not in html and "<link" not in html and "<iframe" not in html


def browser_order(page):
    return page["order"]


def test_every_chart_is_drawn(page):
    charts = page["charts"]
    assert browser_order(page) == EXPECTED_CHARTS
    for chart_id, chart in charts.items():
        assert chart["svg"], chart_id
        assert chart["traces"], chart_id
        for trace in chart["traces"]:
            assert len(trace["x"]) == len(trace["y"]) or trace["type"] == "heatmap", (chart_id, trace["name"])
            assert len(trace["x"]) <= 4000, (chart_id, trace["name"])


def test_equity_and_drawdown_keep_the_extremes(run_dir, page):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    equity = [float(r["equity"]) for r in rows(run_dir / "equity.csv")]
    assert len(equity) > 4000  # the chart is reduced
    strategy, benchmark = page["charts"]["equity"]["traces"]
    assert strategy["name"] == "strategy"
    assert 1000 < len(strategy["y"]) <= 4000
    assert max(strategy["y"]) == pytest.approx(max(equity), rel=1e-9)
    assert min(strategy["y"]) == pytest.approx(min(equity), rel=1e-9)
    assert strategy["y"][0] == pytest.approx(equity[0]) and strategy["y"][-1] == pytest.approx(equity[-1])
    # default benchmark: both traded symbols bought at the first close, equal weight
    assert benchmark["name"] == "buy and hold AAA, BBB (equal weight)"
    closes = {s: [float(r["close"]) for r in rows(run_dir.parent / f"{s}.csv")] for s in SYMBOLS}
    expected = float(metrics["initial_cash"]) * sum(c[-1] / c[0] for c in closes.values()) / 2
    assert benchmark["y"][-1] == pytest.approx(expected, rel=1e-9)
    drawdown, marks = page["charts"]["drawdown"]["traces"]
    assert -min(drawdown["y"]) == pytest.approx(metrics["max_drawdown"], rel=1e-9)
    assert -marks["y"][1] == pytest.approx(metrics["max_drawdown"], rel=1e-9)
    assert page["charts"]["drawdown"]["shapes"] == 5  # the five worst periods


def test_returns_compound_to_the_total_return(run_dir, page):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    total = float(metrics["total_return"])
    (heat,) = page["charts"]["monthly"]["traces"]
    months = [v for row in heat["z"] for v in row if v is not None]
    assert len(months) == 5  # November 2023 to March 2024
    assert math.prod(1 + m for m in months) - 1 == pytest.approx(total, abs=1e-8)
    (years,) = page["charts"]["yearly"]["traces"]
    assert years["x"] == ["2023", "2024"]
    assert math.prod(1 + y for y in years["y"]) - 1 == pytest.approx(total, abs=1e-8)
    (hist,) = page["charts"]["daily_returns"]["traces"]
    assert sum(hist["y"]) == metrics["num_returns"]
    sharpe, vol = page["charts"]["rolling"]["traces"]
    assert sharpe["name"] == "Sharpe (63 d)" and vol["yaxis"] == "y2"
    assert len(sharpe["y"]) == metrics["num_returns"] - 63 + 1


def test_symbols_markers_and_recorded_values(run_dir, page):
    fills = rows(run_dir / "fills.csv")
    records = rows(run_dir / "records.csv")
    for number, symbol in enumerate(SYMBOLS):
        traces = {t["name"]: t for t in page["charts"][f"symbol_{number}"]["traces"]}
        mine = [f for f in fills if f["symbol"] == symbol]
        assert len(traces["buy"]["x"]) == sum(f["side"] == "buy" for f in mine)
        assert len(traces["sell"]["x"]) == sum(f["side"] == "sell" for f in mine)
        diff = traces[f"{symbol}.diff"]
        assert diff["yaxis"] == "y2"
        values = [float(r["value"]) for r in records if r["name"] == f"{symbol}.diff"]
        assert max(diff["y"]) == pytest.approx(max(values)) and min(diff["y"]) == pytest.approx(min(values))
    # the custom indicator recorded once per AAA bar, drawn in the chart of its own
    from test_results_api import check_equals_files
    from rustybt_api import results

    check_equals_files(results.load(run_dir))  # records.parquet too, value for value
    ranges = [r for r in records if r["name"] == "range"]
    assert len(ranges) == BARS
    (range_trace,) = page["charts"]["records"]["traces"]
    assert range_trace["name"] == "range"


def test_trades_costs_and_orders(run_dir, page, browser):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for chart in ("pnl_hist", "holding_hist"):
        (hist,) = page["charts"][chart]["traces"]
        assert sum(hist["y"]) == metrics["num_trades"]
    total = {t["name"]: t for t in page["charts"]["costs"]["traces"]}["total"]
    by_kind = dict(zip(total["x"], total["y"]))
    assert by_kind["commission"] == pytest.approx(float(metrics["costs"]["commission"]))
    assert float(metrics["costs"]["commission"]) > 0
    (orders,) = page["charts"]["orders"]["traces"]
    statuses = dict(zip(orders["x"], orders["y"]))
    assert statuses["filled"] == metrics["orders"]["filled"]
    assert statuses["rejected"] == metrics["orders"]["rejected"] > 0
    reasons = browser.execute_script(
        "return [...document.querySelectorAll('#rejections tbody tr')].map(r => [r.cells[0].textContent, +r.cells[1].textContent])")
    assert reasons == [[r["reason"], r["count"]] for r in metrics["orders"]["rejection_reasons"]]


def test_metrics_table_equals_metrics_json(run_dir, page, browser):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    skipped = ("run", "unavailable", "benchmark")  # the benchmark's values are a column beside
    expected = leaves("", {k: v for k, v in metrics.items() if k not in skipped}, {})
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#metrics td[data-key]')].map(td => [td.dataset.key, td.dataset.raw])")
    shown = {key: json.loads(raw) for key, raw in cells}
    assert len(cells) == len(shown) == len(expected)
    assert shown == expected
    # Every benchmark metric that the strategy also has is shown beside it, exactly.
    bench = leaves("", metrics["benchmark"], {})
    beside = browser.execute_script(
        "return [...document.querySelectorAll('#metrics td[data-benchmark]')]"
        ".map(td => [td.previousElementSibling.dataset.key, td.dataset.benchmark])")
    beside = {key: json.loads(raw) for key, raw in beside}
    assert beside.keys() == expected.keys()
    assert any(v is not None for v in beside.values())
    assert beside == {k: bench.get(k) for k in expected}


def test_the_trades_table_sorts(run_dir, page, browser):
    trades = rows(run_dir / "trades.csv")
    pager = browser.execute_script("return document.querySelector('#trades .pager').textContent")
    assert f"of {len(trades)}" in pager
    browser.execute_script("document.querySelector('#trades th[data-column=pnl]').click()")
    column = browser.execute_script(
        "const i=[...document.querySelectorAll('#trades th')].findIndex(th=>th.dataset.column==='pnl');"
        "return [...document.querySelectorAll('#trades tbody tr')].map(r=>r.cells[i].textContent)")
    lowest = sorted((Decimal(t["pnl"]) for t in trades))[: len(column)]
    assert [Decimal(v) for v in column] == lowest


def test_hovering_the_equity_shows_a_value(page, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    chart = browser.find_element("css selector", "#equity .nsewdrag")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", chart)
    ActionChains(browser).move_to_element_with_offset(chart, 20, 0).pause(0.3).perform()
    text = ""
    for _ in range(40):
        text = browser.execute_script(
            "const h=document.querySelector('#equity .hoverlayer');return h?h.textContent:''")
        if any(ch.isdigit() for ch in text):
            break
        ActionChains(browser).move_by_offset(3, 0).pause(0.1).perform()
    assert "strategy" in text and any(ch.isdigit() for ch in text), text


def test_benchmark_by_symbol_and_by_file(run_dir, binary, browser, tmp_path):
    closes = [float(r["close"]) for r in rows(run_dir.parent / "BBB.csv")]
    cash = float(json.loads((run_dir / "metrics.json").read_text())["initial_cash"])
    for spec, name in (("BBB", "buy and hold BBB"), (str(run_dir.parent / "BBB.csv"), "buy and hold BBB.csv")):
        out = tmp_path / "bench.html"
        done = subprocess.run([str(binary), "report", str(run_dir), "--out", str(out), "--benchmark", spec,
                               "--window", "20"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(out)
        open_report(browser, out)
        charts = drawn_charts(browser)
        bench = charts["equity"]["traces"][1]
        assert bench["name"] == name
        assert bench["y"][-1] == pytest.approx(cash * closes[-1] / closes[0], rel=1e-9)
        assert charts["rolling"]["traces"][0]["name"] == "Sharpe (20 d)"
        assert console_errors(browser) == []


def test_pdf_prints_the_report(run_dir, binary, tmp_path):
    out = tmp_path / "r.html"
    done = subprocess.run([str(binary), "report", str(run_dir), "--out", str(out), "--pdf"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    pdf = out.with_suffix(".pdf")
    assert done.stdout.split() == [str(out), str(pdf)]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") + data.count(b"/Type/Page") >= 3


def test_a_folder_missing_parts_still_reports(run_dir, binary, browser, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("sharpe", "costs", "orders", "max_drawdown"):
        metrics.pop(key)
    metrics["run"]["data_files"] = [str(tmp_path / "gone.csv")]
    (partial / "metrics.json").write_text(json.dumps(metrics))
    (partial / "equity.csv").write_text((run_dir / "equity.csv").read_text())
    done = subprocess.run([str(binary), "report", str(partial)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    open_report(browser, partial / "report.html")
    assert console_errors(browser) == []
    charts = drawn_charts(browser)
    assert "equity" in charts and "drawdown" in charts and "symbol_0" not in charts
    notes = browser.execute_script("return document.getElementById('notes').textContent")
    assert "gone.csv is gone" in notes and "no closed trades" in notes


@pytest.mark.parametrize("args, message", [
    (["report", "/nonexistent/run"], "results folder `/nonexistent/run` does not exist"),
    (["report", "{empty}"], "`{empty}` has no metrics.json: the run did not finish writing its results"),
    (["report", "{run}", "--benchmark", "ZZZ"], "benchmark `ZZZ` is neither a symbol of the run nor a file"),
    (["report", "{run}", "--window", "1"], "`--window` must be at least 2 days"),
    (["run", "--algo", "algorithms/sma_cross.py", "--watch", "--report"], "`--watch` and `--report` do not go together"),
])
def test_report_errors(binary, run_dir, tmp_path, args, message):
    (tmp_path / "empty").mkdir(exist_ok=True)
    argv = [a.format(empty=tmp_path / "empty", run=run_dir) for a in args]
    message = message.format(empty=tmp_path / "empty")
    done = subprocess.run([str(binary), *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert f"error: {message}" in done.stderr
    assert "panicked" not in done.stderr and "Traceback" not in done.stderr


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30_000), st.integers(8, 5000))
def test_reduction_keeps_every_extreme_and_stays_small(values, budget):
    array = np.asarray(values)
    index = reduce_indices(array, budget, keep=[len(values) // 2])
    assert len(index) <= max(budget, len(values) if len(values) <= budget else 0) + 1
    assert np.all(np.diff(index) > 0)
    kept = array[index]
    assert kept.max() == array.max() and kept.min() == array.min()
    assert index[0] == 0 and index[-1] == len(values) - 1
    assert len(values) // 2 in set(index.tolist())


def test_a_large_run_stays_light(binary, browser, tmp_path):
    data = tmp_path / "L.csv"
    write_csv(data, generate_bars(60_000, seed=5))
    out = tmp_path / "run"
    done = subprocess.run([str(binary), "run", "--algo", str(ROOT / "benches" / "algos" / "report_trades.py"),
                           "--data", str(data), "--param", "every=10", "--out", str(out), "--quiet", "--no-progress",
                           "--report"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    fills = rows(out / "fills.csv")
    assert len(fills) > 10_000
    open_report(browser, out / "report.html")
    assert console_errors(browser) == []
    charts = drawn_charts(browser)
    for chart in charts.values():
        for trace in chart["traces"]:
            assert len(trace["x"]) <= 4000
    markers = {t["name"]: len(t["x"]) for t in charts["symbol_0"]["traces"] if t["name"] in ("buy", "sell")}
    assert markers == {"buy": 1000, "sell": 1000}
    notes = browser.execute_script("return [...document.querySelectorAll('.note')].map(n => n.textContent).join(' ')")
    assert f"{len(fills)} fills; 2000 markers drawn" in notes
    trades = rows(out / "trades.csv")
    pager = browser.execute_script("return document.querySelector('#trades .pager').textContent")
    assert f"of {len(trades)}" in pager
    equity = [float(r["equity"]) for r in rows(out / "equity.csv")]
    strategy = charts["equity"]["traces"][0]["y"]
    assert max(strategy) == pytest.approx(max(equity)) and min(strategy) == pytest.approx(min(equity))
