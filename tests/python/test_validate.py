"""`rustybt validate`: the real binary on a corpus of broken algorithms, the examples, the report
formats and every usage error."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from rustybt_api.testing import generate_bars, write_csv

BROKEN = ROOT / "tests" / "fixtures" / "broken_algos"
STEP_NAMES = ["syntax", "structure", "dry_run", "profile", "leaks", "metrics"]


def validate(run_rustybt: Any, algo: Path, *args: str, expect: int | None = None) -> tuple[dict[str, Any], Any]:
    result = run_rustybt("validate", "--algo", algo, "--json", *args)
    result.assert_clean_failure()
    assert result.stdout, result.stderr
    doc = json.loads(result.stdout)
    if expect is not None:
        assert result.returncode == expect, (result.stdout, result.stderr)
    return doc, result


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["step"] == name)


def only_problem(doc: dict[str, Any], name: str) -> dict[str, Any]:
    problems = step(doc, name)["problems"]
    assert problems, step(doc, name)
    return problems[0]


# --- the corpus of broken algorithms -----------------------------------------------------


def test_syntax_error_names_file_line_and_column(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "syntax_error.py", expect=1)
    problem = only_problem(doc, "syntax")
    assert step(doc, "syntax")["status"] == "fail"
    assert problem["kind"] == "syntax_error"
    assert problem["file"] == str(BROKEN / "syntax_error.py")
    assert (problem["line"], problem["column"]) == (9, 21)
    assert "expected ':'" in problem["message"]
    assert problem["source"] == "if price > 0"
    assert [s["status"] for s in doc["steps"][1:]] == ["skipped"] * 5
    assert doc["valid"] is False and doc["failed_steps"] == ["syntax"]


def test_no_algorithm_class(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "no_algorithm.py", expect=1)
    problem = only_problem(doc, "structure")
    assert problem["kind"] == "no_algorithm"
    assert problem["file"] == str(BROKEN / "no_algorithm.py")
    assert "Algorithm" in problem["hint"]
    assert step(doc, "dry_run")["status"] == "skipped"


def test_two_candidates_need_class(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "two_algorithms.py", expect=1)
    problem = only_problem(doc, "structure")
    assert problem["kind"] == "several_algorithms"
    assert "`First` (line 6)" in problem["message"] and "`Second` (line 11)" in problem["message"]
    assert "--class" in problem["hint"]


def test_class_flag_picks_one_and_it_validates(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "two_algorithms.py", "--class", "Second", "--bars", "200", expect=0)
    assert doc["class"] == "Second"
    assert doc["valid"] is True


def test_unknown_class_lists_the_candidates(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "two_algorithms.py", "--class", "Third", expect=1)
    problem = only_problem(doc, "structure")
    assert problem["kind"] == "class_not_found"
    assert "`First`" in problem["hint"] and "`Second`" in problem["hint"]


def test_exception_in_initialize_in_every_scenario(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "init_raises.py", "--bars", "200", expect=1)
    dry = step(doc, "dry_run")
    assert dry["status"] == "fail"
    assert len(dry["problems"]) == 8  # one per scenario
    for problem in dry["problems"]:
        assert problem["kind"] == "exception"
        assert "ZeroDivisionError" in problem["message"] and "initialize" in problem["message"]
        assert (problem["file"], problem["line"]) == (str(BROKEN / "init_raises.py"), 10)
        assert "100 / self.lookback" in problem["traceback"]
    assert {p["scenario"] for p in dry["problems"]} == {
        "trend_up", "trend_down", "range", "gaps", "spikes", "flat", "zero_volume", "missing_bars"}


def test_exception_on_the_500th_tick(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "fails_at_tick_500.py", "--bars", "600", expect=1)
    problems = step(doc, "dry_run")["problems"]
    assert len(problems) == 8
    for problem in problems:
        assert "KeyError" in problem["message"] and "on_tick" in problem["message"]
        assert (problem["file"], problem["line"]) == (str(BROKEN / "fails_at_tick_500.py"), 14)
        assert "simulated time" in problem["message"]


def test_no_error_before_the_500th_tick(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "fails_at_tick_500.py", "--bars", "400", expect=0)
    assert step(doc, "dry_run")["status"] == "pass"


def test_infinite_loop_is_stopped_and_named(run_rustybt):
    started = time.monotonic()
    doc, _ = validate(run_rustybt, BROKEN / "infinite_loop.py", "--bars", "100", "--tick-timeout", "200ms", expect=1)
    assert time.monotonic() - started < 120
    problems = step(doc, "dry_run")["problems"]
    assert len(problems) == 8
    for problem in problems:
        assert problem["kind"] == "timeout"
        assert problem["file"] == str(BROKEN / "infinite_loop.py")
        assert problem["line"] in (14, 15)
        assert "0.2 s" in problem["message"] and "Spinner.on_tick" in problem["message"]
        assert "--tick-timeout" in problem["hint"]
    assert step(doc, "leaks")["status"] == "skipped"


def test_sleeping_tick_is_stopped_too(run_rustybt, write_algo):
    algo = write_algo("""
        import time
        from rustybt_api import Algorithm

        class Sleeper(Algorithm):
            def on_tick(self, ctx):
                time.sleep(3600)
    """)
    started = time.monotonic()
    doc, _ = validate(run_rustybt, algo, "--bars", "50", "--tick-timeout", "100ms", expect=1)
    assert time.monotonic() - started < 120
    problem = only_problem(doc, "dry_run")
    assert (problem["kind"], problem["line"]) == ("timeout", 7)


def test_loop_that_swallows_the_interrupt_ends_the_process(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm

        class Stubborn(Algorithm):
            def on_tick(self, ctx):
                while True:
                    try:
                        while True:
                            pass
                    except BaseException:
                        pass
    """)
    started = time.monotonic()
    result = run_rustybt("validate", "--algo", algo, "--json", "--bars", "50", "--tick-timeout", "100ms")
    assert time.monotonic() - started < 60
    result.assert_clean_failure()
    assert result.returncode == 1
    assert f"Stubborn.on_tick is stuck at {algo}:" in result.stderr
    assert "could not be interrupted" in result.stderr


