"""How the objective depends on each parameter and on each pair of parameters, and whether the
best point is an isolated peak or sits on a plateau.

Each varying parameter becomes an *axis* of cells: a numeric parameter with at most ``bins``
distinct values has one cell per value; with more (random or Bayesian search over a float) its
range is cut into ``bins`` equal-width cells (equal in log space when the space says ``log``); a
categorical parameter has one cell per choice. A cell's *best* is the best objective of the
complete trials in it, honouring the direction; its *median* the median of their objectives.

**Isolated peak.** Scores put the worst complete trial at 0 and the best at 1 (in the objective's
direction). The best trial's grid neighbours are the cells one step away from its cell along one or
more numeric axes (categorical parameters held at the best's choice) that hold trials. The best is
an *isolated peak* when the median of its neighbours' best scores is below ``fraction`` (default
0.5): moving any parameter by one step loses more than half of the spread between the worst and
the best trial. A plateau keeps its neighbours near 1. Without neighbouring trials the flag is
``None`` (undetermined).
"""

from __future__ import annotations

import importlib
import itertools
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Axis", "Peak", "Sensitivity", "SensitivityError", "make_axis", "along", "pair", "isolated_peak",
           "analyse"]

#: Default number of cells of a numeric axis with many distinct values, and the default fraction.
BINS = 10
FRACTION = 0.5


class SensitivityError(ValueError):
    """A sensitivity analysis that cannot be made (no complete trial, an unknown parameter...)."""


def _pd() -> Any:
    return importlib.import_module("pandas")


@dataclass(frozen=True)
class Axis:
    """The cells of one parameter: ``labels`` in order; ``codes`` gives each trial's cell."""

    name: str
    numeric: bool
    labels: list[str]
    codes: npt.NDArray[np.int64]


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Decimal(value))
        except ArithmeticError:
            return None
    return None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def make_axis(name: str, values: Sequence[Any], bins: int = BINS, log: bool = False,
              choices: Sequence[Any] | None = None) -> Axis:
    """The axis of parameter ``name`` whose trials hold ``values`` (see the module doc)."""
    if bins < 2:
        raise SensitivityError(f"an axis needs at least 2 cells, got bins={bins}")
    numbers = [_as_number(v) for v in values]
    if values and all(n is not None and math.isfinite(n) for n in numbers):
        array = np.asarray(numbers, dtype=np.float64)
        distinct = np.unique(array)
        if len(distinct) <= bins:
            codes = np.searchsorted(distinct, array).astype(np.int64)
            # label each cell by its value as the trials hold it (5, 0.01, "0.010")
            first = {float(n): v for n, v in zip(array, values)}
            return Axis(name, True, [str(first[float(d)]) for d in distinct], codes)
        use_log = log and distinct[0] > 0
        scaled = np.log(array) if use_log else array
        edges = np.linspace(scaled.min(), scaled.max(), bins + 1)
        codes = np.clip(np.searchsorted(edges, scaled, side="right") - 1, 0, bins - 1).astype(np.int64)
        bounds = np.exp(edges) if use_log else edges
        labels = [f"[{_fmt(bounds[i])}, {_fmt(bounds[i + 1])}{']' if i == bins - 1 else ')'}" for i in range(bins)]
        return Axis(name, True, labels, codes)
    order: list[str] = [str(c) for c in choices] if choices else []
    for value in values:
        if str(value) not in order:
            order.append(str(value))
    index = {label: i for i, label in enumerate(order)}
    return Axis(name, False, order, np.asarray([index[str(v)] for v in values], dtype=np.int64))


def _objective(frame: Any, objective: str) -> npt.NDArray[np.float64]:
    if objective not in frame.columns:
        raise SensitivityError(f"the trials have no column `{objective}`")
    values = np.asarray(frame[objective].to_numpy(dtype=np.float64))
    if not len(values):
        raise SensitivityError("no complete trial to analyse")
    return values


def _axis(frame: Any, param: str, bins: int, space: dict[str, Any] | None) -> Axis:
    if param not in frame.columns:
        raise SensitivityError(f"`{param}` is not a parameter of the trials (columns: {', '.join(map(str, frame.columns))})")
    spec = (space or {}).get(param) or {}
    return make_axis(param, list(frame[param]), bins, bool(spec.get("log")), spec.get("choices"))


def _best(values: npt.NDArray[np.float64], direction: str) -> float:
    return float(np.min(values) if direction == "minimize" else np.max(values))


def along(frame: Any, param: str, objective: str, direction: str = "maximize", bins: int = BINS,
          space: dict[str, Any] | None = None) -> Any:
    """The objective along ``param``, aggregated over every other parameter: one row per cell
    (index: the cell's label) with ``best``, ``median`` and ``count`` of the trials in it."""
    values = _objective(frame, objective)
    axis = _axis(frame, param, bins, space)
    rows = []
    for code, label in enumerate(axis.labels):
        inside = values[axis.codes == code]
        if len(inside):
            rows.append({param: label, "best": _best(inside, direction), "median": float(np.median(inside)),
                         "count": len(inside)})
    return _pd().DataFrame(rows).set_index(param)


