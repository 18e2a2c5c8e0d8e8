"""Pure-Python parts of `rustybt validate`: leak judgement, complexity, percentiles, rendering."""

from __future__ import annotations

import ast

from rustybt_api._validate import document, render_text
from rustybt_api._validate.common import Problem, Step, location_in_text
from rustybt_api._validate.dryrun import analyze_leaks, percentile, scenario_symbols
from rustybt_api._validate.static import complexity, function_metrics, pip_hint


def samples(sizes, every=10, site=("a.py", 3)):
    return [(every * (i + 1), {site: size}) for i, size in enumerate(sizes)]


def test_steady_growth_is_a_leak():
    found = analyze_leaks(samples([1000 + 400 * i for i in range(40)]))
    assert found["leaking"] is True
    assert found["bytes_per_tick"] == 40.0
    assert found["sites"] == [{"file": "a.py", "line": 3, "growth_bytes": 400 * 29}]


def test_flat_or_bounded_memory_is_not():
    assert analyze_leaks(samples([5000] * 40))["leaking"] is False
    # a bounded buffer that fills during the warm-up, then stays
    assert analyze_leaks(samples([min(100 * i, 800) for i in range(40)]))["leaking"] is False
    # noise up and down
    assert analyze_leaks(samples([5000 + (300 if i % 2 else -300) for i in range(40)]))["leaking"] is False


def test_small_growth_is_not_reported():
    # 1 byte per tick is below the threshold
    assert analyze_leaks(samples([1000 + 10 * i for i in range(40)]))["leaking"] is False


def test_too_few_samples_are_not_judged():
    found = analyze_leaks(samples([1000, 100000, 200000]))
    assert found["leaking"] is False and "too few" in found["note"]


def test_complexity_counts_decisions():
    tree = ast.parse(
        "def f(x, ys):\n"
        "    if x and ys or not x:\n"        # if +1, and/or +2
        "        return [y for y in ys if y]\n"  # comprehension +2
        "    while x:\n"                      # +1
        "        try:\n"
        "            x -= 1\n"
        "        except ValueError:\n"        # +1
        "            pass\n"
        "    def inner():\n"                  # nested: not counted in f
        "        if x: pass\n"
        "    return 1 if x else 2\n"          # +1
    )
    func = tree.body[0]
    assert complexity(func) == 9
    rows = function_metrics(tree, "f.py")
    assert [(r["function"], r["lines"], r["complexity"]) for r in rows] == [("f", 11, 9), ("f.<locals>.inner", 2, 2)]


def test_percentile():
    assert percentile(list(range(1, 101)), 0.99) == 99
    assert percentile([7], 0.99) == 7


def test_pip_names():
    assert pip_hint("sklearn.linear_model").startswith("pip install scikit-learn ")
    assert pip_hint("yaml").startswith("pip install PyYAML ")
    assert pip_hint("requests").startswith("pip install requests ")


def test_scenario_symbols():
    assert scenario_symbols({"symbol": "BTC", "fast": 3}) == ["BTC"]
    assert scenario_symbols({"symbols": ["A", "B"], "symbol": "A"}) == ["A", "B"]
    assert scenario_symbols({"fast": 3, "symbol": None}) == ["TEST"]


def test_location_in_text_takes_the_innermost_user_frame():
    text = ('Traceback (most recent call last):\n  File "/u/a.py", line 3, in f\n'
            '  File "/u/b.py", line 9, in g\n  File "/lib/x.py", line 1, in h\nValueError\n')
    assert location_in_text(text, {"/u/a.py", "/u/b.py"}) == ("/u/b.py", 9)
    assert location_in_text("", {"/u/a.py"}) == (None, None)


def test_statuses_and_rendering():
    step = Step("syntax")
    step.warn(Problem("x", "careful"))
    assert step.status == "warn"
    step.fail(Problem("y", "broken", file="/a.py", line=2, column=5, hint="fix it"))
    step.warn(Problem("z", "later warning"))
    assert step.status == "fail"
    doc = document("/a.py", None, [step])
    assert doc["valid"] is False and doc["failed_steps"] == ["syntax"]
    text = render_text(doc)
    assert "/a.py:2:5: broken" in text and "hint: fix it" in text
    assert text.rstrip().endswith("INVALID: failed syntax")
