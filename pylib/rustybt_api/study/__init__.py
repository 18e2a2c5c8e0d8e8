"""A study that ``rustybt optimize`` wrote, in pandas: its trials, Pareto front, overfitting
statistics and walk-forward windows; no engine needed.

.. code-block:: python

    from rustybt_api import study

    s = study.load("runs/study-sma")      # the folder holding study.sqlite
    s.trials                               # one row per trial: state, parameters, objective values, metrics
    s.best_params                          # the best complete trial's parameters
    s.pareto_front()                       # non-dominated complete trials (several objectives)
    s.overfitting().dsr                    # Deflated Sharpe Ratio, PSR, MinTRL and PBO of the study
    s.stitched_equity()                    # walk-forward: the out-of-sample equity, window after window

The store's schema is described in docs/optimize.md. Submodules: :mod:`.stats` (PSR, DSR,
MinTRL, PBO), :mod:`.sensitivity`, :mod:`.montecarlo`, :mod:`.report`.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..results import ResultsError, _flatten
from ..results import load as load_results
from . import stats

__all__ = ["Study", "StudyError", "Overfitting", "Efficiency", "load", "STORE_NAME", "SCHEMA_VERSION"]

#: The store's file inside a study folder, and the schema version this module reads.
STORE_NAME = "study.sqlite"
SCHEMA_VERSION = 1
#: Trial states of the store.
STATES = ("complete", "failed", "infeasible", "too_few_trades", "no_value")
#: Metrics measured over a whole period, which walk-forward efficiency annualises (a return
#: compounds, a profit scales with time); every other objective (sharpe, cagr, sortino...) is
#: already annual or has no time unit.
PERIOD_METRICS = frozenset({"total_return", "net_profit"})
#: Columns of the trial table that are not parameters or metrics.
TRIAL_COLUMNS = ("state", "window", "seed", "duration_s", "error", "finished_at", "code_hash", "data_checksum")


class StudyError(Exception):
    """A study folder that cannot be read or analysed; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _pd() -> Any:
    return importlib.import_module("pandas")


def _json(text: Any, where: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError) as err:
        raise StudyError(f"the study store holds invalid JSON in {where}: {err}") from None


@dataclass(frozen=True)
class Overfitting:
    """The overfitting statistics of one group of trials (see docs/optimize.md). Sharpe ratios
    are per observation (daily), ``sharpe_annual`` is the best trial's scaled by √periods_per_year."""

    trials: int
    best_trial: int
    observations: int
    sharpe: float
    sharpe_annual: float
    sharpe_variance: float
    skew: float
    kurtosis: float
    expected_max_sharpe: float
    psr: float
    dsr: float
    #: Returns needed for the best's Sharpe to be above 0 with 95% confidence (None when it is <= 0).
    min_track_record: float | None
    pbo: stats.PBOResult | None
    #: Why a statistic could not be computed.
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Efficiency:
    """Walk-forward efficiency: per window, the annualised out-of-sample objective over the
    annualised in-sample one (None when the in-sample value is not positive); ``overall`` is the
    mean out-of-sample over the mean in-sample annualised objective."""

    metric: str
    per_window: Any  # pandas DataFrame: window, in_sample, out_of_sample, efficiency
    overall: float | None


