"""Shared fixtures: the real rustybt binary, temporary algorithms and generated data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pylib"))

from rustybt_api.testing import generate_bars, write_csv  # noqa: E402
# `ray_cluster`: one real local Ray cluster per session, started only when a test asks for it.
from tests.support.ray_cluster import ray_cluster  # noqa: E402,F401

BIN = Path(os.environ.get("RUSTYBT_BIN", ROOT / "target" / "release" / "rustybt"))
# The interpreter the binary runs with: the checkout's .venv, or under `make test-python-alt`
# the .venv-3.x of the version that build links.
VENV_PYTHON = Path(os.environ.get("RUSTYBT_PYTHON") or ROOT / ".venv" / "bin" / "python")
VENV = VENV_PYTHON.parent.parent


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    out: Path

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.out / "metrics.json").read_text())

    def csv_rows(self, name: str) -> list[dict[str, str]]:
        with (self.out / name).open() as f:
            return list(csv.DictReader(f))

    def assert_clean_failure(self) -> None:
        """A failure must be a message, never a Rust panic or backtrace."""
        assert "panicked" not in self.stderr, self.stderr
        assert "RUST_BACKTRACE" not in self.stderr, self.stderr
        assert "stack backtrace" not in self.stderr, self.stderr


@pytest.fixture(autouse=True, scope="session")
def private_data_catalog(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads or writes the machine's default catalog (~/.rustybt/data): commands that
    default to it (a live session's warm-up, `data` without `--catalog`) get an empty one."""
    os.environ["RUSTYBT_DATA"] = str(tmp_path_factory.mktemp("default-catalog"))


@pytest.fixture(scope="session")
def binary() -> Path:
    if not BIN.exists():
        pytest.fail(f"{BIN} is missing: build it with `make build` (or set RUSTYBT_BIN)")
    return BIN


@pytest.fixture
def run_rustybt(binary: Path, tmp_path: Path) -> Callable[..., RunResult]:
    counter = iter(range(1_000_000))

    def run(
        *args: str | Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 300,
        out: Path | None = None,
    ) -> RunResult:
        argv = [str(binary), *map(str, args)]
        if out is None:
            out = tmp_path / f"out{next(counter)}"
        if args and args[0] == "run" and "--out" not in args:
            argv += ["--out", str(out)]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env if env is not None else {**os.environ, "NO_COLOR": "1"},
            cwd=cwd or ROOT,
        )
        return RunResult(proc.returncode, proc.stdout, proc.stderr, out)

    return run


@pytest.fixture
def write_algo(tmp_path: Path) -> Callable[[str, str], Path]:
    """Writes a dedented algorithm source to tmp_path/<name>.py."""

    def write(source: str, name: str = "algo") -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def bars_csv(tmp_path: Path) -> Callable[..., Path]:
    """Generates a deterministic bar file; returns its path."""

    def make(rows: int = 2000, seed: int = 7, name: str = "TEST", **kwargs: Any) -> Path:
        return write_csv(tmp_path / f"{name}.csv", generate_bars(rows, seed=seed, **kwargs))

    return make


def read_bars(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))
