"""The study report opened in a real headless Chromium: every chart drawn, no console error, no
request, the trial table equal to study.sqlite, sorting, the isolated-peak flag, the
overfitting statistics, the walk-forward section and the Monte Carlo bands."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from report_support import browser, console_errors, drawn_charts, open_report, page_state  # noqa: F401 (fixture)
from rustybt_api import study
from rustybt_api.study import montecarlo
from rustybt_api.study.report import main, write_study_report
from study_support import trial, write_run, write_study
from test_study_load import window_study

FAST = [5, 10, 15, 20, 25, 30]
SLOW = [30, 40, 50, 60]


def spiky_study(tmp_path):
    """A grid whose best point is a lone spike, with stored returns, two objectives and a few
    trials that did not complete; its best trial's run folder holds Monte Carlo files."""
    rng = np.random.default_rng(5)
    trials, number = [], 0
    for f in FAST:
        for s in SLOW:
            edge = 0.004 if (f, s) == (15, 40) else 0.0
            returns = rng.normal(edge, 0.01, 256)
            sharpe = float(np.mean(returns) / np.std(returns, ddof=1) * math.sqrt(252))
            drawdown = round(0.05 + 0.3 * rng.random(), 4)
            metrics = {"sharpe": sharpe, "max_drawdown": drawdown, "total_return": float(np.prod(1 + returns) - 1),
                       "net_profit": f"{rng.integers(-500, 900)}.{rng.integers(0, 99):02d}", "num_trades": 20 + number}
            trials.append(trial(number, {"fast": f, "slow": s, "kind": "sma"}, values=[sharpe, drawdown],
                                metrics=metrics, returns=returns))
            number += 1
    trials.append(trial(number, {"fast": 35, "slow": 30, "kind": "sma"}, state="failed",
                        error="ValueError: <script>alert(1)</script>"))
    trials.append(trial(number + 1, {"fast": 60, "slow": 30, "kind": "sma"}, state="infeasible"))
    space = {"fast": {"kind": "int", "low": 5, "high": 30, "step": 5}, "slow": {"kind": "int", "low": 30, "high": 60,
                                                                              "step": 10},
             "kind": {"kind": "categorical", "choices": ["sma"]}}
    objectives = [{"metric": "sharpe", "direction": "maximize"}, {"metric": "max_drawdown", "direction": "minimize"}]
    folder = write_study(tmp_path / "spiky", trials, objectives=objectives, space=space, method="tpe")
    best_run = write_run(folder / "best", [("2024-01-02T00:00:00Z", "10000"), ("2024-12-31T00:00:00Z", "11000")],
                         trades=[{"symbol": "AAA", "direction": "long", "max_qty": "1",
                                  "entry_time": "2024-02-01T00:00:00Z", "exit_time": f"2024-03-{d:02d}T00:00:00Z",
                                  "pnl": str(p), "fees": "0"} for d, p in zip(range(1, 21), rng.normal(50, 200, 20).round(2))])
    montecarlo.run(best_run, "permutation", runs=200, seed=1)
    montecarlo.run(best_run, "bootstrap", runs=200, seed=1)
    return folder


@pytest.fixture(scope="module")
def spiky(tmp_path_factory, browser):
    folder = spiky_study(tmp_path_factory.mktemp("study"))
    path = write_study_report(folder)
    open_report(browser, Path(path))
    return {"folder": folder, "path": path, **page_state(browser)}


def test_the_page_is_offline_and_clean(spiky):
    assert spiky["path"] == str(spiky["folder"].resolve() / "report.html")
    assert spiky["errors"] == []
    page_url = (spiky["folder"] / "report.html").resolve().as_uri()
    assert {u for u in spiky["urls"] if not u.startswith("data:")} == {page_url}
    html = (spiky["folder"] / "report.html").read_text()
    assert "<script src" not in html and "<link" not in html and "<iframe" not in html
    assert "<script>alert(1)" not in html  # a trial's error text is escaped


