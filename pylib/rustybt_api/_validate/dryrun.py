"""The dynamic steps of ``rustybt validate``: dry runs on the real engine, the per-tick time
limit, profiling of the user's functions and leak detection.

Everything is measured from Python around ``rustybt_api.testing.backtest``: a trace function
(``sys.settrace``) filtered to the user's files times every call of their functions (the engine
calls ``on_tick`` and indicators from Rust, and each such entry is a traced call), a watchdog
thread interrupts a call that exceeds the limit with a signal, and tracemalloc snapshots taken
from a wrapped ``on_tick`` show what keeps growing.
"""

from __future__ import annotations

import ast
import gc
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from typing import Any, Callable

from .common import Problem, Step, location_in_text


class TickTimeout(Exception):
    """Raised in the user's code when one call took longer than the tick time limit."""


class Tracer:
    """Times calls of functions defined in the user's files; knows since when the engine has
    been inside user code (for the watchdog)."""

    def __init__(self, user_files: set[str]) -> None:
        self.user_files = user_files
        self.known: dict[Any, bool] = {}
        self.stack: list[tuple[Any, int]] = []
        self.durations: dict[Any, list[int]] = defaultdict(list)
        self.record = True
        self.entered_at: float | None = None  # monotonic time the outermost user call began

    def _is_user(self, code: Any) -> bool:
        mine = self.known.get(code)
        if mine is None:
            mine = code.co_filename in self.user_files
            self.known[code] = mine
        return mine

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        if event != "call" or not self._is_user(frame.f_code):
            return None
        if not self.stack:
            self.entered_at = time.monotonic()
        self.stack.append((frame, time.perf_counter_ns()))
        frame.f_trace_lines = False
        return self._local

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "return" and self.stack and self.stack[-1][0] is frame:
            _, started = self.stack.pop()
            if self.record:
                self.durations[frame.f_code].append(time.perf_counter_ns() - started)
            if not self.stack:
                self.entered_at = None
        return self._local

    def __enter__(self) -> Tracer:
        self.stack.clear()
        self.entered_at = None
        sys.settrace(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.settrace(None)
        self.stack.clear()
        self.entered_at = None


class Watchdog:
    """Interrupts the main thread when one call into user code runs longer than ``limit``
    seconds: it records where the code is stuck, then sends SIGALRM, whose handler raises
    :class:`TickTimeout` at the line that was running (also inside ``time.sleep``)."""

    def __init__(self, tracer: Tracer, limit: float, user_files: set[str]) -> None:
        self.tracer, self.limit, self.user_files = tracer, limit, user_files
        main = threading.main_thread().ident
        assert main is not None, "invariant: the main thread has started"
        self.main = main
        self.stuck: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        # Raise only while a line of the user's own code runs. Elsewhere (an import, a library,
        # Python called back by the engine's native code, which must not see a stray exception)
        # the watchdog signals again a moment later.
        if (self.stuck is not None and self.tracer.entered_at is not None and frame is not None
                and frame.f_code.co_filename in self.user_files):
            where = {"file": frame.f_code.co_filename, "line": frame.f_lineno,
                     "function": frame.f_code.co_qualname, "entry": self.stuck["entry"]}
            self.stuck = where
            raise TickTimeout(
                f"{where['entry']} ran longer than the limit of {self.limit:g} s "
                f"(stuck at {where['file']}:{where['line']})"
            )

    def _where(self) -> dict[str, Any] | None:
        frame = sys._current_frames().get(self.main)
        found = None
        while frame is not None:
            if frame.f_code.co_filename in self.user_files:
                found = found or {"file": frame.f_code.co_filename, "line": frame.f_lineno,
                                  "function": frame.f_code.co_qualname}
                outer = frame.f_code.co_qualname
            frame = frame.f_back
        if found is not None:
            found["entry"] = outer
        return found

    def _watch(self) -> None:
        step = min(0.05, self.limit / 10)
        grace = max(5.0, 5 * self.limit)  # after the limit, how long to keep trying
        while not self._stop.wait(step):
            entered = self.tracer.entered_at
            if entered is None:
                continue
            late = time.monotonic() - entered - self.limit
            if late < 0:
                continue
            where = self._where()
            if where is None:
                continue
            if self.stuck is None:
                self.stuck = where
            if late > grace:
                # Never reached a line of the user's code again, or the code swallows the
                # interrupt (a bare `except:` in the loop): stop the process rather than hang.
                sys.stderr.write(
                    f"error: {where['entry']} is stuck at {where['file']}:{where['line']} and could not be "
                    f"interrupted for {late:.0f} s after the tick time limit (a bare `except:` in a loop?)\n")
                sys.stderr.flush()
                os._exit(1)
            signal.pthread_kill(self.main, signal.SIGALRM)

    def __enter__(self) -> Watchdog:
        self.stuck = None
        self._previous = signal.signal(signal.SIGALRM, self._handler)
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="rustybt-validate-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)


# Methods that take a symbol, and the position of that argument.
_SYMBOL_ARGUMENT = {
    "history": 0, "forming": 0, "buy": 0, "sell": 0, "bracket": 0, "close": 0, "open_orders": 0,
    "position": 0, "average_price": 0, "unrealized_pnl": 0, "indicator": 1,
}


def source_symbols(tree: ast.AST | None) -> list[str]:
    """Symbols the code names literally: ``ctx.history("SYNA")``, ``self.buy("SYNA", 10)``,
    ``self.indicator("RSI", "SYNA")``, ``symbol="SYNA"``; in the order they appear."""
    found: list[str] = []
    if tree is None:
        return found
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        position = _SYMBOL_ARGUMENT.get(node.func.attr)
        candidates = [k.value for k in node.keywords if k.arg == "symbol"]
        if position is not None and len(node.args) > position:
            candidates.append(node.args[position])
        for value in candidates:
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value:
                if value.value not in found:
                    found.append(value.value)
    return found


def scenario_symbols(params: dict[str, Any], tree: ast.AST | None = None) -> list[str]:
    """Symbols for the generated data: those the algorithm names in its parameters
    (``symbol = "BTC"``, ``symbols = [...]``) and literally in its code (see
    :func:`source_symbols`), so its lookups find them; ``TEST`` when it names none."""
    found: list[str] = []
    for name, value in params.items():
        if "symbol" not in name.lower():
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, str) and v and v not in found:
                found.append(v)
    for symbol in source_symbols(tree):
        if symbol not in found:
            found.append(symbol)
    return found or ["TEST"]


