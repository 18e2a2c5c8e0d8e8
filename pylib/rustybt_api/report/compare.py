"""`rustybt compare RUN_A RUN_B [...]`: runs side by side, and one run's decisions and fills
matched against another's (a live or paper session against the backtest over the same bars).

Matching takes the first run as the reference. A *decision* is an order submission (the
``new`` rows of orders.csv), keyed by symbol, submission time, side, type, quantity, limit and
stop; equal keys pair in the order they were made. The fills of a matched pair of orders pair in
sequence, and each gives, exactly (Decimal prices, integer nanoseconds):

* ``slippage``: how much worse the other run's price is per unit (``price - reference price``
  for a buy, the opposite for a sell; negative is better);
* ``latency_ns``: the other fill's time minus the reference fill's;
* ``fee_diff``: the other fee minus the reference fee.

Orders only in one run are listed. The equity is compared at the times both runs have a point:
the tracking error is the sample standard deviation of the difference of their returns between
those points, the correlation Pearson's of those returns.
"""

from __future__ import annotations

import html as _html
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..results import Results, ResultsError, load
from . import ReportError
from ._reduce import reduce_indices

#: Scalar metrics shown side by side, in this order, when present (then any other scalar).
HEADLINE = ("status", "start_time", "end_time", "final_equity", "net_profit", "total_return", "cagr", "sharpe",
            "sortino", "annualized_volatility", "max_drawdown", "calmar", "num_trades", "win_rate", "profit_factor",
            "fees_paid", "num_fills")
DECISION_KEY = ("symbol", "time", "side", "type", "quantity", "limit", "stop")


@dataclass
class FillMatch:
    symbol: str
    side: str
    decision_time: str
    reference_time: Any
    time: Any
    reference_price: Decimal
    price: Decimal
    qty: Decimal
    slippage: Decimal
    latency_ns: int
    fee_diff: Decimal


@dataclass
class Match:
    """One run matched against the reference."""

    name: str
    decisions: int = 0
    only_in_reference: list[dict[str, Any]] = field(default_factory=list)
    only_in_other: list[dict[str, Any]] = field(default_factory=list)
    fills: list[FillMatch] = field(default_factory=list)
    unmatched_fills: int = 0
    fees_reference: Decimal = Decimal(0)
    fees_other: Decimal = Decimal(0)
    tracking_error: float | None = None
    correlation: float | None = None
    common_points: int = 0

    @property
    def identical(self) -> bool:
        return (not self.only_in_reference and not self.only_in_other and not self.unmatched_fills
                and all(f.slippage == 0 and f.latency_ns == 0 and f.fee_diff == 0 for f in self.fills)
                and self.tracking_error in (0.0, None))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _decisions(r: Results) -> dict[tuple[Any, ...], list[int]]:
    orders = r.orders
    out: dict[tuple[Any, ...], list[int]] = {}
    if not len(orders):
        return out
    new = orders[orders["status"].astype(str) == "new"]
    times = new.index
    for i in range(len(new)):
        row = new.iloc[i]
        key = (str(row["symbol"]), times[i], str(row["side"]), str(row["type"]), _text(row["quantity"]),
               _text(row.get("limit")), _text(row.get("stop")))
        out.setdefault(key, []).append(int(row["order_id"]))
    return out


def _fills_by_order(r: Results) -> dict[int, list[tuple[Any, Decimal, Decimal, Decimal]]]:
    out: dict[int, list[tuple[Any, Decimal, Decimal, Decimal]]] = {}
    fills = r.fills
    for t, order_id, qty, price, fee in zip(fills.index, fills["order_id"], fills["qty"], fills["price"], fills["fee"]):
        out.setdefault(int(order_id), []).append((t, qty, price, fee))
    return out


