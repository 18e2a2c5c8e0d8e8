"""The HTML page: header, metrics table, chart sections, trades and rejection tables, with
plotly.js and the data inline. The page exposes ``window.rustybt`` (chart ids, when each was
drawn) for tests and the benchmark."""

from __future__ import annotations

import html
import importlib
import json
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:16px;color:#222}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6}.metrics{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.metrics table{min-width:340px}
.metrics td.value{text-align:right;font-variant-numeric:tabular-nums}.na{color:#999}.note{color:#8a6d3b;font-size:13px;margin:4px 0}
.chart{width:100%;min-height:200px;break-inside:avoid;page-break-inside:avoid}.mono{font-family:ui-monospace,monospace;font-size:12px}
#trades th{cursor:pointer;user-select:none}#trades td{text-align:right;font-variant-numeric:tabular-nums}
#trades td.text{text-align:left}.pager{margin:6px 0;font-size:13px}.pager button{margin:0 4px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:8px}
@media print{body{max-width:none}.pager{display:none}h2{break-after:avoid}}
"""

#: The chart loop every rustybt page shares (the run report, the study report): draws R.charts
#: one after the other and records in window.rustybt when each was drawn and when all are.
DRAW_CHARTS = r"""
const R = JSON.parse(document.getElementById('rustybt-data').textContent);
const config = {responsive:true, displaylogo:false, modeBarButtonsToRemove:['sendDataToCloud']};
const state = window.rustybt = {charts: R.charts.map(c => c.id), drawn: {}, first: null, done: false, errors: []};
function draw(i){
  if(i >= R.charts.length){ state.done = true; return; }
  const c = R.charts[i];
  Plotly.newPlot(c.id, c.data, c.layout, config).then(function(){
    state.drawn[c.id] = performance.now();
    if(state.first === null){ state.first = performance.now(); }
    setTimeout(function(){ draw(i + 1); }, 0);
  }, function(err){ state.errors.push(String(err)); console.error(err); draw(i + 1); });
}
"""

SCRIPT = "\n(function(){" + DRAW_CHARTS + r"""function fmtTime(ms){ return new Date(ms).toISOString().replace('T',' ').replace('.000Z','Z'); }
function fmtDuration(ms){
  let s = Math.round(ms/1000); const d = Math.floor(s/86400); s -= d*86400;
  const h = Math.floor(s/3600); s -= h*3600; const m = Math.floor(s/60); s -= m*60;
  return (d ? d+'d ' : '') + String(h).padStart(2,'0')+':'+String(m).padStart(2,'0')+':'+String(s).padStart(2,'0');
}
function tradesTable(){
  const T = R.trades, host = document.getElementById('trades');
  if(!host || !T.rows) return;
  const cols = T.columns, pageSize = 50, byName = {};
  cols.forEach(function(col){ byName[col.name] = col; });
  cols.forEach(function(col){
    if(col.kind === 'text'){ col.values = col.codes.map(function(c){ return col.dictionary[c]; }); }
    if(col.kind === 'duration'){
      const a = byName[col.of[0]].values, b = byName[col.of[1]].values;
      col.values = b.map(function(t, i){ return t - a[i]; });
    }
  });
  let order = Array.from({length: T.rows}, (_, i) => i), page = 0, sortCol = -1, asc = true;
  const table = document.createElement('table'), head = table.createTHead().insertRow(), body = table.createTBody();
  cols.forEach(function(col, k){
    const th = document.createElement('th'); th.textContent = col.name; th.dataset.column = col.name;
    th.addEventListener('click', function(){
      asc = sortCol === k ? !asc : true; sortCol = k;
      const v = col.values, num = col.kind !== 'text';
      order.sort(function(a, b){
        const x = num ? parseFloat(v[a]) : v[a], y = num ? parseFloat(v[b]) : v[b];
        return (x < y ? -1 : x > y ? 1 : a - b) * (asc ? 1 : -1);
      });
      page = 0; fill();
    });
    head.appendChild(th);
  });
  const pager = document.createElement('div'); pager.className = 'pager';
  function fill(){
    body.textContent = '';
    const start = page*pageSize, end = Math.min(T.rows, start+pageSize);
    for(let r = start; r < end; r++){
      const i = order[r], tr = body.insertRow();
      cols.forEach(function(col){
        const td = tr.insertCell(), v = col.values[i];
        td.textContent = col.kind === 'time' ? fmtTime(v) : col.kind === 'duration' ? fmtDuration(v) : v;
        if(col.kind === 'text') td.className = 'text';
      });
    }
    pager.innerHTML = '';
    const prev = document.createElement('button'), next = document.createElement('button');
    prev.textContent = '\u2190'; next.textContent = '\u2192';
    prev.disabled = page === 0; next.disabled = end >= T.rows;
    prev.onclick = function(){ page--; fill(); }; next.onclick = function(){ page++; fill(); };
    pager.append(prev, 'rows ' + (start+1) + '\u2013' + end + ' of ' + T.rows, next);
  }
  host.append(pager, table); fill();
}
tradesTable();
draw(0);
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _json(value: Any) -> str:
    try:
        orjson: Any = importlib.import_module("orjson")
        text = str(orjson.dumps(value).decode())
    except ImportError:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    # inside <script>: no closing tag can appear in the data
    return text.replace("</", "<\\/")


def _metrics_html(groups: list[dict[str, Any]]) -> str:
    parts = ['<div class="metrics" id="metrics">']
    for group in groups:
        bench = group["has_benchmark"]
        parts.append(f"<table><thead><tr><th>{_e(group['title'])}</th><th>strategy</th>"
                     + ("<th>benchmark</th>" if bench else "") + "</tr></thead><tbody>")
        for row in group["rows"]:
            reason = row.get("reason")
            cls = "value na" if row["text"] == "n/a" else "value"
            title = f' title="{_e(reason)}"' if reason else ""
            text = _e(row["text"]) + (f' <span class="na">({_e(reason)})</span>' if reason else "")
            parts.append(f'<tr><td>{_e(row["key"])}</td><td class="{cls}" data-key="{_e(row["key"])}" '
                         f'data-raw="{_e(row["raw"])}"{title}>{text}</td>')
            if bench:
                parts.append(f'<td class="value" data-benchmark="{_e(row.get("benchmark_raw", "null"))}">'
                             f'{_e(row.get("benchmark", ""))}</td>')
            parts.append("</tr>")
        parts.append("</tbody></table>")
    parts.append("</div>")
    return "".join(parts)


def _header_html(h: dict[str, Any]) -> str:
    params = ", ".join(f"{_e(k)}={_e(v)}" for k, v in h["parameters"].items()) or "none"
    data = "".join(
        f'<div class="mono">{_e(d["file"])} ({_e(d.get("size", ""))})'
        + (f'<br>sha256 {_e(d["sha256"])}' if d.get("sha256") else "") + "</div>"
        for d in h["data"]
    ) or "the bundled sample"
    rows = [
        ("Algorithm", _e(h["algorithm"]) + f' <span class="mono">{_e(h["algorithm_path"])}</span>'),
        ("Parameters", params),
        ("Data", data + (f"<div>symbols: {_e(h['symbols'])}</div>" if h["symbols"] else "")),
        ("Period", _e(h["period"]) + (f" ({_e(h['bars'])} bars)" if h.get("bars") is not None else "")),
        ("Run", f"{_e(h['status'])}; {_e(h['run_time'])}; {_e(h['versions'])}"),
        ("Benchmark", _e(h["benchmark"])),
        ("Report", f"{_e(h['generated'])} from <span class='mono'>{_e(h['folder'])}</span>"),
    ]
    return '<table id="header">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def render(title: str, header: dict[str, Any], metrics: list[dict[str, Any]], charts: list[dict[str, Any]],
           trades: dict[str, Any], rejections: list[tuple[str, int]], notes: list[str], plotly_js: str) -> str:
    sections: dict[str, list[dict[str, Any]]] = {}
    for chart in charts:
        sections.setdefault(chart["section"], []).append(chart)
    body = [f"<h1>{_e(title)}</h1>", _header_html(header)]
    if notes:
        body.append('<div id="notes">' + "".join(f'<p class="note">{_e(n)}</p>' for n in notes) + "</div>")
    body += ["<h2>Metrics</h2>", _metrics_html(metrics)]
    for section, items in sections.items():
        body.append(f"<h2>{_e(section)}</h2>")
        if section == "Trades":
            body.append('<div class="grid2">' + "".join(f'<div class="chart" id="{c["id"]}"></div>' for c in items) + "</div>")
            if trades.get("note"):
                body.append(f'<p class="note">{_e(trades["note"])}</p>')
            body.append('<div id="trades"></div>')
            continue
        for chart in items:
            body.append(f'<div class="chart" id="{chart["id"]}"></div>')
            if chart.get("note"):
                body.append(f'<p class="note">{_e(chart["note"])}</p>')
        if section == "Orders" and rejections:
            body.append('<table id="rejections"><thead><tr><th>rejection reason</th><th>orders</th></tr></thead><tbody>'
                        + "".join(f"<tr><td>{_e(r)}</td><td>{n}</td></tr>" for r, n in rejections) + "</tbody></table>")
    if "Trades" not in sections and trades.get("rows"):
        body += ["<h2>Trades</h2>", '<div id="trades"></div>']
    payload = {"charts": [{"id": c["id"], "data": c["data"], "layout": c["layout"]} for c in charts], "trades": trades}
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data: blob:; font-src data:\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + f'<script type="application/json" id="rustybt-data">{_json(payload)}</script>'
        + f"<script>{plotly_js}</script><script>{SCRIPT}</script></body></html>\n"
    )