def test_the_header(spiky, browser):
    header = dict(browser.execute_script(
        "return [...document.querySelectorAll('#header tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
    assert header["Algorithm"] == "SmaCross algorithms/sma_cross.py"
    assert header["Method"] == "tpe (seed 7, batch 1)"
    assert header["Objectives"] == "maximize sharpe, minimize max_drawdown"
    assert header["Trials"] == "26: complete 24, failed 1, infeasible 1"
    assert header["Code hash"] == "c0de" * 16 and header["Data checksum"] == "da7a" * 16
    assert header["Constraints"] == "fast < slow; min_trades 1"


def test_every_chart_is_drawn(spiky):
    assert spiky["order"] == ["pareto", "pbo_logits", "sens_0", "sens_1", "heat_0", "mc_bootstrap", "mc_permutation"]
    for chart_id, chart in spiky["charts"].items():
        assert chart["svg"] and chart["traces"], chart_id


def test_the_trial_table_equals_the_store(spiky, browser):
    with sqlite3.connect(spiky["folder"] / "study.sqlite") as db:
        stored = {n: (state, json.loads(p), json.loads(v) if v else None, json.loads(m) if m else None, e)
                  for n, state, p, v, m, e in db.execute(
                      "SELECT number, state, params, objective_values, metrics, error FROM trials")}
    headers = browser.execute_script("return [...document.querySelectorAll('#trials th')].map(th => th.textContent)")
    assert headers[:7] == ["number", "state", "fast", "slow", "kind", "objective.sharpe", "objective.max_drawdown"]
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#trials tbody tr')].map(tr => [...tr.cells].map(td => td.dataset.raw))")
    assert len(rows) == len(stored) == 26
    for raw in rows:
        cells = dict(zip(headers, (json.loads(r) for r in raw)))
        state, params, values, metrics, error = stored[cells["number"]]
        assert cells["state"] == state and cells["error"] == error
        assert {k: cells[k] for k in params} == params
        assert [cells["objective.sharpe"], cells["objective.max_drawdown"]] == (values or [None, None])
        for key in ("total_return", "net_profit", "num_trades"):
            assert cells[key] == (metrics or {}).get(key)
    # best first by the first objective (maximize sharpe), the trials without a value last
    sharpes = [json.loads(r[5]) for r in rows]
    present = [v for v in sharpes if v is not None]
    assert present == sorted(present, reverse=True) and sharpes[-2:] == [None, None]


def test_the_trial_table_sorts(spiky, browser):
    def column(name):
        return browser.execute_script(
            "const i=[...document.querySelectorAll('#trials th')].findIndex(th=>th.textContent===arguments[0]);"
            "return [...document.querySelectorAll('#trials tbody tr')].map(r=>JSON.parse(r.cells[i].dataset.raw))", name)
    click = "[...document.querySelectorAll('#trials th')].find(th=>th.textContent===arguments[0]).click()"
    browser.execute_script(click, "net_profit")
    profits = [float(v) for v in column("net_profit") if v is not None]
    assert profits == sorted(profits) and len(profits) == 24  # decimal text sorted as numbers
    browser.execute_script(click, "net_profit")
    assert [float(v) for v in column("net_profit") if v is not None] == sorted(profits, reverse=True)
    browser.execute_script(click, "number")
    assert column("number") == list(range(26))


def test_best_pareto_and_the_isolated_peak(spiky, browser):
    s = study.load(spiky["folder"])
    best = browser.execute_script("return document.getElementById('best').dataset.number")
    assert int(best) == s.best().name
    assert s.trials.loc[int(best), "fast"] == 15 and s.trials.loc[int(best), "slow"] == 40
    peak = browser.execute_script("const p=document.getElementById('peak');return [p.dataset.isolated, p.textContent]")
    assert peak[0] == "true" and "isolated peak" in peak[1]
    front = spiky["charts"]["pareto"]["traces"][1]
    assert sorted(front["x"]) == sorted(s.pareto_front()["objective.sharpe"].tolist())
    (heat,) = spiky["charts"]["heat_0"]["traces"]
    assert heat["x"] == [str(f) for f in FAST] and heat["y"] == [str(v) for v in SLOW]
    assert np.nanmax(np.array(heat["z"], dtype=float)) == pytest.approx(s.best()["objective.sharpe"])


def test_the_overfitting_section(spiky, browser):
    s = study.load(spiky["folder"])
    o = s.overfitting()
    cells = dict(browser.execute_script(
        "return [...document.querySelectorAll('#overfitting td[data-key]')].map(td=>[td.dataset.key, td.textContent])"))
    assert cells["DSR"] == f"{o.dsr:.4f}" and cells["PSR"] == f"{o.psr:.4f}" and cells["PBO"] == f"{o.pbo.pbo:.3f}"
    assert cells["trials"] == "24"
    assert o.pbo.pbo < 0.1  # the planted edge holds out of sample
    text = browser.execute_script("return document.body.textContent")
    assert "How to read this." in text
    (bars,) = spiky["charts"]["pbo_logits"]["traces"]
    assert sum(bars["y"]) == math.comb(16, 8)


def test_monte_carlo_bands(spiky):
    data = json.loads((spiky["folder"] / "best" / "montecarlo-permutation.json").read_text())
    traces = {t["name"]: t for t in spiky["charts"]["mc_permutation"]["traces"]}
    assert traces["median"]["y"] == pytest.approx(data["bands"]["50"])
    assert traces["5–95%"]["y"] == pytest.approx(data["bands"]["5"])
    assert traces["median"]["x"][-1] == 20


def test_a_walk_forward_study(tmp_path, browser):
    s = window_study(tmp_path)
    path = write_study_report(s.path, tmp_path / "wf.html", montecarlo_files=[])
    open_report(browser, tmp_path / "wf.html")
    assert console_errors(browser) == []
    charts = drawn_charts(browser)
    assert "wf_equity" in charts and "wf_params" in charts and not any(c.startswith("mc_") for c in charts)
    (equity,) = charts["wf_equity"]["traces"]
    assert equity["y"] == pytest.approx(s.stitched_equity().tolist())
    params = {t["name"]: t["y"] for t in charts["wf_params"]["traces"]}
    assert params["fast"] == [5, 10, 15]
    wfe = browser.execute_script("return JSON.parse(document.querySelector('#wfe b').dataset.value)")
    assert wfe == pytest.approx(s.efficiency().overall)
    rows = browser.execute_script("return document.querySelectorAll('#windows tbody tr').length")
    assert rows == 3 and path == str(tmp_path / "wf.html")
    window_column = browser.execute_script(
        "const i=[...document.querySelectorAll('#trials th')].findIndex(th=>th.textContent==='window');"
        "return [...document.querySelectorAll('#trials tbody tr')].map(r=>JSON.parse(r.cells[i].dataset.raw))")
    assert sorted(window_column) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_a_study_with_nothing_complete_still_reports(tmp_path, browser):
    folder = write_study(tmp_path / "empty", [trial(0, {"fast": 5}, state="failed", error="boom")])
    write_study_report(folder)
    open_report(browser, folder / "report.html")
    assert console_errors(browser) == []
    text = browser.execute_script("return document.body.textContent")
    assert "the study has no complete trial" in text and "no overfitting statistics" in text


def test_main_writes_the_pdf_too(tmp_path):
    folder = write_study(tmp_path / "s", [trial(0, {"fast": 5}, values=[1.0]), trial(1, {"fast": 10}, values=[2.0])])
    html, pdf = main(str(folder), str(tmp_path / "out" / "study.html"), pdf=True)
    assert html == str(tmp_path / "out" / "study.html") and pdf == str(tmp_path / "out" / "study.pdf")
    assert (tmp_path / "out" / "study.pdf").read_bytes().startswith(b"%PDF")


def test_report_errors(tmp_path):
    with pytest.raises(study.StudyError, match="is not a study folder"):
        write_study_report(tmp_path / "nope")
    folder = write_study(tmp_path / "s", [trial(0, {"fast": 5}, values=[1.0])])
    with pytest.raises(study.StudyError, match="Monte Carlo file `.*gone.json` does not exist"):
        write_study_report(folder, montecarlo_files=[tmp_path / "gone.json"])