@dataclass
class Study:
    """One study folder (see the module documentation)."""

    path: Path
    #: The meta table, each value decoded from its JSON.
    meta: dict[str, Any]
    #: One row per trial, indexed by trial number (see :func:`load`).
    trials: Any
    #: One row per walk-forward window (empty for a plain study).
    windows: Any
    param_names: list[str]
    metric_names: list[str]
    #: Trial number -> (days, daily returns) of the complete trials that stored returns.
    returns: dict[int, tuple[list[str], npt.NDArray[np.float64]]]

    @property
    def objectives(self) -> list[dict[str, str]]:
        return list(self.meta.get("objectives") or [])

    @property
    def objective_columns(self) -> list[str]:
        """The trial table's column of each objective's value, in order: ``objective.<metric>``."""
        return [f"objective.{o['metric']}" for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [str(o.get("direction", "maximize")) for o in self.objectives]

    @property
    def is_walk_forward(self) -> bool:
        return bool(self.meta.get("walk_forward")) or len(self.windows) > 0

    @property
    def periods_per_year(self) -> float:
        value = self.meta.get("periods_per_year")
        return float(value) if isinstance(value, (int, float)) and value > 0 else 252.0

    def complete(self, window: int | None = None) -> Any:
        """The complete trials of walk-forward ``window``; with None, those of no window in a plain
        study and the last window's in a walk-forward study (as every method taking ``window``)."""
        if window is None:
            window = self._default_window()
        t = self.trials
        in_window = t["window"].isna() if window is None else (t["window"] == window).fillna(False)
        return t[(t["state"] == "complete").to_numpy(dtype=bool) & in_window.to_numpy(dtype=bool)]

    def ranked(self, window: int | None = None) -> Any:
        """The complete trials, best first by the first objective (ties: lower trial number)."""
        done = self.complete(window)
        if not self.objectives:
            return done
        column = self.objective_columns[0]
        ascending = self.directions[0] == "minimize"
        return done.sort_values([column], ascending=ascending, kind="stable")

    def best(self, window: int | None = None) -> Any:
        """The best complete trial (by the first objective) as a row; StudyError when there is none."""
        ranked = self.ranked(window)
        if not len(ranked):
            counts = self.trials["state"].value_counts().to_dict()
            raise StudyError("the study has no complete trial", f"trials by state: {counts or 'none'}")
        return ranked.iloc[0]

    @property
    def best_params(self) -> dict[str, Any]:
        row = self.best()
        return {name: row[name] for name in self.param_names}

    def pareto_front(self, window: int | None = None) -> Any:
        """The complete trials no other complete trial dominates (at least as good in every
        objective, honouring each direction, and better in one), best first by the first objective."""
        done = self.ranked(window)
        if not len(done):
            return done
        values = done[self.objective_columns].to_numpy(dtype=np.float64)
        signs = np.array([-1.0 if d == "minimize" else 1.0 for d in self.directions])
        oriented = values * signs
        keep = np.ones(len(done), dtype=bool)
        for i in range(len(done)):
            ge = np.all(oriented >= oriented[i], axis=1)
            gt = np.any(oriented > oriented[i], axis=1)
            keep[i] = not np.any(ge & gt)
        return done[keep]

    def returns_matrix(self, window: int | None = None) -> Any:
        """Daily returns of the complete trials as a DataFrame: one row per day that every one of
        them has, one column per trial number."""
        pd = _pd()
        numbers = [int(n) for n in self.complete(window).index if int(n) in self.returns]
        if not numbers:
            return pd.DataFrame()
        series = {n: pd.Series(self.returns[n][1], index=self.returns[n][0]) for n in numbers}
        frame = pd.DataFrame(series).dropna(axis=0, how="any")
        frame.index.name = "day"
        return frame.sort_index()

    def _default_window(self) -> int | None:
        windows = self.trials["window"]
        if len(windows) and not windows.isna().any():
            return int(windows.max())
        return None

    def overfitting(self, window: int | None = None, partitions: int = 16) -> Overfitting:
        """PSR, DSR, MinTRL and PBO of the complete trials (of ``window``; for a walk-forward study
        without a window given, the last window's). DSR uses the number of complete trials with
        returns and the variance of their per-day Sharpe ratios; PBO is computed when the trials
        share at least ``2 × partitions`` days (else ``pbo`` is None and ``notes`` says why)."""
        matrix = self.returns_matrix(window)
        if matrix.shape[1] < 1 or matrix.shape[0] < 3:
            raise StudyError("the overfitting statistics need complete trials with at least 3 days of returns",
                             f"{matrix.shape[1]} complete trials with returns, {matrix.shape[0]} common days")
        best_number = int(self.best(window).name)
        if best_number not in matrix.columns:
            raise StudyError(f"the best trial {best_number} has no returns in the store")
        sharpes = np.array([stats.sharpe(matrix[c].to_numpy()) for c in matrix.columns])
        best_returns = matrix[best_number].to_numpy()
        sr = stats.sharpe(best_returns)
        skew, kurt = stats.moments(best_returns)
        n = len(best_returns)
        variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
        notes: list[str] = []
        sr0 = stats.expected_max_sharpe(len(sharpes), variance)
        try:
            min_trl: float | None = stats.minimum_track_record_length(sr, 0.0, skew, kurt)
        except stats.StatsError:
            min_trl = None
            notes.append("MinTRL: the best trial's Sharpe ratio is not above 0")
        pbo = None
        try:
            pbo = stats.probability_of_backtest_overfitting(matrix.to_numpy(), partitions)
        except stats.StatsError as err:
            notes.append(f"PBO: {err}")
        return Overfitting(
            trials=len(sharpes), best_trial=best_number, observations=n, sharpe=sr,
            sharpe_annual=sr * math.sqrt(self.periods_per_year), sharpe_variance=variance, skew=skew,
            kurtosis=kurt, expected_max_sharpe=sr0,
            psr=stats.probabilistic_sharpe_ratio(sr, 0.0, n, skew, kurt),
            dsr=stats.deflated_sharpe_ratio(sr, n, len(sharpes), variance, skew, kurt),
            min_track_record=min_trl, pbo=pbo, notes=notes)

    # --- walk-forward ---------------------------------------------------------------------

    def parameter_path(self) -> Any:
        """The best parameters of each walk-forward window (one row per window)."""
        pd = _pd()
        if not len(self.windows):
            return pd.DataFrame()
        return self.windows[[c for c in self.windows.columns if c in self.param_names]]

    def window_results(self, number: int) -> Any:
        """The out-of-sample run of walk-forward window ``number`` (a :class:`~rustybt_api.results.Results`)."""
        folder = self.windows.loc[number, "results_dir"]
        if not isinstance(folder, str) or not folder:
            raise StudyError(f"walk-forward window {number} has no results folder")
        try:
            return load_results(self.path / folder)
        except ResultsError as err:
            raise StudyError(f"window {number}: {err}", err.hint) from None

    def stitched_equity(self) -> Any:
        """The out-of-sample equity of every window chained into one curve (a float Series on a
        UTC DatetimeIndex): each window's equity is scaled by its own initial cash, so it starts
        where the previous window ended; the first starts at its initial cash."""
        pd = _pd()
        parts, level = [], None
        for number in self.windows.index:
            run = self.window_results(int(number))
            equity = run.table("equity", money="float", columns=["equity"])["equity"]
            if not len(equity):
                continue
            initial = run.raw.get("initial_cash") or run.info.get("initial_cash")
            base = float(initial) if initial is not None else float(equity.iloc[0])
            if level is None:
                level = base
            parts.append(equity / base * level)
            level = float(parts[-1].iloc[-1])
        if not parts:
            return pd.Series([], dtype="float64", name="equity")
        stitched = pd.concat(parts)
        stitched.name = "equity"
        return stitched

    def efficiency(self) -> Efficiency:
        """Walk-forward efficiency of the first objective (see :class:`Efficiency`)."""
        pd = _pd()
        if not len(self.windows) or not self.objectives:
            raise StudyError("walk-forward efficiency needs a walk-forward study with an objective")
        metric = self.objectives[0]["metric"]
        rows = []
        for number, w in self.windows.iterrows():
            train = w["best_train_values"]
            is_value = _number(train[0]) if isinstance(train, list) and train else None
            test = w["test_metrics"] if isinstance(w["test_metrics"], dict) else {}
            oos_value = _number(test.get(metric))
            is_years = _years(w["train_start"], w["train_end"])
            oos_years = _years(w["test_start"], w["test_end"])
            is_annual = _annualise(metric, is_value, is_years)
            oos_annual = _annualise(metric, oos_value, oos_years)
            ratio = oos_annual / is_annual if is_annual and is_annual > 0 and oos_annual is not None else None
            rows.append({"window": int(number), "in_sample": is_annual, "out_of_sample": oos_annual,
                         "efficiency": ratio})
        table = pd.DataFrame(rows).set_index("window")
        ins = [v for v in table["in_sample"] if v is not None and not _nan(v)]
        oos = [v for v in table["out_of_sample"] if v is not None and not _nan(v)]
        overall = None
        if ins and oos and np.mean(ins) > 0:
            overall = float(np.mean(oos) / np.mean(ins))
        return Efficiency(metric=metric, per_window=table, overall=overall)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.trials["state"].value_counts().items())
        return f"Study({str(self.path)!r}, {self.meta.get('method')}, trials: {counts or 'none'})"


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _years(start: Any, end: Any) -> float | None:
    pd = _pd()
    try:
        days = (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds() / 86_400
    except (TypeError, ValueError):
        return None
    return days / 365.25 if days > 0 else None


def _annualise(metric: str, value: float | None, years: float | None) -> float | None:
    if value is None or metric not in PERIOD_METRICS:
        return value
    if years is None:
        return None
    if metric == "total_return":
        return (1.0 + value) ** (1.0 / years) - 1.0 if value > -1 else -1.0
    return value / years


def load(path: str | os.PathLike[str]) -> Study:
    """Reads the study folder ``path`` (its study.sqlite). The trial table has one row per trial,
    indexed by trial number: ``state``, ``window``, ``seed``, one column per parameter, one
    ``objective.<metric>`` column per objective (NaN unless complete), one column per metric of
    the trial's metrics.json (money as Decimal; a metric named like a parameter is
    ``metrics.<name>``), then ``duration_s``, ``error``, ``finished_at``, ``code_hash``,
    ``data_checksum``."""
    folder = Path(path)
    store = folder / STORE_NAME if folder.is_dir() else folder
    if not store.is_file():
        raise StudyError(f"`{folder}` is not a study folder (no {STORE_NAME})",
                         "give the folder `rustybt optimize --study DIR` wrote")
    try:
        connection = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise StudyError(f"cannot open `{store}`: {err}") from None
    try:
        return _read(store.parent.resolve(), connection)
    except sqlite3.Error as err:
        raise StudyError(f"cannot read `{store}`: {err}",
                         "the store may be from another rustybt version or damaged") from None
    finally:
        connection.close()


def _read(folder: Path, connection: sqlite3.Connection) -> Study:
    pd = _pd()
    meta = {key: _json(value, f"meta `{key}`") for key, value in connection.execute("SELECT key, value FROM meta")}
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StudyError(f"the study store has schema version {version}, this rustybt reads version {SCHEMA_VERSION}",
                         "open it with the rustybt version that wrote it")
    space: dict[str, Any] = meta["space"] if isinstance(meta.get("space"), dict) else {}
    objectives = meta.get("objectives") or []
    rows = connection.execute(
        "SELECT number, window, params, seed, state, objective_values, metrics, returns, error, duration_s, "
        "code_hash, data_checksum, finished_at FROM trials ORDER BY number").fetchall()
    param_names: list[str] = list(space)
    records, returns = [], {}
    metric_names: list[str] = []
    reserved = set(TRIAL_COLUMNS)
    for (number, window, params, seed, state, values, metrics, daily, error, duration, code_hash, checksum,
         finished) in rows:
        params = _json(params, f"trial {number} params") or {}
        for name in params:
            if name not in param_names:
                param_names.append(name)
        record: dict[str, Any] = {"number": number, "state": state, "window": window, "seed": seed}
        record.update(params)
        values = _json(values, f"trial {number} objective_values") or []
        for o, v in zip(objectives, values):
            record[f"objective.{o['metric']}"] = float("nan") if v is None else v
        flat: dict[str, Any] = {}
        _flatten("", _json(metrics, f"trial {number} metrics") or {}, flat)
        for key, value in flat.items():
            column = f"metrics.{key}" if key in params or key in reserved or key in space else key
            if column not in metric_names:
                metric_names.append(column)
            record[column] = value
        record.update({"duration_s": duration, "error": error, "finished_at": finished, "code_hash": code_hash,
                       "data_checksum": checksum})
        records.append(record)
        series = _json(daily, f"trial {number} returns")
        if state == "complete" and isinstance(series, dict) and series.get("days"):
            days, vals = list(series["days"]), np.asarray(series.get("values") or [], dtype=np.float64)
            if len(days) != len(vals):
                raise StudyError(f"trial {number} stores {len(days)} days but {len(vals)} returns")
            returns[int(number)] = (days, vals)
    objective_columns = [f"objective.{o['metric']}" for o in objectives]
    ordered = ["state", "window", "seed", *param_names, *objective_columns, *metric_names,
               "duration_s", "error", "finished_at", "code_hash", "data_checksum"]
    trials = pd.DataFrame.from_records(records, columns=["number", *ordered]).set_index("number")
    for column in objective_columns:
        trials[column] = pd.to_numeric(trials[column], errors="coerce")
    trials["window"] = trials["window"].astype("Int64")
    windows = _windows(connection, param_names)
    return Study(path=folder, meta=meta, trials=trials, windows=windows, param_names=param_names,
                 metric_names=metric_names, returns=returns)


def _windows(connection: sqlite3.Connection, param_names: list[str]) -> Any:
    pd = _pd()
    try:
        rows = connection.execute(
            "SELECT number, train_start, train_end, test_start, test_end, best_params, best_train_values, "
            "test_metrics, results_dir FROM windows ORDER BY number").fetchall()
    except sqlite3.OperationalError:
        rows = []  # a plain study may have no windows table
    records = []
    for number, t0, t1, s0, s1, params, train_values, test_metrics, results_dir in rows:
        record: dict[str, Any] = {"number": number, "train_start": t0, "train_end": t1, "test_start": s0,
                                  "test_end": s1}
        record.update(_json(params, f"window {number} best_params") or {})
        record["best_train_values"] = _json(train_values, f"window {number} best_train_values")
        record["test_metrics"] = _json(test_metrics, f"window {number} test_metrics")
        record["results_dir"] = results_dir
        records.append(record)
    columns = ["number", "train_start", "train_end", "test_start", "test_end", *param_names, "best_train_values",
               "test_metrics", "results_dir"]
    return pd.DataFrame.from_records(records, columns=columns).set_index("number")