def match(reference: Results, other: Results, name: str = "") -> Match:
    """Matches ``other``'s decisions and fills against ``reference``'s (see the module doc)."""
    result = Match(name or str(other.path))
    ref_decisions, other_decisions = _decisions(reference), _decisions(other)
    ref_fills, other_fills = _fills_by_order(reference), _fills_by_order(other)
    for key in sorted(set(ref_decisions) | set(other_decisions), key=lambda k: (k[1], k[0], k[2])):
        mine, theirs = ref_decisions.get(key, []), other_decisions.get(key, [])
        described = dict(zip(DECISION_KEY, (str(v) for v in key)))
        result.only_in_reference += [described] * max(len(mine) - len(theirs), 0)
        result.only_in_other += [described] * max(len(theirs) - len(mine), 0)
        for ref_id, other_id in zip(mine, theirs):
            result.decisions += 1
            a, b = ref_fills.get(ref_id, []), other_fills.get(other_id, [])
            result.unmatched_fills += abs(len(a) - len(b))
            sign = 1 if key[2] == "buy" else -1
            for (ta, qa, pa, fa), (tb, qb, pb, fb) in zip(a, b):
                result.fills.append(FillMatch(
                    symbol=key[0], side=key[2], decision_time=str(key[1]), reference_time=ta, time=tb,
                    reference_price=pa, price=pb, qty=qb, slippage=(pb - pa) * sign,
                    latency_ns=int(tb.value - ta.value), fee_diff=fb - fa))
    result.fees_reference = sum((Decimal(f) for f in reference.fills["fee"]), Decimal(0)) if len(reference.fills) else Decimal(0)
    result.fees_other = sum((Decimal(f) for f in other.fills["fee"]), Decimal(0)) if len(other.fills) else Decimal(0)
    _equity(reference, other, result)
    return result


def _equity(reference: Results, other: Results, result: Match) -> None:
    a = reference.table("equity", money="float", columns=["equity"])["equity"]
    b = other.table("equity", money="float", columns=["equity"])["equity"]
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner")
    result.common_points = len(joined)
    if len(joined) < 3:
        return
    ra = joined["a"].to_numpy()[1:] / joined["a"].to_numpy()[:-1] - 1
    rb = joined["b"].to_numpy()[1:] / joined["b"].to_numpy()[:-1] - 1
    diff = rb - ra
    result.tracking_error = float(np.std(diff, ddof=1))
    if np.std(ra) > 0 and np.std(rb) > 0:
        result.correlation = float(np.corrcoef(ra, rb)[0, 1])
    elif np.array_equal(ra, rb):
        result.correlation = 1.0  # both flat and identical


def _summary(m: Match) -> list[str]:
    lines = [f"{m.name} against the reference:",
             f"  decisions matched {m.decisions}, only in the reference {len(m.only_in_reference)}, "
             f"only in this run {len(m.only_in_other)}"]
    if m.fills:
        slip = [f.slippage for f in m.fills]
        lat = [f.latency_ns for f in m.fills]
        cost = sum((f.slippage * f.qty for f in m.fills), Decimal(0))
        lines.append(f"  fills matched {len(m.fills)} (unmatched {m.unmatched_fills}); slippage per unit: "
                     f"min {min(slip)}, max {max(slip)}, total cost {cost}")
        lines.append(f"  latency: min {min(lat) / 1e6:g} ms, mean {sum(lat) / len(lat) / 1e6:g} ms, "
                     f"max {max(lat) / 1e6:g} ms")
    else:
        lines.append(f"  fills matched 0 (unmatched {m.unmatched_fills})")
    lines.append(f"  fees: reference {m.fees_reference}, this run {m.fees_other}, "
                 f"difference {m.fees_other - m.fees_reference}")
    te = "n/a" if m.tracking_error is None else f"{m.tracking_error:.3g}"
    corr = "n/a" if m.correlation is None else f"{m.correlation * 100:.4f}%"
    lines.append(f"  equity over {m.common_points} common points: tracking error {te} per step, "
                 f"correlation of returns {corr}")
    lines.append("  identical: yes" if m.identical else "  identical: no")
    return lines


def metrics_rows(runs: Sequence[Results]) -> list[tuple[str, list[str]]]:
    keys: list[str] = [k for k in HEADLINE if any(k in r.raw for r in runs)]
    for r in runs:
        for k, v in r.raw.items():
            if k not in keys and not isinstance(v, (dict, list)) and k not in ("partial", "reason"):
                keys.append(k)
    return [(k, ["—" if k not in r.raw else ("n/a" if r.raw[k] is None else str(r.raw[k])) for r in runs])
            for k in keys]


