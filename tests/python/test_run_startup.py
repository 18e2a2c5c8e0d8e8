"""The start of `rustybt run`: the algorithm is imported while the data loads (issue 14, first
`on_tick`). What overlaps must not change what the user sees: a data error is still the one
reported and nothing trades, an algorithm's error still names its file and line, a failed
import leaves no results folder, and `--watch` still waits for a fix after a broken first load.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALGORITHM_ERROR, DATA_ERROR = 1, 3

# Writes a file when its module body runs: shows whether the import happened at all.
MARKING = """
from pathlib import Path
from rustybt_api import Algorithm

Path({marker!r}).write_text("imported")


class Marking(Algorithm):
    def on_tick(self, ctx):
        pass
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return tmp_path / "catalog"


@pytest.fixture
def imported(run_rustybt: Callable[..., Any], bars_csv: Callable[..., Path], catalog: Path) -> str:
    """A dataset of three monthly partitions (decoded on several threads, long enough for the
    interpreter start to overlap it)."""
    path = bars_csv(rows=60_000, seed=5, start=dt.datetime(2024, 1, 20, tzinfo=dt.timezone.utc))
    result = run_rustybt("data", "import", path, "--catalog", catalog)
    assert result.returncode == 0 and "(3 partitions written)" in result.stdout, result.stderr
    return "TEST"


def bad_dataset(run_rustybt: Callable[..., Any], catalog: Path, tmp_path: Path) -> str:
    """A dataset with a zero price: stored with a validation error that blocks a run."""
    lines = ["timestamp,open,high,low,close,volume"]
    t0 = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    for i in range(120):
        price = "0" if i == 60 else "100.00"
        t = (t0 + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{t},{price},{price},{price},{price},5")
    path = tmp_path / "BAD.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run_rustybt("data", "import", path, "--timeframe", "1m", "--catalog", catalog)
    assert result.returncode == 0 and "1 error" in result.stderr, result.stderr
    return "BAD"


@pytest.mark.parametrize("algorithm", ["good", "syntax error", "failing import"])
def test_a_bad_dataset_is_refused_with_its_message_whatever_the_algorithm(
    run_rustybt: Callable[..., Any], write_algo: Callable[..., Path], catalog: Path, tmp_path: Path, algorithm: str
) -> None:
    symbol = bad_dataset(run_rustybt, catalog, tmp_path)
    source = {
        "good": MARKING.format(marker=str(tmp_path / "marker")),
        "syntax error": "from rustybt_api import Algorithm\n\nclass A(Algorithm)\n    pass\n",
        "failing import": "import rustybt_no_such_module\n",
    }[algorithm]
    algo = write_algo(source)
    result = run_rustybt("run", "--algo", algo, "--symbols", symbol, "--catalog", catalog, "--no-progress")
    assert result.returncode == DATA_ERROR, result.stderr
    result.assert_clean_failure()
    assert "BAD" in result.stderr and "1 validation error" in result.stderr
    assert "open 0.00 at 2024-01-02T01:00:00Z" in result.stderr
    assert "--allow-bad-data" in result.stderr
    # Only the data's error: the algorithm's own (if any) is not reported over it.
    assert "SyntaxError" not in result.stderr and "ModuleNotFoundError" not in result.stderr
    assert not result.out.exists(), "nothing ran, so no results folder"


def test_a_syntax_error_names_its_file_and_line_while_the_catalog_loads(
    run_rustybt: Callable[..., Any], write_algo: Callable[..., Path], catalog: Path, imported: str
) -> None:
    algo = write_algo("from rustybt_api import Algorithm\n\n\nclass A(Algorithm)\n    pass\n")
    result = run_rustybt("run", "--algo", algo, "--symbols", imported, "--catalog", catalog, "--no-progress")
    assert result.returncode == ALGORITHM_ERROR, result.stderr
    result.assert_clean_failure()
    assert "SyntaxError in `loading`" in result.stderr
    assert f"{algo}:4:" in result.stderr
    assert not result.out.exists()


@pytest.mark.parametrize("source", ["catalog", "csv"])
def test_an_import_failure_while_data_loads_leaves_no_results(
    run_rustybt: Callable[..., Any], write_algo: Callable[..., Path], bars_csv: Callable[..., Path],
    catalog: Path, imported: str, source: str
) -> None:
    algo = write_algo(
        """
        from rustybt_api import Algorithm
        import rustybt_no_such_module


        class A(Algorithm):
            pass
        """
    )
    data = (["--symbols", imported, "--catalog", str(catalog)] if source == "catalog"
            else ["--data", str(bars_csv(rows=5000, name="CSV"))])
    result = run_rustybt("run", "--algo", algo, *data, "--no-progress")
    assert result.returncode == ALGORITHM_ERROR, result.stderr
    result.assert_clean_failure()
    assert "ModuleNotFoundError" in result.stderr and "rustybt_no_such_module" in result.stderr
    assert f"{algo}:3" in result.stderr
    assert not result.out.exists(), "no half-written results"


def test_the_algorithm_imported_during_the_load_runs_once(
    run_rustybt: Callable[..., Any], write_algo: Callable[..., Path], catalog: Path, imported: str, tmp_path: Path
) -> None:
    # The module body runs once (during the load), and the run's results are complete.
    marker = tmp_path / "marker"
    algo = write_algo(
        f"""
        from rustybt_api import Algorithm

        with open({str(marker)!r}, "a") as f:
            f.write("x")


        class Once(Algorithm):
            def on_tick(self, ctx):
                pass
        """
    )
    result = run_rustybt("run", "--algo", algo, "--symbols", imported, "--catalog", catalog, "--no-progress",
                         "--quiet")
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "x"
    assert result.metrics()["run"]["bars_processed"] == 60_000


def test_watch_waits_for_a_fix_after_a_broken_first_load(
    binary: Path, write_algo: Callable[..., Path], catalog: Path, imported: str, tmp_path: Path
) -> None:
    algo = write_algo("class Broken(:\n", name="watched")
    proc = subprocess.Popen(
        [binary, "run", "--algo", algo, "--symbols", imported, "--catalog", catalog, "--out", tmp_path / "out",
         "--watch", "--no-progress", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stderr is not None
    seen: list[str] = []

    def wait_for(needle: str) -> None:
        while True:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError(f"never saw {needle!r}:\n{''.join(seen)}")
            seen.append(line)
            if needle in line:
                return

    try:
        wait_for("SyntaxError")
        wait_for("watching")
        algo.write_text(textwrap.dedent(
            """
            from rustybt_api import Algorithm

            class Fixed(Algorithm):
                def on_tick(self, ctx):
                    pass
            """
        ))
        wait_for("running again")
        wait_for("watching")
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, rest = proc.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert proc.returncode == 0, stderr
    assert "panicked" not in stderr
    assert (tmp_path / "out" / "metrics.json").exists(), stderr
