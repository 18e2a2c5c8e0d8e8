"""`rustybt compare`: runs side by side, and decisions and fills matched against a reference.

A paper session replaying the backtest's bars must match it with zero differences; a backtest
with latency and slippage configured, matched against the same backtest without them, must give
back exactly the configured latency per fill and the slippage charged in its costs.csv.
"""

from __future__ import annotations

import csv
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT
from report_support import chrome, console_errors, open_report
from rustybt_api import results
from rustybt_api.report import compare
from rustybt_api.testing import generate_bars, write_csv

SMA = ROOT / "algorithms" / "sma_cross.py"
PARAMS = ["--param", "fast=3", "--param", "slow=8"]


def backtest(binary: Path, data: Path, out: Path, *extra: str | Path) -> Path:
    done = subprocess.run([str(binary), "run", "--algo", str(SMA), "--data", str(data), "--out", str(out),
                           "--no-progress", "-q", *PARAMS, *map(str, extra)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compare") / "P.csv"
    write_csv(path, generate_bars(300, seed=3))
    return path


def test_a_paper_replay_matches_its_backtest_exactly(binary, data, tmp_path):
    reference = backtest(binary, data, tmp_path / "backtest")
    live = tmp_path / "live"
    done = subprocess.run([str(binary), "live", "--algo", str(SMA), "--broker", "paper", "--symbols", "P",
                           "--timeframe", "1m", "--speed", "0", "--state", str(tmp_path / "state"), "--out", str(live),
                           "--feed", f"replay:{data}", "-q", *PARAMS], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    m = compare.match(results.load(reference), results.load(live))
    with (live / "fills.csv").open() as f:
        assert m.decisions > 20 and len(m.fills) == len(list(csv.DictReader(f)))
    assert m.identical
    assert not m.only_in_reference and not m.only_in_other and m.unmatched_fills == 0
    assert {f.slippage for f in m.fills} == {0} and {f.latency_ns for f in m.fills} == {0}
    assert m.tracking_error == 0.0 and m.correlation == pytest.approx(1.0)
    shown = subprocess.run([str(binary), "compare", str(reference), str(live), "--match"], capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "identical: yes" in shown.stdout
    assert f"decisions matched {m.decisions}, only in the reference 0, only in this run 0" in shown.stdout


def test_injected_latency_and_slippage_are_recovered_exactly(binary, data, tmp_path):
    reference = results.load(backtest(binary, data, tmp_path / "clean"))
    late = tmp_path / "late.toml"
    late.write_text('[execution]\nlatency = "50ms"\n')
    m = compare.match(reference, results.load(backtest(binary, data, tmp_path / "late", "--config", late)))
    assert m.decisions > 20 and not m.only_in_reference and not m.only_in_other and m.unmatched_fills == 0
    assert {f.latency_ns for f in m.fills} == {50_000_000}
    slipping = tmp_path / "slip.toml"
    slipping.write_text('[execution]\nslippage_bps = "7"\n')
    costly = backtest(binary, data, tmp_path / "slip", "--config", slipping)
    m = compare.match(reference, results.load(costly))
    assert {f.latency_ns for f in m.fills} == {0}
    # per fill, the slippage found equals the slippage charge in costs.csv of that fill
    with (costly / "costs.csv").open() as f:
        charged = [Decimal(r["amount"]) for r in csv.DictReader(f) if r["kind"] == "slippage"]
    assert len(charged) == len(m.fills) > 20
    assert [f.slippage * f.qty for f in m.fills] == charged
    assert all(f.slippage > 0 for f in m.fills)
    assert not m.identical and m.correlation is not None and m.correlation > 0.9


def test_side_by_side_and_the_html_page(binary, data, tmp_path):
    a = backtest(binary, data, tmp_path / "a")
    b = backtest(binary, data, tmp_path / "b", "--cash", "50000")
    page = tmp_path / "cmp.html"
    done = subprocess.run([str(binary), "compare", str(a), str(b), "--html", str(page)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["A:a", "B:b"]
    final = next(line for line in lines if line.startswith("final_equity")).split()
    assert Decimal(final[1]) - 100000 == Decimal(final[2]) - 50000  # same trades, other cash
    driver = chrome()
    try:
        open_report(driver, page)
        assert console_errors(driver) == []
        names = driver.execute_script("return document.getElementById('equity').data.map(t => t.name)")
        assert names == ["A:a", "B:b"]
    finally:
        driver.quit()


@pytest.mark.parametrize("args, message", [
    (["compare", "/nonexistent/x", "/nonexistent/y"], "results folder `/nonexistent/x` does not exist"),
    (["compare", "{empty}", "{empty}"], "has no metrics.json"),
])
def test_compare_errors(binary, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([str(binary), *[a.format(empty=tmp_path / "empty") for a in args]], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