class LeakSampler:
    """Sizes of the live allocations made at each line of the user's files, every ``every``
    ticks (after a full collection)."""

    def __init__(self, user_files: set[str], every: int) -> None:
        self.filters = [tracemalloc.Filter(True, f) for f in sorted(user_files)]
        self.every = every
        self.ticks = 0
        self.samples: list[tuple[int, dict[tuple[str, int], int]]] = []

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % self.every == 0:
            gc.collect()
            snapshot = tracemalloc.take_snapshot().filter_traces(self.filters)
            sizes = {}
            for stat in snapshot.statistics("lineno"):
                frame = stat.traceback[0]
                sizes[(frame.filename, frame.lineno)] = stat.size
            self.samples.append((self.ticks, sizes))


def analyze_leaks(samples: list[tuple[int, dict[tuple[str, int], int]]]) -> dict[str, Any]:
    """Sustained growth: after a warm-up quarter, the user's live memory grows in most sampling
    intervals, by at least 4 KiB in all and 4 bytes per tick."""
    kept = samples[len(samples) // 4:]
    result: dict[str, Any] = {"samples": len(samples), "leaking": False, "growth_bytes": 0,
                              "bytes_per_tick": 0.0, "sites": []}
    if len(kept) < 4:
        result["note"] = "too few ticks to judge (need at least 8 samples)"
        return result
    totals = [sum(s.values()) for _, s in kept]
    rises = sum(1 for a, b in zip(totals, totals[1:]) if b > a)
    growth = totals[-1] - totals[0]
    ticks = kept[-1][0] - kept[0][0]
    per_tick = growth / ticks if ticks else 0.0
    first, last = kept[0][1], kept[-1][1]
    sites = sorted(
        ((key, last.get(key, 0) - first.get(key, 0)) for key in set(first) | set(last)),
        key=lambda kv: -kv[1],
    )
    result.update(growth_bytes=growth, bytes_per_tick=round(per_tick, 1),
                  rising_intervals=f"{rises}/{len(totals) - 1}",
                  sites=[{"file": f, "line": line, "growth_bytes": size} for (f, line), size in sites[:5] if size > 0])
    result["leaking"] = growth >= 4096 and per_tick >= 4 and rises >= 0.6 * (len(totals) - 1)
    return result


def _without_own_frames(text: str) -> str:
    """The traceback without the watchdog's signal handler frame (it is not the user's code)."""
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith('  File "'):
            skip = f"{os.sep}_validate{os.sep}" in line
        elif not line.startswith(" "):
            skip = False  # the exception line, or a chained traceback's header
        if not skip:
            out.append(line)
    return "".join(out)


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def profile_rows(durations: dict[Any, list[int]]) -> list[dict[str, Any]]:
    rows = []
    for code, values in durations.items():
        if code.co_name.startswith("<"):
            continue  # comprehensions and lambdas count inside the function that holds them
        total = sum(values)
        rows.append({
            "function": code.co_qualname, "file": code.co_filename, "line": code.co_firstlineno,
            "calls": len(values), "total_ms": round(total / 1e6, 3),
            "mean_us": round(total / len(values) / 1e3, 3), "p99_us": round(percentile(values, 0.99) / 1e3, 3),
        })
    rows.sort(key=lambda r: -r["total_ms"])
    return rows


def _seconds(trade: dict[str, Any]) -> float | None:
    entry, exit_ = trade.get("entry_time"), trade.get("exit_time")
    if entry is None or exit_ is None:
        return None
    try:
        return float((exit_ - entry).total_seconds())
    except (TypeError, AttributeError):
        return None


def human_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _counting_indicator(instance: Any, attached: set[str]) -> Callable[..., Any]:
    original = instance.indicator

    def indicator(name: Any, symbol: str, timeframe: str | None = None, **params: Any) -> Any:
        label = name if isinstance(name, str) else getattr(name, "__name__", type(name).__name__)
        attached.add(f"{label}|{timeframe}|{sorted(params.items())!r}")
        return original(name, symbol, timeframe, **params)

    return indicator


def dry_run(cls: type, datasets: list[tuple[str, list[str]]], user_files: set[str], limit: float,
            user_data: bool, symbols: list[str] | None = None) -> tuple[Step, Step, Step, dict[str, Any]]:
    """Runs every dataset, then repeats the first with tracemalloc; returns the dry-run,
    profile and leak steps and the numbers the metrics step reports."""
    from rustybt_api.errors import BacktestError
    from rustybt_api.testing import backtest

    run_step, profile_step, leak_step = Step("dry_run"), Step("profile"), Step("leaks")
    tracer = Tracer(user_files)
    runs: list[dict[str, Any]] = []
    attached: set[str] = set()
    trades_seconds: list[float] = []

    def one(name: str, files: list[str], sampler: LeakSampler | None) -> dict[str, Any]:
        instance = cls()
        per_run: set[str] = set()
        instance.indicator = _counting_indicator(instance, per_run)
        if sampler is not None:
            original = instance.on_tick

            def on_tick(ctx: Any) -> None:
                original(ctx)
                sampler.tick()
            instance.on_tick = on_tick
        watchdog = Watchdog(tracer, limit, user_files)
        # Generated files are deleted after the run: name them only.
        record: dict[str, Any] = {"scenario": name, "data": files if user_data else [os.path.basename(f) for f in files]}
        out = tempfile.mkdtemp(prefix="rustybt-validate-run-")
        try:
            with tracer, watchdog:
                result = backtest(instance, files, out=out, raise_on_error=False)
        except BacktestError as err:
            if user_data:
                raise
            record.update(status="failed", problem=Problem("engine", f"the engine refused the scenario: {err}", scenario=name))
            return record
        except TickTimeout as err:  # raised outside the engine's callbacks
            record.update(status="failed", problem=Problem("timeout", str(err), scenario=name))
            return record
        finally:
            shutil.rmtree(out, ignore_errors=True)
        attached.update(per_run)
        record.update(status=result.status, bars=result.bars, ticks=result.ticks,
                      orders=len(result.orders), fills=len(result.fills), trades=len(result.trades),
                      wall_seconds=round(result.wall_seconds, 3))
        if sampler is None:
            trades_seconds.extend(s for s in map(_seconds, result.trades) if s is not None)
        error = result.error
        if watchdog.stuck is not None:
            where = watchdog.stuck
            record["problem"] = Problem(
                "timeout",
                f"{where['entry']} took longer than the tick time limit of {limit:g} s and was stopped "
                f"at line {where['line']} (in {where['function']}); an endless loop?",
                file=where["file"], line=where["line"], scenario=name,
                traceback=_without_own_frames(error.traceback) if error else None,
                hint="make each call finish quickly, or raise the limit with `--tick-timeout 5s`",
            )
        elif error is not None:
            file, line = error.file, error.line
            if file is None or file not in user_files:
                file, line = location_in_text(error.traceback, user_files)
            when = f" at simulated time {error.time}" if error.time else ""
            hint = None
            if error.exception == "UnknownSymbolError":
                hint = ("the algorithm asks for a symbol your data does not have: check the symbol "
                        "column or the file names" if user_data else
                        f"the generated scenarios have the symbols {', '.join(symbols or [])}: name the "
                        "symbols in a parameter (`symbols = [\"SYNA\"]`) or literally in the code so "
                        "they are generated, or dry-run on your own data with `--data FILE`")
            record["problem"] = Problem(
                "exception", f"{error.exception} in `{error.phase}`{when}: {error.message}",
                file=file or error.file, line=line or error.line, traceback=error.traceback, scenario=name,
                hint=hint,
            )
        return record

    for name, files in datasets:
        record = one(name, files, None)
        runs.append(record)
        if "problem" in record:
            run_step.fail(record["problem"])
    ok = [r for r in runs if "problem" not in r]
    failed = len(runs) - len(ok)
    run_step.summary = (f"{len(ok)} of {len(runs)} {'data sets' if user_data else 'scenarios'} ran without error"
                        + (f"; {failed} failed" if failed else ""))
    run_step.details["runs"] = [{k: v for k, v in r.items() if k != "problem"} | {"error": r["problem"].message if "problem" in r else None}
                                for r in runs]

    rows = profile_rows(tracer.durations)
    profile_step.details["functions"] = rows
    profile_step.summary = (f"{len(rows)} functions of yours, {sum(r['calls'] for r in rows)} calls"
                            if rows else "none of your functions ran")

    # Leaks: the first data set again, with tracemalloc (it slows allocation, so not while timing).
    name, files = datasets[0]
    rows_hint = max((r.get("ticks") or 0) for r in runs) if runs else 0
    sampler = LeakSampler(user_files, every=max(10, rows_hint // 40))
    tracer.record = False
    tracemalloc.start(1)
    try:
        leak_run = one(name, files, sampler)
    finally:
        tracemalloc.stop()
        tracer.record = True
    if "problem" in leak_run:
        leak_step.skip(f"the run on `{name}` failed, see dry_run")
    else:
        found = analyze_leaks(sampler.samples)
        leak_step.details = {"scenario": name, **found}
        if found["leaking"]:
            top = found["sites"][0] if found["sites"] else None
            leak_step.fail(Problem(
                "leak",
                f"memory held by your code grows by {found['bytes_per_tick']} bytes per tick "
                f"({found['growth_bytes']} bytes over the run on `{name}`)"
                + (f"; it grows most at {top['file']}:{top['line']} (+{top['growth_bytes']} bytes)" if top else ""),
                file=top["file"] if top else None, line=top["line"] if top else None, scenario=name,
                hint="keep a bounded window (collections.deque(maxlen=N)) instead of appending every tick",
            ))
            leak_step.summary = "memory grows every tick"
        else:
            leak_step.summary = (f"no sustained growth on `{name}` ({found['bytes_per_tick']} bytes per tick)"
                                 if "note" not in found else found["note"])

    bars = sum(r.get("bars") or 0 for r in ok)
    holding = round(sum(trades_seconds) / len(trades_seconds), 1) if trades_seconds else None
    dynamic = {
        "bars": bars,
        "indicators_attached": len(attached),
        "orders_per_1000_bars": round(1000 * sum(r.get("orders", 0) for r in ok) / bars, 2) if bars else None,
        "position_changes_per_1000_bars": round(1000 * sum(r.get("fills", 0) for r in ok) / bars, 2) if bars else None,
        "closed_trades": len(trades_seconds),
        "average_holding_seconds": holding,
    }
    if holding is not None:
        dynamic["average_holding"] = human_duration(holding)
    return run_step, profile_step, leak_step, dynamic
