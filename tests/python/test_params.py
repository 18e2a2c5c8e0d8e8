"""`Param`: parameters that declare the space `rustybt optimize` searches, and how `--param`
overrides are checked against it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rustybt_api import Algorithm, Param
from rustybt_api._parameters import ParameterError, parse_space
from rustybt_api.algorithm import apply_parameters, parameter_space_of, parameters_of


class Tuned(Algorithm):
    fast = Param(10, low=5, high=50, step=5)
    risk = Param(0.01, low=0.001, high=0.1, log=True)
    size = Param(Decimal("0.5"), low=Decimal("0.1"), high=Decimal("1.0"), step=Decimal("0.1"))
    kind = Param("ema", choices=["sma", "ema"])
    symbol = "SYNA"


def test_an_instance_reads_values_and_the_class_reads_params():
    algo = Tuned()
    assert algo.fast == 10 and type(algo.fast) is int
    assert isinstance(Tuned.fast, Param) and Tuned.fast.name == "fast"
    algo.fast = 20
    assert algo.fast == 20 and Tuned().fast == 10  # per instance, the class keeps its default


def test_parameters_of_gives_defaults_and_the_space_gives_params():
    assert parameters_of(Tuned) == {
        "fast": 10, "risk": 0.01, "size": Decimal("0.5"), "kind": "ema", "symbol": "SYNA",
    }
    space = parameter_space_of(Tuned)
    assert {n: p.kind for n, p in space.items()} == {
        "fast": "int", "risk": "float", "size": "decimal", "kind": "categorical", "symbol": "fixed",
    }


def test_grid_values_are_exact():
    space = parameter_space_of(Tuned)
    assert space["fast"].values() == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert space["size"].values() == [Decimal(f"0.{i}") for i in range(1, 10)] + [Decimal("1.0")]
    assert Param(0.1, low=0.1, high=0.3, step=0.1).values() == [0.1, 0.2, 0.3]  # no 0.30000000000000004
    assert space["kind"].values() == ["sma", "ema"]
    assert space["symbol"].values() == ["SYNA"]
    with pytest.raises(ValueError, match="has no step"):
        space["risk"].values()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Param(10, low=5), "both low and high"),
        (lambda: Param(10, low=50, high=5), "must be below high"),
        (lambda: Param(60, low=5, high=50), "outside"),
        (lambda: Param(10, low=5, high=50, step=0), "step 0 must be positive"),
        (lambda: Param(10, low=5, high=50, step=2.5), "is a float but the default is a int"),
        (lambda: Param(0.5, low=0.0, high=1.0, log=True), "log=True needs low > 0"),
        (lambda: Param("a", low="a", high="z"), "need a number default"),
        (lambda: Param("x", choices=["a", "b"]), "not one of choices"),
        (lambda: Param(1, choices=[1, 2], low=1, high=2), "either choices or low/high"),
        (lambda: Param(1, step=1), "need low and high"),
    ],
)
def test_bad_declarations_are_refused_when_the_class_is_made(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_overrides_are_converted_and_checked_against_the_space():
    algo = Tuned()
    effective = apply_parameters(algo, [("fast", "15"), ("size", "0.30"), ("kind", "sma")])
    assert algo.fast == 15 and algo.size == Decimal("0.30") and algo.kind == "sma"
    assert effective["fast"] == "15" and effective["size"] == "Decimal('0.30')"
    with pytest.raises(ParameterError, match=r"`fast`: 55 is outside the declared range \[5, 50\]"):
        apply_parameters(Tuned(), [("fast", "55")])
    with pytest.raises(ParameterError, match=r"`kind`: `wma` is not one of \['sma', 'ema'\]"):
        apply_parameters(Tuned(), [("kind", "wma")])
    with pytest.raises(ParameterError, match="unknown parameter `slow`") as err:
        apply_parameters(Tuned(), [("slow", "3")])
    assert err.value.hint == "parameters of `Tuned`: fast, risk, size, kind, symbol"


def test_command_line_spaces():
    fast = Tuned.fast
    grid = parse_space(fast, "5:20:5")
    assert grid.values() == [5, 10, 15, 20] and grid.name == "fast"
    assert parse_space(fast, "30:60").kind == "int" and parse_space(fast, "30:60").default == 30
    assert parse_space(fast, "5,8,13").values() == [5, 8, 13]
    assert parse_space(fast, "7").kind == "fixed"
    assert parse_space(Tuned.kind, "sma").values() == ["sma"]
    assert parse_space(Tuned.risk, "0.01:0.2").log  # the declared scale is kept
    for bad in ("5:x", "1:2:3:4", "50:5"):
        with pytest.raises(ParameterError, match="invalid space for parameter `fast`"):
            parse_space(fast, bad)
    with pytest.raises(ParameterError):
        parse_space(Tuned.kind, "sma,wma")


@given(
    low=st.integers(-1000, 1000),
    width=st.integers(1, 500),
    step=st.integers(1, 50),
)
def test_an_int_grid_covers_the_range_in_steps(low, width, step):
    param = Param(low, low=low, high=low + width, step=step)
    values = param.values()
    assert values[0] == low and values[-1] <= low + width < values[-1] + step
    assert all(b - a == step for a, b in zip(values, values[1:]))
    for value in values:
        param.check(value)


@given(
    low=st.decimals(min_value=-100, max_value=100, places=3, allow_nan=False, allow_infinity=False),
    steps=st.integers(1, 40),
    step=st.decimals(min_value=Decimal("0.001"), max_value=5, places=3),
)
def test_a_decimal_grid_is_exact(low, steps, step):
    high = low + steps * step
    values = Param(low, low=low, high=high, step=step).values()
    assert values == [low + i * step for i in range(steps + 1)]


ALGO = """
from rustybt_api import Algorithm, Param

class Tuned(Algorithm):
    fast = Param(10, low=5, high=50, step=5)
    kind = Param("sma", choices=["sma", "ema"])

    def on_tick(self, ctx):
        pass
"""


def test_run_takes_an_override_inside_the_space(run_rustybt, bars_csv, tmp_path):
    algo = tmp_path / "tuned.py"
    algo.write_text(ALGO)
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=300), "--param", "fast=15",
                         "--param", "kind=ema")
    assert result.returncode == 0, result.stderr
    params = json.loads((result.out / "metrics.json").read_text())["run"]["parameters"]
    assert params == {"fast": "15", "kind": "'ema'"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("fast=55", "invalid value for parameter `fast`: 55 is outside the declared range [5, 50]"),
        ("kind=wma", "invalid value for parameter `kind`: `wma` is not one of ['sma', 'ema']"),
        ("slow=3", "unknown parameter `slow` for `Tuned`"),
    ],
)
def test_run_refuses_an_override_outside_the_space(run_rustybt, bars_csv, tmp_path, override, message):
    algo = tmp_path / "tuned.py"
    algo.write_text(ALGO)
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=300), "--param", override)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
