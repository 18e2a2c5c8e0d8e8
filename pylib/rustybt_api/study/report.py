"""The study report: one self-contained HTML file (plotly.js and the data inline, no request to
any host), built with the run report's page pieces (:mod:`rustybt_api.report`).

Sections: the study header; a sortable table of every trial; the best parameters (and the
Pareto front with several objectives); sensitivity lines and pair heatmaps with the
isolated-peak flag; PSR, DSR, MinTRL and PBO with how to read them; walk-forward (stitched
out-of-sample equity, parameters per window, efficiency) when the study has windows; Monte Carlo
bands from ``montecarlo-*.json`` files (passed in, or found in the best trial's run folder
``STUDY_DIR/best``). The page exposes ``window.rustybt`` (chart ids, ``done``) like the run report.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..report import _plotly_js
from ..report._page import CSS, DRAW_CHARTS, _e, _json
from . import Study, StudyError, load, montecarlo, sensitivity

__all__ = ["main", "write_study_report", "BEST_RUN_DIR", "MAX_TRIAL_ROWS"]

#: The best trial's run folder inside a study folder, where its montecarlo-*.json files are looked for.
BEST_RUN_DIR = "best"
#: Rows of the trial table at most (the best first); every trial is in study.sqlite.
MAX_TRIAL_ROWS = 20_000
#: Pair heatmaps drawn at most (the pairs of the first parameters).
MAX_PAIRS = 10
#: Metrics shown in the trial table besides the objectives, when the trials have them.
HEADLINE_METRICS = ("total_return", "sharpe", "sortino", "cagr", "max_drawdown", "net_profit", "num_trades",
                    "win_rate", "profit_factor")

READ_STATS = (
    "<p><b>How to read this.</b> The <b>PSR</b> is the probability that the best trial's true Sharpe "
    "ratio is above 0, given how long, skewed and fat-tailed its returns are. The <b>DSR</b> is the same "
    "probability against the best Sharpe ratio that this many trials would show by luck alone (SR0, from the "
    "number of trials and the spread of their Sharpe ratios): below 0.95 the best trial's edge is not "
    "distinguishable from selection among the trials. <b>MinTRL</b> is how many daily returns the best trial "
    "would need for its Sharpe ratio to be above 0 with 95% confidence; a study shorter than that cannot "
    "tell. <b>PBO</b> is the share of half-and-half splits of the days in which the trial that was best on "
    "one half ranks in the lower half of the trials on the other: near 0.5 the search picks noise, below "
    "0.1 the in-sample choice holds out of sample. See docs/optimize.md.</p>")

SCRIPT = "\n(function(){" + DRAW_CHARTS + r"""
function sortable(table){
  const head = table.tHead.rows[0], body = table.tBodies[0];
  let sortCol = -1, asc = true;
  Array.from(head.cells).forEach(function(th, k){
    th.addEventListener('click', function(){
      asc = sortCol === k ? !asc : true; sortCol = k;
      const rows = Array.from(body.rows);
      function key(tr){
        const raw = JSON.parse(tr.cells[k].dataset.raw);
        const num = typeof raw === 'number' ? raw : (typeof raw === 'string' && raw.trim() !== '' && !isNaN(+raw) ? +raw : null);
        return num === null ? [1, raw === null ? '' : String(raw)] : [0, num];
      }
      const keyed = rows.map(function(tr, i){ return [key(tr), i, tr]; });
      keyed.sort(function(a, b){
        const x = a[0], y = b[0];
        // missing values last whatever the direction
        if((x[1] === '') !== (y[1] === '')) return x[1] === '' ? 1 : -1;
        const c = x[0] !== y[0] ? x[0] - y[0] : (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        return (c || a[1] - b[1]) * (asc ? 1 : -1);
      });
      keyed.forEach(function(k){ body.appendChild(k[2]); });
    });
  });
}
document.querySelectorAll('table.sortable').forEach(sortable);
draw(0);
})();
"""


def _plain(value: Any) -> Any:
    """A value as the store's JSON holds it (Decimal back to its text, NaN to null)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _plain(float(value))
    if value is None:
        return None
    try:
        if value != value:  # pandas NA
            return None
    except (TypeError, ValueError):
        return None
    return value


