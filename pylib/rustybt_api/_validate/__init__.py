"""``rustybt validate``: checks a strategy before a full backtest. Not part of the public API.

The Rust subcommand (src/cli/validate.rs) starts Python as ``rustybt run`` does and calls
:func:`main`, which returns the report and the exit code. Steps, in order: syntax, structure,
dry_run, profile, leaks, metrics. The JSON document's shape is documented in docs/guide.md
(``## rustybt validate``) and versioned by ``REPORT_VERSION``.
"""

from __future__ import annotations

import ast
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

from .common import Problem, Step, user_location
from . import static

# `.dryrun` (tracing, pickling, threads), json, shutil and tempfile are imported where `main`
# needs them: `rustybt run` imports this package for `static`'s hook check before its first
# tick and must not pay for the rest.

if TYPE_CHECKING:
    from rustybt_api import Indicator

__all__ = ["main", "REPORT_VERSION"]

REPORT_VERSION = 1
STEPS = ("syntax", "structure", "dry_run", "profile", "leaks", "metrics")
# Importing the file may legitimately take a while (a model to load): a looser limit.
IMPORT_LIMIT_FACTOR = 10


def _user_files(path: str, extra: list[str]) -> set[str]:
    """The algorithm, its local helper modules and the project's indicators: the code the
    profile, the leak detector and error locations look at."""
    from rustybt_api import _host

    root = os.path.dirname(path)
    roots = [root]
    project_indicators = os.path.join(os.path.dirname(root), "indicators")
    if os.path.isdir(project_indicators):
        roots.append(project_indicators)
    system = _host._system_roots()
    files = {path, *extra}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file is not None and _host._is_user_module(file, roots, system):
            files.add(os.path.abspath(file))
    return files


def _structure(path: str, source: str, tree: Any, class_name: str | None, limit: float) -> tuple[Step, type | None, list[type[Indicator]]]:
    from .dryrun import Tracer, TickTimeout, Watchdog

    step = Step("structure")
    static.add_search_paths(path)  # before looking for imports: local modules count
    for problem in static.missing_imports(tree, path):
        step.fail(problem)
    if step.status == "fail":
        step.summary = "imports cannot be resolved"
        return step, None, []
    tracer = Tracer({path})
    tracer.record = False
    try:
        with tracer, Watchdog(tracer, limit * IMPORT_LIMIT_FACTOR, {path}):
            module = static.load_module(path, source)
    except TickTimeout as err:
        file, line = user_location(err.__traceback__, {path})
        step.fail(Problem("timeout", f"importing the file did not finish: {err}", file=file, line=line))
        return step, None, []
    except Exception as err:  # noqa: BLE001 - the user's module body raised
        step.fail(static.exception_problem("import_error", err, {path}, "running the file's top level failed"))
        step.summary = "the file cannot be imported"
        return step, None, []
    cls, problems = static.pick_class(module, class_name, path)
    for problem in problems:
        step.fail(problem)
    indicators = static.find_indicators(module)
    for indicator in indicators:
        static.check_indicator(indicator, step)
    if cls is None:
        step.summary = "no algorithm class to check"
        return step, None, indicators
    static.check_algorithm(cls, path, step)
    if step.status != "fail":
        try:
            cls()
        except Exception as err:  # noqa: BLE001
            step.fail(static.exception_problem("init_error", err, {path}, f"{cls.__name__}() failed"))
    from rustybt_api.algorithm import Algorithm, parameters_of

    hooks = [h for h in static.HOOKS if getattr(cls, h) is not getattr(Algorithm, h)]
    params = parameters_of(cls)
    step.details = {
        "class": cls.__name__, "hooks": hooks,
        "parameters": {k: repr(v) for k, v in params.items()},
        "indicators": [f"{i.__module__}.{i.__qualname__}" for i in indicators],
    }
    step.summary = (f"{cls.__name__}: hooks {', '.join(hooks) or 'none'}; {len(params)} parameters; "
                    f"{len(indicators)} custom indicators")
    return step, cls, indicators