def test_infinite_loop_at_import_time(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm

        while True:
            pass

        class Never(Algorithm):
            pass
    """)
    doc, _ = validate(run_rustybt, algo, "--tick-timeout", "100ms", expect=1)
    problem = only_problem(doc, "structure")
    assert problem["kind"] == "timeout"
    assert problem["line"] in (4, 5)


def test_growing_list_is_a_leak_with_its_line(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "growing_list.py", "--bars", "1000", expect=1)
    assert step(doc, "dry_run")["status"] == "pass"
    leaks = step(doc, "leaks")
    assert leaks["status"] == "fail"
    problem = leaks["problems"][0]
    assert problem["kind"] == "leak"
    assert (problem["file"], problem["line"]) == (str(BROKEN / "growing_list.py"), 13)
    assert leaks["details"]["leaking"] is True
    assert leaks["details"]["bytes_per_tick"] > 50
    assert leaks["details"]["sites"][0]["line"] == 13
    assert "deque" in problem["hint"]


def test_nan_quantity(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "nan_quantity.py", "--bars", "200", expect=1)
    problems = step(doc, "dry_run")["problems"]
    assert len(problems) == 8
    for problem in problems:
        assert (problem["file"], problem["line"]) == (str(BROKEN / "nan_quantity.py"), 17)
        assert "OrderError" in problem["message"]
        assert "nan" in problem["message"].lower()


def test_missing_import_names_the_pip_package(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "missing_import.py", expect=1)
    problem = only_problem(doc, "structure")
    assert problem["kind"] == "missing_import"
    assert (problem["file"], problem["line"]) == (str(BROKEN / "missing_import.py"), 4)
    assert "sklearn" in problem["message"]
    assert problem["hint"].startswith("pip install scikit-learn")


def test_optional_import_guarded_by_try_is_fine(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm
        try:
            import sklearn
        except ImportError:
            sklearn = None

        class Optional(Algorithm):
            pass
    """)
    doc, _ = validate(run_rustybt, algo, "--bars", "100", expect=0)
    assert step(doc, "structure")["status"] == "pass"


