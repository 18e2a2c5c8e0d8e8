"""What the report draws, computed from a results folder: each chart as plotly.js data and
layout (plain dicts: the page draws them with the embedded plotly.js), the metrics table and
the trades table.

Every series is reduced for drawing (:mod:`._reduce`); money is read as floats for charts and
as the exact decimal text for tables.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..results import MONEY_COLUMNS, Results
from ..results import load as load_results
from ._bars import Closes, load_closes, read_file
from ._reduce import MAX_POINTS, reduce_indices

NS_PER_DAY = 86_400 * 10**9
#: Buy and sell markers drawn per symbol at most; the rest are in the trades table and files.
MAX_MARKERS = 2000
#: Rows of the trades table at most (the whole list is trades.csv).
MAX_TRADE_ROWS = 20_000
#: Bins of the PnL, holding-period and daily-return histograms.
BINS = 50

#: Metric groups of the table: a key goes to the first group one of whose words it contains.
GROUPS = [
    ("Trades", ("trade", "win", "loss", "streak", "holding", "exposure", "expectancy", "mae", "mfe",
                "largest", "smallest", "gross", "profit_factor")),
    ("Returns", ("return", "cagr", "profit", "equity", "cash", "sharpe", "sortino", "calmar", "omega",
                 "alpha", "beta", "information", "stability", "tail")),
    ("Risk", ("drawdown", "volatility", "var", "skew", "kurtosis", "tracking", "downside")),
    ("Costs", ("cost", "fee", "commission", "slippage", "borrow", "financing")),
    ("Orders", ("order", "fill")),
    ("Period", ("time", "returns", "days", "periods", "points", "status", "partial", "reason", "risk_free")),
]


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out.append((prefix, value))


def metric_groups(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Every leaf of metrics.json (but ``run`` and ``unavailable``) in a titled group, with its
    JSON text (what the page shows and the tests compare) and the benchmark's when present."""
    unavailable: dict[str, Any] = raw["unavailable"] if isinstance(raw.get("unavailable"), dict) else {}
    benchmark: dict[str, Any] = raw["benchmark"] if isinstance(raw.get("benchmark"), dict) else {}
    leaves: list[tuple[str, Any]] = []
    for key, value in raw.items():
        # A portfolio's section has its own charts and table (Analysis.portfolio_charts).
        if key not in ("run", "unavailable", "benchmark", "portfolio"):
            flatten(key, value, leaves)
    bench_flat: dict[str, Any] = {}
    bench_leaves: list[tuple[str, Any]] = []
    flatten("", benchmark, bench_leaves)
    bench_flat.update(bench_leaves)
    groups: dict[str, list[dict[str, Any]]] = {title: [] for title, _ in GROUPS}
    groups["Other"] = []
    for key, value in leaves:
        words = key.lower()
        title = next((t for t, needles in GROUPS if any(n in words for n in needles)), "Other")
        row = {"key": key, "raw": _json_text(value), "text": format_metric(key, value),
               "reason": unavailable.get(key)}
        if key in bench_flat:
            row["benchmark"] = format_metric(key, bench_flat[key])
            row["benchmark_raw"] = _json_text(bench_flat[key])
        groups[title].append(row)
    return [{"title": t, "rows": rows, "has_benchmark": bool(bench_flat)} for t, rows in groups.items() if rows]