def main(runs: list[str], html: str | None = None, match_fills: bool = False) -> str:
    """The command's entry: the text it prints (and the HTML page written when asked)."""
    if len(runs) < 2:
        raise ReportError("`rustybt compare` needs at least two results folders")
    loaded = []
    for path in runs:
        try:
            loaded.append(load(path))
        except ResultsError as err:
            raise ReportError(str(err), err.hint) from None
    names = [_name(r, i) for i, r in enumerate(loaded)]
    rows = metrics_rows(loaded)
    width = max(len(k) for k, _ in rows)
    cols = [max(len(n), *(len(v[i]) for _, v in rows)) for i, n in enumerate(names)]
    out = [" " * width + "  " + "  ".join(n.rjust(c) for n, c in zip(names, cols))]
    out += [k.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(values, cols)) for k, values in rows]
    matches = [match(loaded[0], r, names[i + 1]) for i, r in enumerate(loaded[1:])] if match_fills else []
    for m in matches:
        out += [""] + _summary(m)
    if html:
        _write_html(Path(html), loaded, names, rows, matches)
        out += ["", f"comparison page: {html}"]
    return "\n".join(out) + "\n"


def _name(r: Results, index: int) -> str:
    return f"{chr(ord('A') + index)}:{r.path.name}" if index < 26 else r.path.name


def _write_html(path: Path, runs: Sequence[Results], names: list[str], rows: list[tuple[str, list[str]]],
                matches: list[Match]) -> None:
    from . import _plotly_js
    from ._page import CSS, _json

    e = _html.escape
    traces = []
    for r, name in zip(runs, names):
        eq = r.table("equity", money="float", columns=["equity"])
        times = np.asarray(eq.index.asi8, dtype=np.int64)
        values = eq["equity"].to_numpy(dtype=np.float64) if len(eq) else np.zeros(0)
        idx = reduce_indices(values)
        traces.append({"type": "scatter", "mode": "lines", "name": name, "x": (times[idx] // 1_000_000).tolist(),
                       "y": values[idx].tolist()})
    layout = {"title": {"text": "Equity"}, "height": 380, "xaxis": {"type": "date"}, "hovermode": "x unified"}
    table = ("<table id='metrics'><thead><tr><th></th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr></thead>"
             + "".join(f"<tr><td>{e(k)}</td>" + "".join(f"<td>{e(v)}</td>" for v in values) + "</tr>"
                       for k, values in rows) + "</table>")
    parts = [f"<h1>rustybt compare</h1>{table}<div class='chart' id='equity'></div>"]
    for m in matches:
        parts.append(f"<h2>{e(m.name)} against {e(names[0])}</h2><pre>{e(chr(10).join(_summary(m)))}</pre>")
        if m.fills:
            parts.append("<table class='fills'><thead><tr><th>symbol</th><th>side</th><th>decision</th>"
                         "<th>reference price</th><th>price</th><th>slippage</th><th>latency ms</th><th>fee diff</th>"
                         "</tr></thead><tbody>" + "".join(
                             f"<tr><td>{e(f.symbol)}</td><td>{e(f.side)}</td><td>{e(f.decision_time)}</td>"
                             f"<td>{f.reference_price}</td><td>{f.price}</td><td>{f.slippage}</td>"
                             f"<td>{f.latency_ns / 1e6:g}</td><td>{f.fee_diff}</td></tr>" for f in m.fills[:2000])
                         + "</tbody></table>")
        for title, missing in (("only in the reference", m.only_in_reference), ("only in this run", m.only_in_other)):
            if missing:
                parts.append(f"<p>{len(missing)} decisions {title}: "
                             + "; ".join(e(" ".join(d.values())) for d in missing[:200]) + "</p>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' "
            "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:\">"
            f"<title>rustybt compare</title><style>{CSS}</style></head><body>{''.join(parts)}"
            f"<script>{_plotly_js()}</script><script>Plotly.newPlot('equity', {_json(traces)}, {_json(layout)}, "
            "{displaylogo:false}).then(function(){window.rustybt={done:true};});</script></body></html>\n")
    path.write_text(page, encoding="utf-8")

