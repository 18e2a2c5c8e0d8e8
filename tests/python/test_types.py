"""The typing of the Python API cannot drift from the engine: the Protocols of types.py against
the native classes (native_protocols.py, run inside the binary), the Literal types against the
engine's words, the Python stand-ins (``testing.BarArrays``), and ``pip install -e pylib``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Protocol, get_args

import numpy as np
import numpy.typing as npt
import pytest

from conftest import ROOT, RunResult
from native_protocols import matches, member_problems, value_problems
from rustybt_api.testing import BarArrays, generate_bars
from rustybt_api.types import MarketOn, OrderStatus, OrderType, Side, TimeInForce


@pytest.fixture
def bars() -> BarArrays:
    return BarArrays.from_bars(list(generate_bars(5, seed=7)))


def test_bar_arrays_time_is_a_datetime_view_of_time_ns(bars: BarArrays) -> None:
    assert bars.time.dtype == np.dtype("datetime64[ns]")
    assert np.shares_memory(bars.time, bars.time_ns)
    assert bars.time[1] - bars.time[0] == np.timedelta64(60, "s")


def test_bar_arrays_decimal_reads_one_value_like_the_engine(bars: BarArrays) -> None:
    first = next(iter(generate_bars(5, seed=7)))
    assert bars.decimal("open", 0) == first.open
    assert bars.decimal("close") == Decimal(repr(float(bars.close[-1])))
    with pytest.raises(ValueError, match="unknown field `price`"):
        bars.decimal("price")
    with pytest.raises(IndexError, match="bar index 5 out of range for 5 closed bars"):
        bars.decimal("close", 5)


def test_bar_arrays_to_pandas_is_indexed_by_utc_open_time(bars: BarArrays) -> None:
    frame = bars.to_pandas()
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert str(frame.index.tz) == "UTC"
    assert frame["close"].iloc[-1] == bars.close[-1]


def test_bar_arrays_window_keeps_symbol_timeframe_and_count() -> None:
    n = 4
    bars = BarArrays(
        np.arange(n, dtype=np.int64), np.ones(n), np.ones(n), np.ones(n), np.ones(n), np.ones(n),
        timeframe="1h", symbol="BTC", count=np.full(n, 60, dtype=np.int64),
    )
    part = bars.window(1, 3)
    assert (part.symbol, part.timeframe, len(part)) == ("BTC", "1h", 2)
    assert part.count is not None and list(part.count) == [60, 60]
    assert BarArrays.from_bars(list(generate_bars(2, seed=1))).count is None


# --- Literal types against the engine's words ---------------------------------------------------


def rust_words(path: str, pattern: str) -> set[str]:
    words = set(re.findall(pattern, (ROOT / path).read_text()))
    assert words, f"no match for {pattern} in {path}: update the pattern to the Rust code"
    return words


def as_str_words(enum: str) -> set[str]:
    """The strings of ``Enum::Variant => "word"`` arms in src/model/order.rs."""
    return rust_words("src/model/order.rs", rf'\b{enum}::\w+(?:\s*\{{[^}}]*\}}|\([^)]*\))?\s*=>\s*"(\w+)"')


@pytest.mark.parametrize(
    ("literal", "enum"),
    [(Side, "OrderSide"), (OrderType, "OrderKind"), (TimeInForce, "TimeInForce"), (OrderStatus, "OrderStatus")],
)
def test_literal_types_list_the_engines_words(literal: Any, enum: str) -> None:
    assert set(get_args(literal)) == as_str_words(enum)


def test_market_on_lists_the_words_of_at() -> None:
    words = rust_words("src/python/objects.rs", r'Some\("(\w+)"\)\)\s*=>\s*OrderKind::MarketOn')
    assert set(get_args(MarketOn)) == words


# --- Protocols against the native classes -------------------------------------------------------


class Handle(Protocol):
    @property
    def price(self) -> Decimal: ...
    @property
    def side(self) -> Side: ...
    def cancel(self, reason: str, *, now: bool = False) -> bool: ...
    def __len__(self) -> int: ...


def native(**members: Any) -> type:
    """A stand-in for a pyo3 class: getters are data descriptors, methods plain functions."""

    def cancel(self: Any, reason: str, *, now: bool = False) -> bool:
        return True

    body: dict[str, Any] = {
        "price": property(lambda self: Decimal("1.5")),
        "side": property(lambda self: "buy"),
        "cancel": cancel,
        "__len__": lambda self: 0,
    }
    body.update(members)
    return type("Native", (), {k: v for k, v in body.items() if v is not None})


def test_a_matching_class_has_no_problems() -> None:
    cls = native()
    assert member_problems(Handle, cls) == []
    assert value_problems(Handle, cls(), {}, globals()) == []


def test_a_member_renamed_on_the_native_side_is_reported_both_ways() -> None:
    problems = member_problems(Handle, native(price=None, fill_price=property(lambda self: Decimal(1))))
    assert problems == [
        "Handle (native test_types.Native): `price` is in the Protocol but not on the native class",
        "Handle (native test_types.Native): `fill_price` is on the native class but not in the Protocol",
    ]


def test_a_member_renamed_in_the_protocol_is_reported() -> None:
    class Renamed(Protocol):
        @property
        def px(self) -> Decimal: ...
        @property
        def side(self) -> Side: ...
        def cancel(self, reason: str, *, now: bool = False) -> bool: ...
        def __len__(self) -> int: ...

    problems = member_problems(Renamed, native())
    assert len(problems) == 2
    assert "`px` is in the Protocol but not" in problems[0] and "`price` is on the native" in problems[1]


def test_parameters_kinds_and_defaults_are_compared() -> None:
    def renamed(self: Any, why: str, *, now: bool = False) -> bool:
        return True

    def other_default(self: Any, reason: str, *, now: bool = True) -> bool:
        return True

    def positional(self: Any, reason: str, now: bool = False) -> bool:
        return True

    for cancel in (renamed, other_default, positional):
        [problem] = member_problems(Handle, native(cancel=cancel))
        assert "`cancel` takes [('reason', 'POSITIONAL_OR_KEYWORD', 'required'), ('now', 'KEYWORD_ONLY', 'False')]" in problem
    [problem] = member_problems(Handle, native(price=lambda self: Decimal(1)))
    assert "`price` is a property in the Protocol, a method on the native class" in problem
    [problem] = member_problems(Handle, native(__len__=None))
    assert "`__len__` is in the Protocol but not on the native class" in problem


def test_property_values_are_checked_against_the_annotations() -> None:
    cls = native(side=property(lambda self: "BUY"), price=property(lambda self: 1.5))
    problems = value_problems(Handle, cls(), {}, globals())
    assert problems == [
        "Handle.price is 1.5 (float), not <class 'decimal.Decimal'>",
        "Handle.side is 'BUY' (str), not typing.Literal['buy', 'sell']",
    ]


def test_matches_understands_the_annotations_of_types_py() -> None:
    array = np.zeros(3)
    assert matches(array, npt.NDArray[np.float64], {})
    assert not matches(array.astype(np.int64), npt.NDArray[np.float64], {})
    assert matches(None, npt.NDArray[np.int64] | None, {})
    assert matches({"BTC": Decimal(1)}, dict[str, Decimal], {})
    assert not matches({"BTC": 1.0}, dict[str, Decimal], {})
    assert matches(("A", "B"), tuple[str, ...], {})
    assert not matches(True, int, {})
    assert matches(object(), Handle, {Handle: object})
    assert not matches(native()(), Handle, {Handle: object})


def test_every_protocol_matches_the_native_class_the_engine_passes(run_rustybt: Callable[..., RunResult]) -> None:
    """Runs the probe of native_protocols.py inside the host, where `_rustybt` exists, with this
    tree's pylib (a RUSTYBT_BIN of another tree would otherwise bring its own)."""
    env = {**os.environ, "NO_COLOR": "1", "RUSTYBT_HOME": str(ROOT)}
    done = run_rustybt(
        "test", Path(__file__).with_name("native_protocols.py"), "--", "-q", "-p", "no:cacheprovider", env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


# --- The package --------------------------------------------------------------------------------


def test_pip_install_editable_gives_the_package_without_pythonpath(tmp_path: Path) -> None:
    """`pip install -e pylib`, offline: flit_core (pinned in requirements.txt) is the backend."""
    import flit_core

    pylib = ROOT / "pylib"
    before = sorted(p for p in pylib.rglob("*") if "__pycache__" not in p.parts)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)  # pip: ours
    backend = tmp_path / "backend"  # the build backend, alone on the path of the build
    shutil.copytree(Path(flit_core.__file__).parent, backend / "flit_core")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_INDEX_URL")}
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
         "--disable-pip-version-check", "--no-index", "--no-deps", "--no-build-isolation", "-e", pylib],
        env={**env, "PYTHONPATH": str(backend)}, capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    found = subprocess.run(
        [venv / "bin" / "python", "-c", "import rustybt_api, rustybt_api.types; print(rustybt_api.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    )
    assert Path(found.stdout.strip()) == pylib / "rustybt_api" / "__init__.py"
    after = sorted(p for p in pylib.rglob("*") if "__pycache__" not in p.parts)
    assert after == before, "the install wrote into pylib"
