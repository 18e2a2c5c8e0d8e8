"""The typing of the Python API: the Python stand-ins (``testing.BarArrays``) have the members
of the engine's objects, and ``pip install -e pylib`` gives editors the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from rustybt_api.testing import BarArrays, generate_bars


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