def format_metric(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "; ".join(_json_text(v) if isinstance(v, (dict, list)) else str(v) for v in value) or "none"
    if key.endswith("_ns") and isinstance(value, (int, float)):
        return f"{value / NS_PER_DAY:.2f} days"
    if isinstance(value, float):
        if any(w in key for w in ("return", "drawdown", "win_rate", "volatility", "cagr")) and abs(value) < 100:
            return f"{value * 100:.2f}%"
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _ms(times_ns: npt.NDArray[np.int64]) -> list[int]:
    return (times_ns // 1_000_000).tolist()  # type: ignore[no-any-return]


def _floats(values: npt.NDArray[np.float64], digits: int = 10) -> list[float | None]:
    return [None if not math.isfinite(v) else float(f"{v:.{digits}g}") for v in values.tolist()]


def _line(name: str, x: Any, y: Any, **extra: Any) -> dict[str, Any]:
    trace = {"type": "scatter", "mode": "lines", "name": name, "x": x, "y": y}
    trace.update(extra)
    return trace


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0.01, "font": {"size": 15}},
        "height": 340,
        "margin": {"l": 60, "r": 30, "t": 40, "b": 40},
        "legend": {"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
        "hovermode": "x unified",
        "xaxis": {"type": "date"},
    }
    layout.update(extra)
    return layout


class Analysis:
    """The report's content for one results folder."""

    def __init__(self, results: Results, benchmark: str | None, window: int) -> None:
        self.results = results
        self.raw = results.raw
        self.info = results.info
        self.window = window
        self.notes: list[str] = []
        self.charts: list[dict[str, Any]] = []
        equity = results.table("equity", money="float", columns=["equity"])
        self.times = np.asarray(equity.index.asi8, dtype=np.int64) if len(equity) else np.zeros(0, np.int64)
        self.equity = equity["equity"].to_numpy(dtype=np.float64) if len(equity) else np.zeros(0)
        self.initial_cash = float(self.raw.get("initial_cash") or self.info.get("initial_cash") or
                                  (self.equity[0] if len(self.equity) else 1.0))
        self.fills = results.table("fills", money="float")
        self.symbols: list[str] = [str(s) for s in self.info.get("symbols") or []]
        interval = int(self.info.get("bar_interval_ns") or 0)
        self.closes = load_closes([str(f) for f in self.info.get("data_files") or []], self.symbols, interval)
        self.notes.extend(self.closes.notes)
        self.benchmark_name, self.benchmark = self._benchmark(benchmark, interval)

    # --- series -------------------------------------------------------------------------

    def _benchmark(self, spec: str | None, interval: int) -> tuple[str | None, npt.NDArray[np.float64] | None]:
        """Benchmark equity on the equity's times, starting at the initial cash."""
        if not len(self.times):
            return None, None
        closes = self.closes
        if spec is None:
            traded = sorted(set(self.fills["symbol"].astype(str))) if len(self.fills) else []
            members = [s for s in (traded or self.symbols) if s in closes.series]
            name = "buy and hold " + (", ".join(members) if len(members) <= 4 else f"{len(members)} symbols")
            if len(members) > 1:
                name += " (equal weight)"
        elif spec in closes.series:
            members, name = [spec], f"buy and hold {spec}"
        elif Path(spec).is_file():
            own = Closes()
            read_file(Path(spec), [Path(spec).stem], own)
            if not own.series:
                from . import ReportError
                raise ReportError(f"benchmark file `{spec}` has no readable closes", own.notes[0] if own.notes else None)
            key = next(iter(own.series))
            t, c = own.series[key]
            closes = Closes()
            closes.series[key] = (t + interval, c)
            members, name = [key], f"buy and hold {Path(spec).name}"
        else:
            from . import ReportError
            raise ReportError(
                f"benchmark `{spec}` is neither a symbol of the run nor a file",
                f"symbols of the run: {', '.join(self.symbols) or 'none'}; or give a CSV/Parquet bar file",
            )
        if not members:
            self.notes.append("no prices to build a benchmark from")
            return None, None
        ratios = []
        for symbol in members:
            prices = closes.asof(symbol, self.times)
            valid = np.flatnonzero(np.isfinite(prices))
            if not len(valid):
                continue
            base = prices[valid[0]]
            ratio = np.where(np.isfinite(prices), prices / base, 1.0)
            ratios.append(ratio)
        if not ratios:
            return None, None
        return name, self.initial_cash * np.mean(ratios, axis=0)

    def drawdown(self) -> npt.NDArray[np.float64]:
        peak = np.maximum.accumulate(self.equity)
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = np.where(peak > 0, self.equity / peak - 1.0, -1.0)
        return np.maximum(dd, -1.0)

    def daily(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Equity at each UTC day end (the day holding the instant just before a point)."""
        if not len(self.times):
            return np.zeros(0, np.int64), np.zeros(0)
        day = (self.times - 1) // NS_PER_DAY
        last = np.flatnonzero(np.append(np.diff(day) != 0, True))
        return day[last], self.equity[last]

    # --- charts ------------------------------------------------------------------------

    def add(self, section: str, chart_id: str, data: list[dict[str, Any]], layout: dict[str, Any],
            note: str | None = None) -> None:
        self.charts.append({"section": section, "id": chart_id, "data": data, "layout": layout, "note": note})

    def build(self) -> None:
        if not len(self.times):
            self.notes.append("the run has no equity points: no time series to draw")
        else:
            self.equity_charts()
            self.return_charts()
            self.exposure_chart()
        if isinstance(self.raw.get("portfolio"), dict):
            self.portfolio_charts(self.raw["portfolio"])
        self.symbol_charts()
        self.trade_charts()
        self.cost_chart()
        self.order_chart()

    def portfolio_charts(self, section: dict[str, Any]) -> None:
        """A book's strategies: their own (flow-adjusted) equity, the capital each held over
        time, the correlation of their daily returns, and one row of figures each."""
        strategies = [s for s in section.get("strategies") or [] if isinstance(s, dict)]
        if not strategies:
            return
        folder = self.results.path
        lines = []
        for s in strategies:
            try:
                own = load_results(folder / str(s.get("results", "")))
                eq = own.table("equity", money="float", columns=["equity"])
            except Exception as error:  # a missing strategy folder still gives a report
                self.notes.append(f"strategy `{s.get('id')}`: {error}")
                continue
            times = np.asarray(eq.index.asi8, dtype=np.int64)
            values = eq["equity"].to_numpy(dtype=np.float64)
            idx = reduce_indices(values)
            lines.append(_line(str(s.get("id")), _ms(times[idx]), _floats(values[idx])))
        if lines:
            self.add("Portfolio", "strategy_equity", lines, _layout(
                "Each strategy's equity on its initial capital (rebalancing moves taken out)",
                yaxis={"title": {"text": "equity"}}))
        moves = _read_csv(folder / "allocation.csv")
        if moves:
            ids = [str(s.get("id")) for s in strategies]
            names = ids + (["(reserve)"] if any(m["strategy"] == "(reserve)" for m in moves) else [])
            capital: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
            for m in moves:
                if m["strategy"] in capital:
                    t = int(np.datetime64(m["time"].rstrip("Z"), "ns").astype(np.int64))
                    capital[m["strategy"]].append((t, float(m["equity_after"])))
            data = [{"type": "scatter", "mode": "lines", "name": name, "stackgroup": "capital",
                     "line": {"shape": "hv"}, "x": [t // 1_000_000 for t, _ in points],
                     "y": [v for _, v in points]}
                    for name, points in capital.items() if points]
            self.add("Portfolio", "allocation", data, _layout(
                f"Capital of each strategy after each move (allocator {section.get('allocator')}, "
                f"rebalance {section.get('rebalance')})", yaxis={"title": {"text": "capital"}}))
        correlation = section.get("correlation") or {}
        matrix = correlation.get("matrix")
        if matrix:
            labels = [str(x) for x in correlation.get("strategies") or []]
            self.add("Portfolio", "correlation", [{
                "type": "heatmap", "x": labels, "y": labels, "z": matrix, "zmin": -1, "zmax": 1,
                "colorscale": "RdBu", "reversescale": True, "name": "correlation"}],
                _layout("Correlation of the strategies' daily returns", hovermode="closest",
                        xaxis={"type": "category"}, yaxis={"type": "category", "automargin": True}))
        header = ["strategy", "weight", "capital", "final equity", "pnl", "return", "sharpe",
                  "max drawdown", "trades", "status"]
        columns: list[list[str]] = [[] for _ in header]
        for s in strategies:
            m = s.get("metrics") or {}
            figure = {key: _as_float(m.get(key)) for key in ("total_return", "sharpe", "max_drawdown")}
            cells = [s.get("id"), s.get("weight"), s.get("initial_capital"), s.get("final_equity"),
                     s.get("pnl"), *(format_metric(key, value) for key, value in figure.items()),
                     str(m.get("num_trades", "")), s.get("status")]
            for column, cell in zip(columns, cells):
                column.append("" if cell is None else str(cell))
        benefit = (section.get("diversification") or {}).get("benefit")
        title = "Strategies" + ("" if benefit is None else
                                f" (diversification benefit {format_metric('benefit', benefit)})")
        self.add("Portfolio", "strategies", [{
            "type": "table", "header": {"values": header},
            "cells": {"values": columns}, "name": "strategies"}],
            _layout(title, height=80 + 30 * len(strategies), hovermode=False))

    def equity_charts(self) -> None:
        dd = self.drawdown()
        trough = int(np.argmin(dd))
        peak = int(np.flatnonzero(self.equity[: trough + 1] == np.max(self.equity[: trough + 1]))[0])
        keep = (peak, trough)
        idx = reduce_indices(self.equity, keep=keep)
        x = _ms(self.times[idx])
        data = [_line("strategy", x, _floats(self.equity[idx]))]
        if self.benchmark is not None:
            bidx = reduce_indices(self.benchmark)
            data.append(_line(str(self.benchmark_name), _ms(self.times[bidx]), _floats(self.benchmark[bidx]),
                              line={"dash": "dot"}))
        self.add("Equity", "equity", data, _layout("Equity against the benchmark", yaxis={"title": {"text": "equity"}}))

        didx = reduce_indices(dd, keep=keep)
        shapes, annotations = [], []
        for rank, (start, low, end) in enumerate(worst_drawdowns(self.times, dd, 5), 1):
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": start // 1_000_000,
                           "x1": end // 1_000_000, "y0": 0, "y1": 1, "fillcolor": "rgba(220,50,50,0.12)",
                           "line": {"width": 0}, "layer": "below"})
            annotations.append({"x": start // 1_000_000, "y": 1, "yref": "paper", "xref": "x", "showarrow": False,
                                "text": f"#{rank} {low * 100:.1f}%", "xanchor": "left", "yanchor": "top",
                                "font": {"size": 10}})
        data = [
            _line("drawdown", _ms(self.times[didx]), _floats(dd[didx]), fill="tozeroy",
                  line={"color": "#c0392b"}),
            {"type": "scatter", "mode": "markers", "name": "max drawdown", "x": _ms(self.times[[peak, trough]]),
             "y": _floats(dd[[peak, trough]]), "marker": {"size": 9, "color": "#000"}},
        ]
        self.add("Equity", "drawdown", data, _layout(
            "Drawdown (underwater), the five worst periods shaded", shapes=shapes, annotations=annotations,
            yaxis={"tickformat": ".1%"}))

    def return_charts(self) -> None:
        days, day_eq = self.daily()
        # monthly and yearly returns, the first period measured from the initial cash
        dates = np.asarray(days * NS_PER_DAY, dtype="datetime64[ns]")
        months = dates.astype("datetime64[M]")
        month_last = np.flatnonzero(np.append(months[1:] != months[:-1], True))
        month_eq = day_eq[month_last]
        month_ret = month_eq / np.concatenate([[self.initial_cash], month_eq[:-1]]) - 1.0
        month_keys = months[month_last].astype(str)
        years = sorted({k[:4] for k in month_keys})
        z: list[list[float | None]] = [[None] * 12 for _ in years]
        text = [[""] * 12 for _ in years]
        for key, value in zip(month_keys, month_ret):
            row, col = years.index(key[:4]), int(key[5:7]) - 1
            z[row][col] = float(f"{value:.10g}")
            text[row][col] = f"{value * 100:.2f}%"
        names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        heat = {"type": "heatmap", "name": "monthly return", "x": names, "y": years, "z": z, "text": text,
                "texttemplate": "%{text}", "zmid": 0,
                "colorscale": [[0, "#c0392b"], [0.5, "#f7f7f7"], [1, "#27ae60"]], "hoverongaps": False,
                "hovertemplate": "%{y} %{x}: %{text}<extra></extra>"}
        self.add("Returns", "monthly", [heat], _layout("Monthly returns", xaxis={"type": "category"},
                                                        yaxis={"type": "category", "autorange": "reversed"},
                                                        hovermode="closest", height=max(220, 60 + 32 * len(years))))
        year_of = months[month_last].astype("datetime64[Y]")
        year_last = np.flatnonzero(np.append(year_of[1:] != year_of[:-1], True))
        year_eq = month_eq[year_last]
        year_ret = year_eq / np.concatenate([[self.initial_cash], year_eq[:-1]]) - 1.0
        bar = {"type": "bar", "name": "yearly return", "x": [str(y) for y in year_of[year_last].astype(str)],
               "y": _floats(year_ret), "marker": {"color": ["#27ae60" if v >= 0 else "#c0392b" for v in year_ret]}}
        self.add("Returns", "yearly", [bar], _layout("Yearly returns", xaxis={"type": "category"},
                                                      yaxis={"tickformat": ".1%"}, hovermode="closest"))

        # As metrics.json (docs/metrics.md): the initial cash is the base of the first return.
        based = np.concatenate([[self.initial_cash], day_eq])
        returns = based[1:] / based[:-1] - 1.0 if len(day_eq) else np.zeros(0)
        returns = returns[np.isfinite(returns)]
        self.daily_returns = returns
        if len(returns):
            counts, edges = np.histogram(returns, bins=min(BINS, max(len(returns), 1)))
            hist = {"type": "bar", "name": "days", "x": _floats((edges[:-1] + edges[1:]) / 2),
                    "y": counts.tolist(), "width": float(edges[1] - edges[0]) if len(edges) > 1 else None}
            shapes, annotations = [], []
            for level in (0.95, 0.99):
                var_level = -float(np.quantile(returns, 1 - level))
                shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": -var_level, "x1": -var_level, "y0": 0,
                               "y1": 1, "line": {"dash": "dash", "color": "#c0392b" if level == 0.99 else "#e67e22"}})
                annotations.append({"x": -var_level, "y": 1 if level == 0.95 else 0.9, "xref": "x", "yref": "paper",
                                    "showarrow": False, "xanchor": "right",
                                    "text": f"VaR {int(level * 100)}% {var_level * 100:.2f}% ", "yanchor": "bottom"})
            self.add("Returns", "daily_returns", [hist], _layout(
                "Daily returns, with historical VaR 95% and 99%", xaxis={"tickformat": ".2%"}, shapes=shapes,
                annotations=annotations, hovermode="closest", bargap=0.02))
        else:
            self.notes.append("no daily returns (the run spans less than two days): no return distribution")

        # rolling Sharpe and volatility over `window` daily returns
        per_year = float(self.raw.get("periods_per_year") or 252.0)
        if len(returns) > self.window:
            ret_days = days[: len(returns)]  # return i ends on day i (the first on the initial cash)
            kernel = np.ones(self.window)
            sums = np.convolve(returns, kernel, "valid")
            squares = np.convolve(returns ** 2, kernel, "valid")
            mean = sums / self.window
            var = np.maximum((squares - self.window * mean ** 2) / (self.window - 1), 0.0)
            std = np.sqrt(var)
            with np.errstate(divide="ignore", invalid="ignore"):
                sharpe = np.where(std > 1e-12, mean / std * math.sqrt(per_year), np.nan)
            vol = std * math.sqrt(per_year)
            x = _ms(ret_days[self.window - 1:] * NS_PER_DAY + NS_PER_DAY)
            idx = reduce_indices(np.nan_to_num(sharpe))
            data = [_line(f"Sharpe ({self.window} d)", [x[i] for i in idx], _floats(sharpe[idx])),
                    _line(f"volatility ({self.window} d)", [x[i] for i in idx], _floats(vol[idx]), yaxis="y2")]
            self.add("Returns", "rolling", data, _layout(
                f"Rolling Sharpe and annualized volatility ({self.window} daily returns)",
                yaxis={"title": {"text": "Sharpe"}},
                yaxis2={"title": {"text": "volatility"}, "overlaying": "y", "side": "right", "tickformat": ".0%"}))
        else:
            self.notes.append(f"rolling Sharpe and volatility need more than {self.window} daily returns "
                              f"(the run has {len(returns)}); set --window lower")

    def positions_at(self, times: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.float64]]:
        out: dict[str, npt.NDArray[np.float64]] = {}
        if not len(self.fills):
            return out
        fill_times = np.asarray(self.fills.index.asi8, dtype=np.int64)
        signed = self.fills["qty"].to_numpy(dtype=np.float64) * np.where(self.fills["side"] == "buy", 1.0, -1.0)
        symbols = self.fills["symbol"].astype(str).to_numpy()
        for symbol in np.unique(symbols):
            mask = symbols == symbol
            t, q = fill_times[mask], np.cumsum(signed[mask])
            at = np.searchsorted(t, times, side="right") - 1
            out[str(symbol)] = np.where(at >= 0, q[np.clip(at, 0, None)], 0.0)
        return out

    def exposure_chart(self) -> None:
        idx = reduce_indices(self.equity)
        times = self.times[idx]
        positions = self.positions_at(times)
        if not positions:
            self.notes.append("no fills: exposure is zero throughout")
        gross = np.zeros(len(times))
        net = np.zeros(len(times))
        fill_prices = None
        for symbol, qty in positions.items():
            if symbol in self.closes.series:
                price = self.closes.asof(symbol, times)
            else:
                if fill_prices is None:
                    self.notes.append("exposure of symbols without bar data uses their last fill price")
                    fill_prices = True
                sub = self.fills[self.fills["symbol"].astype(str) == symbol]
                t = np.asarray(sub.index.asi8, dtype=np.int64)
                at = np.searchsorted(t, times, side="right") - 1
                price = np.where(at >= 0, sub["price"].to_numpy(dtype=np.float64)[np.clip(at, 0, None)], 0.0)
            value = np.nan_to_num(qty * price)
            gross += np.abs(value)
            net += value
        equity = self.equity[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            leverage = np.where(equity > 0, gross / equity, np.nan)
            net_exposure = np.where(equity > 0, net / equity, np.nan)
        x = _ms(times)
        data = [_line("gross leverage", x, _floats(leverage)), _line("net exposure", x, _floats(net_exposure))]
        self.add("Exposure", "exposure", data, _layout("Exposure and leverage (position value / equity)",
                                                       yaxis={"tickformat": ".0%"}))

    def symbol_charts(self) -> None:
        records = self.results.table("records")
        record_names = sorted(set(records["name"].astype(str))) if len(records) else []
        placed: set[str] = set()
        symbols = [s for s in self.symbols if s in self.closes.series]
        for number, symbol in enumerate(symbols):
            times, close = self.closes.series[symbol]
            if len(self.times):
                inside = (times >= self.times[0]) & (times <= self.times[-1])
                times, close = times[inside], close[inside]
            idx = reduce_indices(close)
            data = [_line(f"{symbol} close", _ms(times[idx]), _floats(close[idx]), line={"color": "#34495e"})]
            note = None
            if len(self.fills):
                mine = self.fills[self.fills["symbol"].astype(str) == symbol]
                for side, symbol_mark, color in (("buy", "triangle-up", "#27ae60"), ("sell", "triangle-down", "#c0392b")):
                    rows = mine[mine["side"] == side]
                    shown = rows
                    if len(rows) > MAX_MARKERS // 2:
                        pick = np.linspace(0, len(rows) - 1, MAX_MARKERS // 2).astype(int)
                        shown = rows.iloc[pick]
                        note = (f"{len(mine)} fills; {MAX_MARKERS} markers drawn (evenly spaced), "
                                "every fill is in the trades table and fills.csv")
                    data.append({"type": "scatter", "mode": "markers", "name": side,
                                 "x": _ms(np.asarray(shown.index.asi8, dtype=np.int64)),
                                 "y": _floats(shown["price"].to_numpy(dtype=np.float64)),
                                 "marker": {"symbol": symbol_mark, "size": 8, "color": color}})
            mine_records = [n for n in record_names if _belongs(n, symbol)]
            for name in mine_records:
                placed.add(name)
                data.append(self._record_trace(records, name, yaxis="y2"))
            layout = _layout(f"{symbol}: price, entries and exits" + (", recorded values" if mine_records else ""))
            if mine_records:
                layout["yaxis2"] = {"overlaying": "y", "side": "right", "showgrid": False}
            self.add("Symbols", f"symbol_{number}", data, layout, note)
        missing = [s for s in self.symbols if s not in self.closes.series]
        if missing:
            self.notes.append(f"no bar data for {', '.join(missing)}: their prices are not drawn")
        rest = [n for n in record_names if n not in placed]
        if rest:
            data = [self._record_trace(records, name) for name in rest]
            self.add("Symbols", "records", data, _layout("Recorded values (self.record)"))

    @staticmethod
    def _record_trace(records: Any, name: str, **extra: Any) -> dict[str, Any]:
        rows = records[records["name"].astype(str) == name]
        values = rows["value"].to_numpy(dtype=np.float64)
        idx = reduce_indices(np.nan_to_num(values))
        return _line(name, _ms(np.asarray(rows.index.asi8, dtype=np.int64)[idx]), _floats(values[idx]), **extra)

    def trade_charts(self) -> None:
        trades = self.results.table("trades", money="float")
        if not len(trades):
            self.notes.append("no closed trades")
            return
        pnl = trades["pnl"].to_numpy(dtype=np.float64)
        counts, edges = np.histogram(pnl, bins=BINS)
        centers = (edges[:-1] + edges[1:]) / 2
        self.add("Trades", "pnl_hist", [{"type": "bar", "name": "trades", "x": _floats(centers), "y": counts.tolist(),
                                         "marker": {"color": ["#27ae60" if c >= 0 else "#c0392b" for c in centers]}}],
                 _layout("Trade PnL", hovermode="closest", bargap=0.02, xaxis={"title": {"text": "PnL"}}))
        entry = np.asarray(trades["entry_time"].array.asi8, dtype=np.int64)
        exit_ = np.asarray(trades["exit_time"].array.asi8, dtype=np.int64)
        hours = (exit_ - entry) / 3.6e12
        counts, edges = np.histogram(hours, bins=BINS)
        self.add("Trades", "holding_hist", [{"type": "bar", "name": "trades", "x": _floats((edges[:-1] + edges[1:]) / 2),
                                             "y": counts.tolist()}],
                 _layout("Holding period (hours)", hovermode="closest", bargap=0.02,
                         xaxis={"title": {"text": "hours"}}))

    def trade_table(self) -> dict[str, Any]:
        """Columns of the trades table; money as the exact text trades.csv holds."""
        path = self.results.path / "trades.csv"
        if not path.is_file():
            return {"columns": [], "rows": 0, "note": None}
        pa: Any = importlib.import_module("pyarrow")
        pa_csv: Any = importlib.import_module("pyarrow.csv")
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        types = {n: pa.timestamp("ns", tz="UTC") if n in ("entry_time", "exit_time") else pa.string() for n in header}
        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
        rows, note = table.num_rows, None
        if not rows:
            return {"columns": [], "rows": 0, "note": None}
        if rows > MAX_TRADE_ROWS:
            note = f"the table holds the last {MAX_TRADE_ROWS} of {rows} trades; all are in trades.csv"
            table = table.slice(rows - MAX_TRADE_ROWS)
            rows = MAX_TRADE_ROWS
        columns: list[dict[str, Any]] = []
        times = {n: table.column(n).cast(pa.int64()).to_numpy() for n in ("entry_time", "exit_time") if n in header}
        for name in header:
            if name in times:
                columns.append({"name": name, "kind": "time", "values": _ms(times[name])})
                if name == "exit_time" and "entry_time" in times:
                    # computed by the page from the two times
                    columns.append({"name": "duration", "kind": "duration", "of": ["entry_time", "exit_time"]})
            elif name in MONEY_COLUMNS:
                columns.append({"name": name, "kind": "number", "values": table.column(name).to_pylist()})
            else:
                # text repeats (symbol, direction): a dictionary and one code per row
                encoded = table.column(name).combine_chunks().dictionary_encode()
                columns.append({"name": name, "kind": "text", "dictionary": encoded.dictionary.to_pylist(),
                                "codes": encoded.indices.to_numpy(zero_copy_only=False).tolist()})
        return {"columns": columns, "rows": rows, "note": note}

    def cost_chart(self) -> None:
        costs = self.raw.get("costs")
        kinds: dict[str, float] = {}
        by_symbol: dict[str, dict[str, float]] = {}
        if isinstance(costs, dict):
            for kind, value in costs.items():
                if kind == "by_symbol" and isinstance(value, dict):
                    for symbol, parts in value.items():
                        if isinstance(parts, dict):
                            by_symbol[symbol] = {k: float(v) for k, v in parts.items() if k != "total" and _num(v)}
                elif kind != "total" and _num(value):
                    kinds[kind] = float(value)
        else:
            table = self.results.table("costs", money="float")
            if len(table):
                kinds = {str(k): float(v) for k, v in table.groupby("kind")["amount"].sum().items()}
        fees = self.raw.get("fees_paid")
        if fees is not None and "commission" not in kinds and _num(fees):
            kinds["fees"] = float(fees)
        if not kinds:
            self.notes.append("metrics.json has no cost breakdown")
            return
        data: list[dict[str, Any]] = [{"type": "bar", "name": "total", "x": list(kinds), "y": list(kinds.values())}]
        for symbol, parts in by_symbol.items():
            data.append({"type": "bar", "name": symbol, "x": list(parts), "y": list(parts.values()), "visible": "legendonly"})
        self.add("Costs", "costs", data, _layout("Costs by kind (click a symbol in the legend for its share)",
                                                 xaxis={"type": "category"}, hovermode="closest"))

    def order_chart(self) -> None:
        """Final statuses and rejection reasons from metrics.json's order summary (which
        groups the reasons, numbers folded to <n>); from orders.csv when it has none."""
        self.rejections: list[tuple[str, int]] = []
        summary: dict[str, Any] = self.raw["orders"] if isinstance(self.raw.get("orders"), dict) else {}
        statuses = {k: int(v) for k, v in summary.items() if k != "total" and isinstance(v, int)}
        for item in summary.get("rejection_reasons") or []:
            if isinstance(item, dict):
                self.rejections.append((str(item.get("reason")), int(item.get("count") or 0)))
        orders = self.results.table("orders") if not statuses else None
        if orders is not None and len(orders) and "order_id" in orders.columns:
            final = orders.groupby("order_id", sort=False).tail(1)
            statuses = {str(k): int(v) for k, v in final["status"].astype(str).value_counts().items()}
            if "reason" in final.columns:
                rejected = final[final["status"].astype(str) == "rejected"]
                reasons = rejected["reason"].fillna("").astype(str).value_counts()
                self.rejections = [(str(k) or "(no reason given)", int(v)) for k, v in reasons.items()]
        if not statuses:
            self.notes.append("no orders")
            return
        self.add("Orders", "orders", [{"type": "bar", "name": "orders", "x": list(statuses), "y": list(statuses.values())}],
                 _layout("Orders by final status", xaxis={"type": "category"}, hovermode="closest"))


def _belongs(name: str, symbol: str) -> bool:
    """A recorded name belongs to a symbol's chart when the symbol is one of its tokens
    (``SYNA.z``, ``z:SYNA``, ``spread SYNA``)."""
    tokens = name.replace(":", " ").replace(".", " ").replace("/", " ").replace("_", " ").split()
    return symbol in tokens or name.startswith(symbol + ".") or name.startswith(symbol + ":")


def _as_float(value: Any) -> float | None:
    """A metric as a number: exact ones are decimal strings in metrics.json."""
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file of the results; none when it is missing."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def worst_drawdowns(times: npt.NDArray[np.int64], dd: npt.NDArray[np.float64],
                    count: int) -> list[tuple[int, float, int]]:
    """``(start_ns, depth, end_ns)`` of the ``count`` deepest under-water periods: from the
    peak before the fall to the recovery (or the last point)."""
    under = dd < 0
    if not under.any():
        return []
    change = np.diff(under.astype(np.int8))
    starts = np.flatnonzero(change == 1) + 1
    ends = np.flatnonzero(change == -1) + 1
    if under[0]:
        starts = np.concatenate([[0], starts])
    if under[-1]:
        ends = np.concatenate([ends, [len(dd)]])
    lows = np.minimum.reduceat(dd, starts)
    order = np.argsort(lows, kind="stable")[:count]
    out = []
    for k in order:
        start = max(int(starts[k]) - 1, 0)
        end = min(int(ends[k]), len(dd) - 1)
        out.append((int(times[start]), float(lows[k]), int(times[end])))
    return out


__all__ = ["Analysis", "metric_groups", "MAX_POINTS", "MAX_MARKERS", "worst_drawdowns"]