def pair(frame: Any, first: str, second: str, objective: str, direction: str = "maximize", bins: int = BINS,
         space: dict[str, Any] | None = None) -> Any:
    """The best objective over the grid of ``first`` (columns) × ``second`` (rows): a DataFrame
    for a heatmap, NaN where no trial falls."""
    values = _objective(frame, objective)
    a, b = _axis(frame, first, bins, space), _axis(frame, second, bins, space)
    grid = np.full((len(b.labels), len(a.labels)), np.nan)
    for (i, j), group in _groups(values, np.stack([b.codes, a.codes], axis=1)).items():
        grid[i, j] = _best(group, direction)
    out = _pd().DataFrame(grid, index=b.labels, columns=a.labels)
    out.index.name, out.columns.name = second, first
    return out


def _groups(values: npt.NDArray[np.float64], cells: npt.NDArray[np.int64]) -> dict[tuple[int, ...], npt.NDArray[np.float64]]:
    out: dict[tuple[int, ...], list[float]] = {}
    for value, cell in zip(values.tolist(), map(tuple, cells.tolist())):
        out.setdefault(cell, []).append(value)
    return {k: np.asarray(v) for k, v in out.items()}


@dataclass(frozen=True)
class Peak:
    """Whether the best trial is an isolated peak (see the module doc)."""

    isolated: bool | None
    best_number: Any
    #: Median score (0 = worst trial, 1 = best) of the neighbouring cells, and how many there are.
    neighbour_score: float | None
    neighbours: int
    fraction: float
    reason: str


def isolated_peak(frame: Any, params: Sequence[str], objective: str, direction: str = "maximize",
                  fraction: float = FRACTION, bins: int = BINS, space: dict[str, Any] | None = None) -> Peak:
    """Flags the best trial of ``frame`` (complete trials) as an isolated peak or a plateau."""
    if not 0 < fraction < 1:
        raise SensitivityError(f"the fraction must be between 0 and 1, got {fraction}")
    values = _objective(frame, objective)
    oriented = -values if direction == "minimize" else values
    best_row = int(np.argmax(oriented))
    best_number = frame.index[best_row]
    spread = float(oriented.max() - oriented.min())
    if spread == 0:
        return Peak(False, best_number, 1.0, 0, fraction, "every trial has the same objective: a plateau")
    scores = (oriented - oriented.min()) / spread
    axes = [_axis(frame, p, bins, space) for p in params]
    if not axes:
        return Peak(None, best_number, None, 0, fraction, "no varying parameter")
    cells = np.stack([a.codes for a in axes], axis=1)
    best_score = {cell: float(group.max()) for cell, group in _groups(scores, cells).items()}
    home = tuple(int(c) for c in cells[best_row])
    steps = [(-1, 0, 1) if a.numeric else (0,) for a in axes]
    found = []
    for delta in itertools.product(*steps):
        if any(delta):
            cell = tuple(h + d for h, d in zip(home, delta))
            if cell in best_score:
                found.append(best_score[cell])
    if not found:
        return Peak(None, best_number, None, 0, fraction, "no trial in a neighbouring cell of the best")
    median = float(np.median(found))
    isolated = median < fraction
    reason = (f"the median of its {len(found)} neighbouring cells scores {median:.2f} "
              f"({'below' if isolated else 'at or above'} {fraction:g} of the spread from the worst to the best trial)")
    return Peak(isolated, best_number, median, len(found), fraction, reason)


@dataclass(frozen=True)
class Sensitivity:
    objective: str
    direction: str
    params: list[str]
    along: dict[str, Any] = field(default_factory=dict)
    pairs: dict[tuple[str, str], Any] = field(default_factory=dict)
    peak: Peak | None = None


def analyse(study: Any, window: int | None = None, objective: int = 0, bins: int = BINS,
            fraction: float = FRACTION) -> Sensitivity:
    """Every parameter's line, every pair's grid and the isolated-peak flag of a loaded study
    (:func:`rustybt_api.study.load`), over its complete trials (of walk-forward ``window``) and
    its ``objective``-th objective. Parameters holding one value only are left out."""
    frame = study.complete(window)
    if not study.objectives:
        raise SensitivityError("the study has no objective")
    column = study.objective_columns[objective]
    direction = study.directions[objective]
    if not len(frame):
        raise SensitivityError("the study has no complete trial to analyse")
    space = study.meta.get("space") if isinstance(study.meta.get("space"), dict) else {}
    params = [p for p in study.param_names if p in frame.columns and frame[p].astype(str).nunique() > 1]
    lines = {p: along(frame, p, column, direction, bins, space) for p in params}
    grids = {(a, b): pair(frame, a, b, column, direction, bins, space) for a, b in itertools.combinations(params, 2)}
    peak = isolated_peak(frame, params, column, direction, fraction, bins, space)
    return Sensitivity(column, direction, params, lines, grids, peak)