def test_missing_import_of_a_local_module_found_at_run_time(run_rustybt, write_algo):
    # Imported by a helper module, so only running the file finds it.
    write_algo("import not_a_real_package_xyz\n", name="helper")
    algo = write_algo("""
        from rustybt_api import Algorithm
        import helper

        class UsesHelper(Algorithm):
            pass
    """)
    doc, _ = validate(run_rustybt, algo, expect=1)
    problem = only_problem(doc, "structure")
    assert problem["kind"] == "missing_import"
    assert problem["hint"].startswith("pip install not_a_real_package_xyz (")
    assert problem["line"] == 3 and problem["file"] == str(algo)


def test_bad_signatures_and_bad_indicator(run_rustybt):
    doc, _ = validate(run_rustybt, BROKEN / "bad_signature.py", expect=1)
    problems = {p["line"]: p for p in step(doc, "structure")["problems"]}
    assert problems[14]["kind"] == "bad_signature"
    assert "def on_tick(self, ctx)" in problems[14]["message"]
    assert problems[7]["kind"] == "bad_indicator" and "outputs" in problems[7]["message"]


def test_init_with_arguments_and_hook_typos(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm

        class Picky(Algorithm):
            def __init__(self, symbol):
                self.symbol = symbol

            def on_tik(self, ctx):
                pass
    """)
    doc, _ = validate(run_rustybt, algo, expect=1)
    problems = {p["line"]: p for p in step(doc, "structure")["problems"]}
    assert problems[5]["kind"] == "bad_signature" and "__init__" in problems[5]["message"]
    assert problems[8]["kind"] == "unknown_hook" and "on_tick" in problems[8]["hint"]


def test_exception_at_import_time(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm
        LIMITS = {"a": 1}
        DEFAULT = LIMITS["b"]

        class Never(Algorithm):
            pass
    """)
    doc, _ = validate(run_rustybt, algo, expect=1)
    problem = only_problem(doc, "structure")
    assert problem["kind"] == "import_error"
    assert (problem["file"], problem["line"]) == (str(algo), 4)
    assert "KeyError" in problem["message"]


def test_parameter_types(run_rustybt, write_algo):
    algo = write_algo("""
        import math
        from rustybt_api import Algorithm

        class Params(Algorithm):
            quantity = 0.5
            threshold = math.inf
            window = object()
    """)
    doc, _ = validate(run_rustybt, algo, expect=1)
    problems = {p["line"]: p for p in step(doc, "structure")["problems"]}
    assert problems[6]["kind"] == "float_money"
    assert problems[7]["kind"] == "bad_parameter" and "inf" in problems[7]["message"]
    assert problems[8]["kind"] == "parameter_type"


# --- the examples validate clean ---------------------------------------------------------


@pytest.mark.parametrize("name", ["sma_cross", "mtf_trend", "rsi_oversold", "bracket_breakout", "sma_cross_arrays"])
def test_examples_validate_clean(run_rustybt, name):
    doc, result = validate(run_rustybt, ROOT / "algorithms" / f"{name}.py", expect=0)
    assert doc["valid"] is True
    for s in doc["steps"]:
        assert s["status"] == "pass", s
    assert step(doc, "leaks")["details"]["leaking"] is False


def test_profile_covers_hooks_indicators_and_helpers(run_rustybt):
    doc, _ = validate(run_rustybt, ROOT / "algorithms" / "mtf_trend.py", "--bars", "600", expect=0)
    rows = {r["function"]: r for r in step(doc, "profile")["details"]["functions"]}
    assert rows["MtfTrend.initialize"]["calls"] == 8
    ticks = sum(r["ticks"] for r in step(doc, "dry_run")["details"]["runs"])
    assert rows["MtfTrend.on_tick"]["calls"] == ticks
    indicator = [r for name, r in rows.items() if name.startswith("MarketStructure.")]
    assert indicator and indicator[0]["file"].endswith("indicators/market_structure.py")
    for r in rows.values():
        assert r["calls"] > 0 and r["p99_us"] > 0
        # both are rounded: to 1 ns per call and to 1 µs in all
        assert r["mean_us"] * r["calls"] == pytest.approx(r["total_ms"] * 1000, rel=1e-3, abs=2)


