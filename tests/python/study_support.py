"""Helpers of the study tests: a study.sqlite written with the schema the optimizer's store
uses (docs/optimize.md), from plain Python values, and small generated run folders."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any, Sequence

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trials(number INTEGER PRIMARY KEY, window INTEGER NULL, params TEXT NOT NULL, seed INTEGER NOT NULL,
    state TEXT NOT NULL, objective_values TEXT NULL, metrics TEXT NULL, returns TEXT NULL, error TEXT NULL,
    duration_s REAL, code_hash TEXT, data_checksum TEXT, finished_at TEXT);
CREATE TABLE windows(number INTEGER PRIMARY KEY, train_start TEXT, train_end TEXT, test_start TEXT, test_end TEXT,
    best_params TEXT, best_train_values TEXT, test_metrics TEXT, results_dir TEXT);
"""

DEFAULT_META: dict[str, Any] = {
    "schema_version": 1, "algorithm": "algorithms/sma_cross.py", "class_name": "SmaCross",
    "code_hash": "c0de" * 16, "data_checksum": "da7a" * 16, "method": "grid", "seed": 7, "batch": 1,
    "objectives": [{"metric": "sharpe", "direction": "maximize"}], "constraints": ["fast < slow"],
    "min_trades": 1, "space": {}, "walk_forward": None, "created_at": "2026-12-07T02:00:00Z",
    "periods_per_year": 252.0,
}


def days(count: int, start: dt.date = dt.date(2024, 1, 2)) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(count)]


def trial(number: int, params: dict[str, Any], state: str = "complete", values: Sequence[float] | None = None,
          metrics: dict[str, Any] | None = None, returns: Sequence[float] | None = None,
          day_list: Sequence[str] | None = None, window: int | None = None, error: str | None = None) -> dict[str, Any]:
    return {"number": number, "params": params, "state": state, "values": values, "metrics": metrics,
            "returns": returns, "days": day_list, "window": window, "error": error}


def write_study(folder: Path, trials: Sequence[dict[str, Any]], windows: Sequence[dict[str, Any]] = (),
                **meta: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.sqlite"
    if path.exists():
        path.unlink()
    values = dict(DEFAULT_META, **meta)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()])
        for t in trials:
            series = None
            if t["returns"] is not None:
                day_list = list(t["days"] or days(len(t["returns"])))
                series = json.dumps({"days": day_list, "values": [float(r) for r in t["returns"]]})
            db.execute("INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", (
                t["number"], t["window"], json.dumps(t["params"]), 1000 + t["number"], t["state"],
                None if t["values"] is None else json.dumps(list(t["values"])),
                None if t["metrics"] is None else json.dumps(t["metrics"]), series, t["error"],
                0.5 + t["number"] / 100, values["code_hash"], values["data_checksum"], "2026-12-07T02:10:00Z"))
        for w in windows:
            db.execute("INSERT INTO windows VALUES (?,?,?,?,?,?,?,?,?)", (
                w["number"], w["train_start"], w["train_end"], w["test_start"], w["test_end"],
                json.dumps(w["best_params"]), json.dumps(w["best_train_values"]), json.dumps(w["test_metrics"]),
                w["results_dir"]))
    return folder


def write_run(folder: Path, equity: Sequence[tuple[str, str]], initial_cash: str = "10000",
              trades: Sequence[dict[str, str]] = (), metrics: dict[str, Any] | None = None) -> Path:
    """A results folder as `rustybt run` writes it: metrics.json, equity.csv and trades.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = {"initial_cash": initial_cash, "final_equity": equity[-1][1] if equity else initial_cash,
           "status": "completed", "run": {"class_name": "SmaCross", "initial_cash": initial_cash}}
    raw.update(metrics or {})
    (folder / "metrics.json").write_text(json.dumps(raw))
    lines = ["time,cash,equity"] + [f"{t},{e},{e}" for t, e in equity]
    (folder / "equity.csv").write_text("\n".join(lines) + "\n")
    header = ["symbol", "direction", "max_qty", "entry_time", "exit_time", "pnl", "fees"]
    rows = [",".join(header)] + [",".join(str(t.get(h, "")) for h in header) for t in trades]
    (folder / "trades.csv").write_text("\n".join(rows) + "\n")
    return folder