def _datasets(cls: type, tree: ast.AST, data: list[str], bars: int, seed: int,
              folder: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    if data:
        return [("data", data)], []
    from rustybt_api import scenarios
    from rustybt_api.algorithm import parameters_of

    from .dryrun import scenario_symbols

    symbols = scenario_symbols(parameters_of(cls), tree)
    out = []
    for name in scenarios.names():
        files = []
        for i, symbol in enumerate(symbols):
            # The symbol goes in a column: names like BTC/USDT cannot be file names.
            files.append(str(scenarios.get(name).write_csv(
                os.path.join(folder, name, f"symbol{i}.csv"), rows=bars, seed=seed + i, symbol=symbol)))
        out.append((name, files))
    return out, symbols


def validate(algo: str, class_name: str | None, data: list[str], bars: int, tick_timeout: float,
             seed: int) -> list[Step]:
    from .dryrun import dry_run

    path = os.path.abspath(algo)
    source, read_error = None, None
    try:
        source = static.read_source(path)
    except (OSError, UnicodeDecodeError) as err:
        read_error = f"cannot read {path}: {err}"
    syntax, tree = static.check_syntax(path, source, read_error)
    steps = [syntax]
    if tree is None:
        return steps + [Step(n).skip("the file does not compile") for n in STEPS[1:]]
    structure, cls, indicators = _structure(path, source or "", tree, class_name, tick_timeout)
    steps.append(structure)
    metrics = Step("metrics")
    functions = static.function_metrics(tree, path)
    metrics.details = {"functions": functions, "custom_indicators": len(indicators)}
    if cls is None or structure.status == "fail":
        why = "the structure check failed"
        steps += [Step("dry_run").skip(why), Step("profile").skip(why), Step("leaks").skip(why)]
    else:
        user_files = _user_files(path, [f for f in (static._file_of(i) for i in indicators) if f])
        # NumPy loads on the first history access inside a tick: load it now, so that its
        # import does not count against the tick time limit.
        import numpy  # noqa: F401
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="rustybt-validate-")
        try:
            datasets, symbols = _datasets(cls, tree, data, bars, seed, folder)
            run_step, profile_step, leak_step, dynamic = dry_run(cls, datasets, user_files, tick_timeout, bool(data),
                                                                 symbols)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        steps += [run_step, profile_step, leak_step]
        metrics.details.update(dynamic)
    worst = max(functions, key=lambda f: f["complexity"], default=None)
    metrics.summary = f"{len(functions)} functions, {sum(f['lines'] for f in functions)} lines in functions" + (
        f"; most complex: {worst['function']} ({worst['complexity']})" if worst else "")
    if metrics.details.get("orders_per_1000_bars") is not None:
        metrics.summary += f"; {metrics.details['orders_per_1000_bars']} orders per 1000 bars"
    steps.append(metrics)
    return steps


# --- rendering ---------------------------------------------------------------------------