def test_profile_of_a_helper_function_and_metrics(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm

        def signal(n, values):
            if n > 0 and n % 10 == 0:
                return True
            for v in values:
                if v < 0:
                    return False
            return False

        class Every10(Algorithm):
            def initialize(self, ctx):
                self.n = 0

            def on_tick(self, ctx):
                self.n += 1
                if signal(self.n, []):
                    self.buy(ctx.symbols[0], 1) if self.n % 20 else self.close(ctx.symbols[0])
    """)
    doc, _ = validate(run_rustybt, algo, "--bars", "200", expect=0)
    rows = {r["function"]: r for r in step(doc, "profile")["details"]["functions"]}
    ticks = sum(r["ticks"] for r in step(doc, "dry_run")["details"]["runs"])
    assert rows["signal"]["calls"] == ticks == rows["Every10.on_tick"]["calls"]
    metrics = step(doc, "metrics")["details"]
    functions = {f["function"]: f for f in metrics["functions"]}
    assert functions["signal"] == {"function": "signal", "file": str(algo), "line": 4, "lines": 7, "complexity": 5}
    assert functions["Every10.on_tick"]["complexity"] == 3
    # an order every 10 ticks (a buy, then a close 10 ticks later): 100 per 1000 bars
    assert 90 <= metrics["orders_per_1000_bars"] <= 100
    assert metrics["position_changes_per_1000_bars"] > 0
    assert metrics["closed_trades"] > 0
    assert 540 <= metrics["average_holding_seconds"] <= 660  # ten one-minute bars


def test_indicator_count(run_rustybt):
    doc, _ = validate(run_rustybt, ROOT / "algorithms" / "mtf_trend.py", "--bars", "300", expect=0)
    metrics = step(doc, "metrics")["details"]
    assert metrics["indicators_attached"] == 3
    assert metrics["custom_indicators"] == 1


# --- formats -----------------------------------------------------------------------------


def test_json_document_shape(run_rustybt):
    doc, _ = validate(run_rustybt, ROOT / "algorithms" / "sma_cross.py", "--bars", "300", expect=0)
    assert set(doc) == {"version", "algorithm", "class", "valid", "failed_steps", "steps"}
    assert doc["version"] == 1
    assert doc["class"] == "SmaCross"
    assert [s["step"] for s in doc["steps"]] == STEP_NAMES
    for s in doc["steps"]:
        assert set(s) == {"step", "status", "summary", "problems", "details"}
        assert s["status"] in {"pass", "warn", "fail", "skipped"}
    problem_keys = {"kind", "message", "file", "line", "column", "hint", "source", "traceback", "scenario"}
    bad, _ = validate(run_rustybt, BROKEN / "syntax_error.py")
    assert set(bad["steps"][0]["problems"][0]) == problem_keys


def test_human_report(run_rustybt):
    result = run_rustybt("validate", "--algo", ROOT / "algorithms" / "sma_cross.py", "--bars", "300")
    assert result.returncode == 0, result.stderr
    for name in STEP_NAMES:
        assert name in result.stdout
    assert "PASS" in result.stdout and "Profile of your functions" in result.stdout
    assert "SmaCross.on_tick" in result.stdout and "complexity" in result.stdout
    assert result.stdout.rstrip().endswith("valid: every check passed")

    bad = run_rustybt("validate", "--algo", BROKEN / "fails_at_tick_500.py", "--bars", "600")
    assert bad.returncode == 1
    assert f"{BROKEN / 'fails_at_tick_500.py'}:14" in bad.stdout
    assert "KeyError" in bad.stdout and "Traceback" in bad.stdout
    assert bad.stdout.rstrip().endswith("INVALID: failed dry_run")


def test_user_prints_do_not_break_json(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm

        print("loading")

        class Chatty(Algorithm):
            def on_tick(self, ctx):
                print("tick", ctx.time)
    """)
    doc, result = validate(run_rustybt, algo, "--bars", "50", expect=0)
    assert doc["valid"] is True
    assert "tick" in result.stderr and "loading" in result.stderr


def test_user_data_instead_of_scenarios(run_rustybt, tmp_path):
    data = write_csv(tmp_path / "ABC.csv", generate_bars(300, seed=4))
    doc, _ = validate(run_rustybt, ROOT / "algorithms" / "sma_cross.py", "--data", data, expect=0)
    runs = step(doc, "dry_run")["details"]["runs"]
    assert [r["scenario"] for r in runs] == ["data"]
    assert runs[0]["bars"] == 300