def _text(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _floats(values: Any) -> list[float | None]:
    return [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {"title": {"text": title, "x": 0.01, "font": {"size": 15}}, "height": 340,
                              "margin": {"l": 60, "r": 30, "t": 40, "b": 50}, "hovermode": "closest",
                              "legend": {"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}}
    layout.update(extra)
    return layout


class _Page:
    def __init__(self, study: Study) -> None:
        self.study = study
        self.charts: list[dict[str, Any]] = []
        self.body: list[str] = []

    def chart(self, chart_id: str, data: list[dict[str, Any]], layout: dict[str, Any]) -> None:
        self.charts.append({"id": chart_id, "data": data, "layout": layout})
        self.body.append(f'<div class="chart" id="{_e(chart_id)}"></div>')

    def note(self, text: str, element_id: str | None = None, cls: str = "note") -> None:
        ident = f' id="{_e(element_id)}"' if element_id else ""
        self.body.append(f'<p class="{cls}"{ident}>{_e(text)}</p>')

    # --- sections ------------------------------------------------------------------------

    def header(self) -> None:
        s, meta = self.study, self.study.meta
        counts = s.trials["state"].value_counts()
        states = ", ".join(f"{state} {int(counts.get(state, 0))}" for state in counts.index) or "none"
        objectives = ", ".join(f"{o['direction']} {o['metric']}" for o in s.objectives) or "none"
        wf = meta.get("walk_forward")
        rows = [
            ("Algorithm", f"{_e(meta.get('class_name', '?'))} <span class='mono'>{_e(meta.get('algorithm', ''))}</span>"),
            ("Method", _e(f"{meta.get('method', '?')} (seed {meta.get('seed', '?')}, batch {meta.get('batch', '?')})")),
            ("Objectives", _e(objectives)),
            ("Constraints", _e("; ".join(meta.get("constraints") or []) or "none")
             + _e(f"; min_trades {meta.get('min_trades')}" if meta.get("min_trades") else "")),
            ("Trials", f"{len(s.trials)}: {_e(states)}"),
            ("Walk-forward", _e(", ".join(f"{k}={v}" for k, v in wf.items()) if isinstance(wf, dict) else "no")),
            ("Code hash", f"<span class='mono'>{_e(meta.get('code_hash', '?'))}</span>"),
            ("Data checksum", f"<span class='mono'>{_e(meta.get('data_checksum', '?'))}</span>"),
            ("Created", _e(meta.get("created_at", "?"))),
            ("Report", _e(_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
             + f" from <span class='mono'>{_e(s.path)}</span>"),
        ]
        self.body.append('<table id="header">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
                         + "</table>")

    def trial_table(self) -> None:
        s = self.study
        t = s.trials
        metric_columns = [m for m in HEADLINE_METRICS if m in t.columns and f"objective.{m}" not in s.objective_columns]
        columns = ["state"] + (["window"] if s.is_walk_forward else []) + s.param_names + s.objective_columns \
            + metric_columns + ["duration_s", "error"]
        ranked = list(s.trials.index)
        if s.objectives:
            key = s.objective_columns[0]
            ascending = s.directions[0] == "minimize"
            ranked = list(t.sort_values([key], ascending=ascending, kind="stable", na_position="last").index)
        shown = ranked[:MAX_TRIAL_ROWS]
        self.body.append("<h2>Trials</h2>")
        if len(ranked) > len(shown):
            self.note(f"the table holds the best {len(shown)} of {len(ranked)} trials; all are in study.sqlite")
        self.note("click a column's header to sort by it")
        head = "<th>number</th>" + "".join(f"<th>{_e(c)}</th>" for c in columns)
        rows = []
        for number in shown:
            row = t.loc[number]
            cells = [f'<td data-raw="{_e(json.dumps(int(number)))}">{int(number)}</td>']
            for c in columns:
                value = _plain(row[c])
                cls = ' class="text"' if isinstance(value, str) and c not in s.param_names else ""
                cells.append(f'<td{cls} data-raw="{_e(json.dumps(value))}">{_e(_text(value))}</td>')
            rows.append(f'<tr data-number="{int(number)}">' + "".join(cells) + "</tr>")
        self.body.append(f'<table id="trials" class="sortable"><thead><tr>{head}</tr></thead><tbody>'
                         + "".join(rows) + "</tbody></table>")

    def best(self) -> None:
        s = self.study
        self.body.append("<h2>Best parameters</h2>")
        try:
            best = s.best()
        except StudyError as err:
            self.note(str(err), "best")
            return
        rows = [(name, _text(best[name])) for name in s.param_names]
        rows += [(column, _text(best[column])) for column in s.objective_columns]
        self.body.append(f'<table id="best" data-number="{int(best.name)}"><tbody>'
                         + f"<tr><th>trial</th><td>{int(best.name)}</td></tr>"
                         + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</tbody></table>")
        if len(s.objectives) > 1:
            self.pareto()

    def pareto(self) -> None:
        s = self.study
        front, done = s.pareto_front(), s.complete()
        x_col, y_col = s.objective_columns[0], s.objective_columns[1]
        self.body.append("<h3>Pareto front</h3>")
        self.note(f"{len(front)} of {len(done)} complete trials are not dominated (no other trial is at least as "
                  "good in every objective and better in one)")
        def trace(frame: Any, name: str, **extra: Any) -> dict[str, Any]:
            return {"type": "scatter", "mode": "markers", "name": name, "x": _floats(frame[x_col]),
                    "y": _floats(frame[y_col]), "text": [f"trial {int(n)}" for n in frame.index], **extra}
        data: list[dict[str, Any]] = [trace(done, "trials", marker={"color": "#bbb", "size": 6}),
                trace(front.sort_values(x_col), "Pareto front", mode="lines+markers",
                      marker={"color": "#c0392b", "size": 9}, line={"color": "#c0392b", "dash": "dot"})]
        self.chart("pareto", data, _layout(f"Pareto front: {x_col} against {y_col}",
                                           xaxis={"title": {"text": f"{x_col} ({s.directions[0]})"}},
                                           yaxis={"title": {"text": f"{y_col} ({s.directions[1]})"}}))
        columns = s.param_names + s.objective_columns
        self.body.append('<table id="pareto-table"><thead><tr><th>trial</th>' + "".join(f"<th>{_e(c)}</th>" for c in columns)
                         + "</tr></thead><tbody>" + "".join(
                             f"<tr><td>{int(n)}</td>" + "".join(f"<td>{_e(_text(r[c]))}</td>" for c in columns) + "</tr>"
                             for n, r in front.iterrows()) + "</tbody></table>")

    def sensitivity(self) -> None:
        self.body.append("<h2>Sensitivity</h2>")
        try:
            result = sensitivity.analyse(self.study)
        except sensitivity.SensitivityError as err:
            self.note(f"no sensitivity: {err}", "peak")
            return
        peak = result.peak
        if peak is not None:
            if peak.isolated is None:
                text, cls = f"isolated peak: undetermined ({peak.reason})", "note"
            elif peak.isolated:
                text, cls = (f"warning: the best trial {peak.best_number} is an isolated peak: {peak.reason}. "
                             "A small change of its parameters loses most of its result; prefer a point "
                             "inside a plateau."), "note flagged"
            else:
                text, cls = f"the best trial {peak.best_number} sits on a plateau: {peak.reason}", "note"
            self.body.append(f'<p class="{cls}" id="peak" data-isolated="{json.dumps(peak.isolated)}">{_e(text)}</p>')
        for number, (param, line) in enumerate(result.along.items()):
            x = [str(i) for i in line.index]
            data: list[dict[str, Any]] = [{"type": "scatter", "mode": "lines+markers", "name": "best", "x": x, "y": _floats(line["best"])},
                    {"type": "scatter", "mode": "lines+markers", "name": "median", "x": x,
                     "y": _floats(line["median"]), "line": {"dash": "dot"}}]
            self.chart(f"sens_{number}", data, _layout(
                f"{result.objective} along {param} (over the other parameters)", xaxis={"type": "category",
                                                                                       "title": {"text": param}}))
        for number, ((a, b), grid) in enumerate(itertools.islice(result.pairs.items(), MAX_PAIRS)):
            z = [[None if not math.isfinite(v) else float(v) for v in row] for row in grid.to_numpy(dtype=np.float64)]
            heat = {"type": "heatmap", "name": result.objective, "x": [str(c) for c in grid.columns],
                    "y": [str(i) for i in grid.index], "z": z, "colorscale": "Viridis",
                    "reversescale": result.direction == "minimize", "hoverongaps": False,
                    "hovertemplate": f"{a} %{{x}}, {b} %{{y}}: %{{z}}<extra></extra>"}
            self.chart(f"heat_{number}", [heat], _layout(
                f"best {result.objective} over {a} × {b}", xaxis={"type": "category", "title": {"text": a}},
                yaxis={"type": "category", "title": {"text": b}}, height=380))
        if len(result.pairs) > MAX_PAIRS:
            self.note(f"{MAX_PAIRS} of {len(result.pairs)} parameter pairs drawn")

    def overfitting(self) -> None:
        self.body.append("<h2>Overfitting statistics</h2>")
        try:
            o = self.study.overfitting()
        except (StudyError, ValueError) as err:
            self.note(f"no overfitting statistics: {err}", "overfitting")
            return
        rows = [
            ("trials", str(o.trials), "complete trials with daily returns (N)"),
            ("best trial", str(o.best_trial), "by the first objective"),
            ("observations", str(o.observations), "daily returns of the best trial (T)"),
            ("Sharpe (daily)", f"{o.sharpe:.4f}", f"{o.sharpe_annual:.3f} annualised"),
            ("skewness, kurtosis", f"{o.skew:.3f}, {o.kurtosis:.3f}", "of the best trial's daily returns"),
            ("variance of the trials' Sharpe", f"{o.sharpe_variance:.3g}", "daily Sharpe ratios across the trials"),
            ("SR0", f"{o.expected_max_sharpe:.4f}", "expected best daily Sharpe of N skill-less trials"),
            ("PSR", f"{o.psr:.4f}", "P(true Sharpe > 0)"),
            ("DSR", f"{o.dsr:.4f}", "P(true Sharpe > SR0)"),
            ("MinTRL", "n/a" if o.min_track_record is None else f"{o.min_track_record:.0f} days",
             "returns needed for 95% confidence that Sharpe > 0"),
            ("PBO", "n/a" if o.pbo is None else f"{o.pbo.pbo:.3f}",
             "" if o.pbo is None else f"{len(o.pbo.logits)} splits of {o.pbo.partitions} blocks"),
        ]
        self.body.append('<table id="overfitting"><tbody>' + "".join(
            f'<tr><th>{_e(k)}</th><td class="value" data-key="{_e(k)}">{_e(v)}</td><td class="na">{_e(w)}</td></tr>'
            for k, v, w in rows) + "</tbody></table>")
        for note in o.notes:
            self.note(note)
        self.body.append(READ_STATS)
        if o.pbo is not None:
            counts, edges = np.histogram(o.pbo.logits, bins=min(40, max(len(o.pbo.logits) // 5, 5)))
            centers = (edges[:-1] + edges[1:]) / 2
            self.chart("pbo_logits", [{"type": "bar", "name": "splits", "x": _floats(centers), "y": counts.tolist(),
                                       "marker": {"color": ["#c0392b" if c <= 0 else "#27ae60" for c in centers]}}],
                       _layout("Logits of the in-sample best's out-of-sample rank (≤ 0: overfit)", bargap=0.02,
                               xaxis={"title": {"text": "logit"}}))

    def walk_forward(self) -> None:
        s = self.study
        if not s.is_walk_forward or not len(s.windows):
            return
        self.body.append("<h2>Walk-forward</h2>")
        try:
            stitched = s.stitched_equity()
            x = [int(t.value // 1_000_000) for t in stitched.index]
            self.chart("wf_equity", [{"type": "scatter", "mode": "lines", "name": "out-of-sample equity", "x": x,
                                      "y": _floats(stitched.to_numpy(dtype=np.float64))}],
                       _layout("Stitched out-of-sample equity (each window starts where the previous ended)",
                               xaxis={"type": "date"}, hovermode="x unified"))
        except StudyError as err:
            self.note(f"no stitched equity: {err}")
        path = s.parameter_path()
        starts = [str(v) for v in s.windows["test_start"]]
        data: list[dict[str, Any]] = []
        for param in path.columns:
            values = [_plain(v) for v in path[param]]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)
            data.append({"type": "scatter", "mode": "lines+markers", "name": param, "x": starts,
                         "y": values if numeric else [str(v) for v in values], "line": {"shape": "hv"}})
        if data:
            self.chart("wf_params", data, _layout("Chosen parameters per window (by test start)",
                                                  xaxis={"type": "category"}))
        try:
            eff = s.efficiency()
        except StudyError as err:
            self.note(str(err))
            return
        overall = "n/a" if eff.overall is None else f"{eff.overall:.3f}"
        self.body.append(f'<p id="wfe">walk-forward efficiency ({_e(eff.metric)}, annualised out of sample / in '
                         f'sample): <b data-value="{_e(json.dumps(eff.overall))}">{_e(overall)}</b></p>')
        table = eff.per_window
        params = list(path.columns)
        head = ["window", "train", "test", *params, "in sample", "out of sample", "efficiency"]
        rows = []
        for number, w in s.windows.iterrows():
            cells = [str(number), f"{w['train_start']} .. {w['train_end']}", f"{w['test_start']} .. {w['test_end']}"]
            cells += [_text(w[p]) for p in params]
            e = table.loc[number]
            cells += [_text(e["in_sample"]), _text(e["out_of_sample"]), _text(e["efficiency"])]
            rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
        self.body.append('<table id="windows"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head)
                         + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")

    def monte_carlo(self, files: Sequence[Path]) -> None:
        if not files:
            return
        self.body.append("<h2>Monte Carlo</h2>")
        for path in files:
            data = montecarlo.read(path)
            method = str(data.get("method"))
            steps = data["steps"]
            bands = data["bands"]
            traces = [
                {"type": "scatter", "mode": "lines", "name": "95%", "x": steps, "y": bands["95"],
                 "line": {"width": 0}, "showlegend": False},
                {"type": "scatter", "mode": "lines", "name": "5–95%", "x": steps, "y": bands["5"], "fill": "tonexty",
                 "fillcolor": "rgba(52,152,219,0.15)", "line": {"width": 0}},
                {"type": "scatter", "mode": "lines", "name": "75%", "x": steps, "y": bands["75"],
                 "line": {"width": 0}, "showlegend": False},
                {"type": "scatter", "mode": "lines", "name": "25–75%", "x": steps, "y": bands["25"], "fill": "tonexty",
                 "fillcolor": "rgba(52,152,219,0.35)", "line": {"width": 0}},
                {"type": "scatter", "mode": "lines", "name": "median", "x": steps, "y": bands["50"],
                 "line": {"color": "#2c3e50"}},
            ]
            unit = str(data.get("step_unit", "trade"))  # noise reruns are drawn per day
            self.chart(f"mc_{method}", traces, _layout(
                f"Monte Carlo ({method}, {data.get('runs')} runs of {data.get('trades')} trades, seed {data.get('seed')}): "
                f"equity after each {unit}", xaxis={"title": {"text": unit}}, hovermode="x unified"))
            head = "".join(f"<th>{p}%</th>" for p in data["percentiles"])
            final = "".join(f"<td>{float(data['final_value'][str(p)]):,.2f}</td>" for p in data["percentiles"])
            dd = "".join(f"<td>{float(data['max_drawdown'][str(p)]) * 100:.2f}%</td>" for p in data["percentiles"])
            self.body.append(f'<table class="montecarlo" id="mc_{_e(method)}_table"><thead><tr><th></th>{head}'
                             f"<th>the run</th></tr></thead><tbody><tr><th>final value</th>{final}"
                             f"<td>{float(data['actual_final_value']):,.2f}</td></tr><tr><th>max drawdown</th>{dd}"
                             f"<td>{float(data['actual_max_drawdown']) * 100:.2f}%</td></tr></tbody></table>")

    def render(self) -> str:
        meta = self.study.meta
        title = f"rustybt study: {meta.get('class_name', '?')} ({meta.get('method', '?')})"
        payload = {"charts": self.charts}
        style = CSS + "#trials td{text-align:right;font-variant-numeric:tabular-nums}#trials td.text{text-align:left}" \
            "#trials th{cursor:pointer;user-select:none}.flagged{color:#c0392b;font-weight:bold}"
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' "
            "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:\">"
            f"<title>{_e(title)}</title><style>{style}</style></head><body><h1>{_e(title)}</h1>"
            + "".join(self.body)
            + f'<script type="application/json" id="rustybt-data">{_json(payload)}</script>'
            + f"<script>{_plotly_js()}</script><script>{SCRIPT}</script></body></html>\n")


def _monte_carlo_files(study: Study, given: Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    if given is not None:
        files = [Path(p) for p in given]
        for path in files:
            if not path.is_file():
                raise StudyError(f"Monte Carlo file `{path}` does not exist",
                                 "write it with rustybt_api.study.montecarlo.run(RUN_DIR)")
        return files
    return sorted((study.path / BEST_RUN_DIR).glob("montecarlo-*.json"))


def write_study_report(study_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                       montecarlo_files: Sequence[str | os.PathLike[str]] | None = None) -> str:
    """Writes the study report of ``study_dir`` to ``out`` (default ``STUDY_DIR/report.html``)
    and returns its path."""
    study = load(study_dir)
    page = _Page(study)
    page.header()
    page.best()
    page.overfitting()
    page.sensitivity()
    page.walk_forward()
    page.monte_carlo(_monte_carlo_files(study, montecarlo_files))
    page.trial_table()
    path = Path(out) if out is not None else study.path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page.render(), encoding="utf-8")
    return str(path)


def main(study_dir: str, out: str | None = None, pdf: bool = False,
         montecarlo_files: Sequence[str] | None = None) -> list[str]:
    """The command's entry: writes the study report (and its PDF, printed by headless Chromium)
    and returns the paths written. Raises :class:`StudyError` (``hint``) or
    :class:`rustybt_api.report.ReportError` (PDF)."""
    html_path = write_study_report(study_dir, out, montecarlo_files)
    written = [html_path]
    if pdf:
        from ..report._browser import print_pdf

        written.append(str(print_pdf(Path(html_path), Path(html_path).with_suffix(".pdf"))))
    return written