def document(algo: str, class_name: str | None, steps: list[Step]) -> dict[str, Any]:
    failed = [s.name for s in steps if s.status == "fail"]
    structure = next((s for s in steps if s.name == "structure"), None)
    return {
        "version": REPORT_VERSION,
        "algorithm": os.path.abspath(algo),
        "class": (structure.details.get("class") if structure else None) or class_name,
        "valid": not failed,
        "failed_steps": failed,
        "steps": [s.as_dict() for s in steps],
    }


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def render_text(doc: dict[str, Any]) -> str:
    lines = [f"rustybt validate {doc['algorithm']}" + (f" (class {doc['class']})" if doc["class"] else ""), ""]
    for step in doc["steps"]:
        lines.append(f"  {step['status'].upper():<7} {step['step']:<10} {step['summary']}")
        # The same failure in several scenarios is shown once, with the scenarios' names.
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for p in step["problems"]:
            key = (p["kind"], p["file"], p["line"]) if p["scenario"] else (id(p),)
            groups.setdefault(key, []).append(p)
        for group in groups.values():
            p = group[0]
            where = p["file"] or ""
            if where and p["line"]:
                where += f":{p['line']}" + (f":{p['column']}" if p["column"] else "")
            names = [g["scenario"] for g in group if g["scenario"]]
            scenario = f"[{', '.join(names)}] " if names else ""
            lines.append(f"          - {scenario}{where + ': ' if where else ''}{p['message']}")
            if p["source"]:
                lines.append(f"              | {p['source']}")
            if p["hint"]:
                lines.append(f"            hint: {p['hint']}")
            if p["traceback"]:
                lines.append(_indent(p["traceback"], "              "))
    steps = {s["step"]: s for s in doc["steps"]}
    functions = steps.get("profile", {}).get("details", {}).get("functions") or []
    if functions:
        lines += ["", "Profile of your functions (inclusive time, over all dry runs):",
                  f"  {'function':<36} {'calls':>8} {'total ms':>10} {'mean µs':>10} {'p99 µs':>10}  where"]
        for r in functions[:15]:
            lines.append(f"  {r['function'][:36]:<36} {r['calls']:>8} {r['total_ms']:>10.1f} {r['mean_us']:>10.1f} "
                         f"{r['p99_us']:>10.1f}  {os.path.basename(r['file'])}:{r['line']}")
    leaks = steps.get("leaks", {}).get("details", {})
    for site in leaks.get("sites", []) if leaks.get("leaking") else []:
        lines.append(f"  grows: {site['file']}:{site['line']} +{site['growth_bytes']} bytes")
    metrics = steps.get("metrics", {}).get("details", {})
    if metrics.get("functions"):
        lines += ["", "Metrics:", f"  {'function':<36} {'lines':>6} {'complexity':>11}"]
        for f in metrics["functions"]:
            lines.append(f"  {f['function'][:36]:<36} {f['lines']:>6} {f['complexity']:>11}")
        extra = [("custom indicator classes", metrics.get("custom_indicators")),
                 ("indicators attached", metrics.get("indicators_attached")),
                 ("orders per 1000 bars", metrics.get("orders_per_1000_bars")),
                 ("position changes per 1000 bars", metrics.get("position_changes_per_1000_bars")),
                 ("closed trades", metrics.get("closed_trades")),
                 ("average holding time", metrics.get("average_holding"))]
        for label, value in extra:
            if value is not None:
                lines.append(f"  {label}: {value}")
    lines.append("")
    if doc["valid"]:
        lines.append("valid: every check passed")
    else:
        lines.append(f"INVALID: failed {', '.join(doc['failed_steps'])}")
    return "\n".join(lines) + "\n"


def main(*, algo: str, class_name: str | None = None, data: list[str] | None = None, bars: int = 1000,
         as_json: bool = False, tick_timeout: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Runs every step; returns ``{"output", "exit", "error", "hint"}`` for the Rust side
    (``error`` set for a usage or data problem, which is reported like any rustybt error)."""
    data = list(data or [])
    for file in data:
        if not os.path.isfile(file):
            return {"output": "", "exit": 2, "error": f"data file `{file}` does not exist", "hint": None}
    from rustybt_api.errors import BacktestError

    # The user's print() goes to stderr: stdout carries the report (and may be JSON).
    try:
        with contextlib.redirect_stdout(sys.stderr):
            steps = validate(algo, class_name, data, bars, tick_timeout, seed)
    except BacktestError as err:
        return {"output": "", "exit": 3, "error": f"the engine refused the data: {err}", "hint": None}
    doc = document(algo, class_name, steps)
    import json

    output = json.dumps(doc, indent=2, default=str) + "\n" if as_json else render_text(doc)
    return {"output": output, "exit": 0 if doc["valid"] else 1, "error": None, "hint": None}