def test_seed_changes_the_scenarios_deterministically(run_rustybt):
    algo = ROOT / "algorithms" / "sma_cross.py"
    a, _ = validate(run_rustybt, algo, "--bars", "300", "--seed", "1", expect=0)
    b, _ = validate(run_rustybt, algo, "--bars", "300", "--seed", "1", expect=0)
    c, _ = validate(run_rustybt, algo, "--bars", "300", "--seed", "2", expect=0)
    orders = lambda d: [r["orders"] for r in step(d, "dry_run")["details"]["runs"]]  # noqa: E731
    assert orders(a) == orders(b)
    assert orders(a) != orders(c)


# --- usage and data errors ---------------------------------------------------------------


def test_missing_algorithm_file(run_rustybt, tmp_path):
    result = run_rustybt("validate", "--algo", tmp_path / "nope.py")
    result.assert_clean_failure()
    assert result.returncode == 2
    assert "nope.py" in result.stderr and "does not exist" in result.stderr


def test_missing_data_file(run_rustybt, tmp_path):
    result = run_rustybt("validate", "--algo", ROOT / "algorithms" / "sma_cross.py", "--data", tmp_path / "none.csv")
    result.assert_clean_failure()
    assert result.returncode == 2
    assert "none.csv" in result.stderr and "does not exist" in result.stderr


def test_bad_data_file(run_rustybt, tmp_path):
    bad = tmp_path / "BAD.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,10,9,8,9,100\n")
    result = run_rustybt("validate", "--algo", ROOT / "algorithms" / "sma_cross.py", "--data", bad)
    result.assert_clean_failure()
    assert result.returncode == 3
    assert "BAD.csv" in result.stderr and "line 2" in result.stderr


@pytest.mark.parametrize("flag,value,text", [
    ("--tick-timeout", "soon", "not a duration"),
    ("--tick-timeout", "0s", "must be positive"),
    ("--bars", "0", "--bars"),
    ("--bars", "-5", "-5"),
])
def test_bad_flags(run_rustybt, flag, value, text):
    result = run_rustybt("validate", "--algo", ROOT / "algorithms" / "sma_cross.py", flag, value)
    result.assert_clean_failure()
    assert result.returncode == 2
    assert text in result.stderr


def test_unreadable_algorithm_file(run_rustybt, tmp_path):
    algo = tmp_path / "latin1.py"
    algo.write_bytes(b"# caf\xe9\nx = 1\n")
    doc, _ = validate(run_rustybt, algo, expect=1)
    problem = only_problem(doc, "syntax")
    assert problem["file"] == str(algo)
    assert "utf-8" in problem["message"].lower() or "decode" in problem["message"].lower()


def test_warnings_alone_keep_the_exit_code_zero(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm

        class Warned(Algorithm):
            quantity = 0.5

            def on_bar(self, ctx):
                pass
    """)
    doc, _ = validate(run_rustybt, algo, "--bars", "100", expect=0)
    structure = step(doc, "structure")
    assert structure["status"] == "warn"
    assert {p["kind"] for p in structure["problems"]} == {"float_money", "unknown_hook"}
    assert doc["valid"] is True and doc["failed_steps"] == []


def test_endless_loop_in_a_custom_indicator(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm, Indicator

        class Forever(Indicator):
            def update(self, bar):
                while bar.close > 0:
                    pass
                return bar.close

        class UsesForever(Algorithm):
            def initialize(self, ctx):
                self.value = self.indicator(Forever, ctx.symbols[0])
    """)
    doc, _ = validate(run_rustybt, algo, "--bars", "50", "--tick-timeout", "100ms", expect=1)
    problems = step(doc, "dry_run")["problems"]
    assert len(problems) == 8
    for problem in problems:
        assert problem["kind"] == "timeout"
        assert problem["line"] in (6, 7)
        assert "Forever.update" in problem["message"]


def test_exception_in_a_custom_indicator(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm, Indicator

        class Ratio(Indicator):
            def update(self, bar):
                return bar.close / bar.volume

        class UsesRatio(Algorithm):
            def initialize(self, ctx):
                self.value = self.indicator(Ratio, ctx.symbols[0])
    """)
    doc, _ = validate(run_rustybt, algo, "--bars", "200", expect=1)
    runs = {r["scenario"]: r for r in step(doc, "dry_run")["details"]["runs"]}
    # only the scenario with zero-volume bars divides by zero
    assert [name for name, r in runs.items() if r["error"]] == ["zero_volume"]
    problem = only_problem(doc, "dry_run")
    assert (problem["scenario"], problem["file"], problem["line"]) == ("zero_volume", str(algo), 6)
    assert "ZeroDivisionError" in problem["message"]


def test_symbols_from_parameters(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm

        class Pair(Algorithm):
            symbol = "BTC/USDT"
            hedges = ("ETH/USDT",)
            other_symbols = ["SOL"]

            def on_tick(self, ctx):
                assert sorted(ctx.symbols) == ["BTC/USDT", "SOL"], ctx.symbols
    """)
    doc, _ = validate(run_rustybt, algo, "--bars", "50", expect=0)
    assert step(doc, "dry_run")["status"] == "pass"


def test_exception_in_init(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm

        class Fragile(Algorithm):
            def __init__(self):
                self.table = {}[0]
    """)
    doc, _ = validate(run_rustybt, algo, expect=1)
    problem = only_problem(doc, "structure")
    assert problem["kind"] == "init_error"
    assert (problem["file"], problem["line"]) == (str(algo), 6)
    assert "Fragile() failed" in problem["message"] and "KeyError" in problem["message"]
    assert step(doc, "dry_run")["status"] == "skipped"


def test_malformed_indicators(run_rustybt, write_algo):
    algo = write_algo("""
        from rustybt_api import Algorithm, Indicator

        class Nothing(Indicator):
            period = 3

        class BadSettings(Indicator):
            warm_up = -1
            window = 0
            timeframe = "hourly"

            def calculate(self, bars, extra):
                return bars.close

        class BadInit(Indicator):
            def __init__(self, **params):
                raise RuntimeError("no defaults")

            async def update(self, bar):
                return 1.0

        class Fine(Algorithm):
            pass
    """)
    doc, _ = validate(run_rustybt, algo, expect=1)
    problems = step(doc, "structure")["problems"]
    messages = "\n".join(p["message"] for p in problems)
    assert "Nothing defines neither calculate" in messages
    assert "BadSettings.warm_up is -1" in messages
    assert "BadSettings.window is 0" in messages
    assert "BadSettings.timeframe is 'hourly'" in messages
    assert "BadSettings.calculate(self, bars, extra)" in messages
    assert "BadInit.update is a coroutine" in messages
    init = next(p for p in problems if p["kind"] == "indicator_init")
    assert (init["line"], "no defaults" in init["message"]) == (17, True)
    lines = {p["line"] for p in problems if p["kind"] == "bad_indicator"}
    assert {4, 8, 9, 10} <= lines


def test_the_readme_example_validates(run_rustybt, tmp_path):
    # Regression: the dry-run scenarios were named TEST while the example asks for SYNA, and
    # 8 of 8 failed with UnknownSymbolError.
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    algo = tmp_path / "momentum.py"
    algo.write_text(example)
    doc, result = validate(run_rustybt, algo, expect=0)
    dry_run = step(doc, "dry_run")
    assert dry_run["status"] == "pass", dry_run
    assert all(run["error"] is None for run in dry_run["details"]["runs"])


def test_a_symbol_the_scenarios_lack_gets_a_hint(run_rustybt, write_algo):
    algo = write_algo('''
        from rustybt_api import Algorithm

        class Computed(Algorithm):
            def on_tick(self, ctx):
                name = "".join(["SY", "NA"])  # not a literal: the dry runs cannot know it
                ctx.history(name)
    ''')
    doc, _ = validate(run_rustybt, algo, expect=1)
    problem = only_problem(doc, "dry_run")
    assert problem["message"].startswith("UnknownSymbolError")
    assert "the generated scenarios have the symbols TEST" in problem["hint"]
    assert "--data FILE" in problem["hint"]
