"""`rustybt_api.results`: a results folder in pandas (no engine), `results.run` through the
binary, and the example notebook executed end to end with nbclient."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from rustybt_api import results

SMA = ROOT / "algorithms" / "sma_cross.py"


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def check_equals_files(r: results.Results) -> None:
    """Every table equals its CSV file value for value (Decimal for money, UTC times)."""
    folder = r.path
    for name, frame in (("equity", r.equity), ("fills", r.fills), ("trades", r.trades), ("orders", r.orders),
                        ("costs", r.costs)):
        expected = csv_rows(folder / f"{name}.csv")
        assert len(frame) == len(expected), name
        assert str(frame.index.tz) == "UTC" and frame.index.name == "time", name
        for (stamp, row), want in zip(frame.iterrows(), expected):
            index_column = "exit_time" if name == "trades" else "time"
            assert stamp == pd.Timestamp(want[index_column]), name
            for column, text in want.items():
                if column == "time":
                    continue
                got = row[column]
                if column in results.MONEY_COLUMNS:
                    assert got == (Decimal(text) if text else None), (name, column)
                    assert got is None or isinstance(got, Decimal)
                elif column in ("entry_time", "exit_time"):
                    assert got == pd.Timestamp(text)
                elif column == "order_id":
                    assert int(got) == int(text)
                else:
                    assert ("" if pd.isna(got) else got) == text, (name, column)
    if (folder / "records.csv").exists():
        expected = csv_rows(folder / "records.csv")
        assert [(t, n, v) for t, n, v in zip(r.records.index, r.records["name"], r.records["value"])] == [
            (pd.Timestamp(e["time"]), e["name"], float(e["value"])) for e in expected]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert r.metrics["final_equity"] == Decimal(metrics["final_equity"])
    assert r.metrics["num_trades"] == metrics["num_trades"]
    assert r.metrics["orders.filled"] == metrics["orders"]["filled"]
    assert r.info == metrics["run"] and r.unavailable == metrics.get("unavailable", {})


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, binary) -> Path:
    out = tmp_path_factory.mktemp("results") / "run"
    config = out.parent / "costs.toml"
    config.write_text('[commission]\nrate = "0.001"\nminimum = "0.5"\n')
    done = subprocess.run([str(binary), "run", "--algo", str(SMA), "--out", str(out), "--config", str(config),
                           "--quiet", "--no-progress"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out


def test_load_equals_the_files(sample_run):
    r = results.load(sample_run)
    check_equals_files(r)
    assert len(r.costs) > 0 and r.costs["kind"].eq("commission").all()
    floats = results.as_float(r.equity)
    assert floats["equity"].dtype == "float64"
    assert floats["equity"].iloc[-1] == float(r.equity["equity"].iloc[-1])
    assert r.table("equity", money="float")["equity"].iloc[-1] == floats["equity"].iloc[-1]
    html = r._repr_html_()
    assert "SmaCross" in html and str(r.metrics["num_trades"]) in html


def test_load_works_without_the_engine(sample_run):
    # a plain interpreter with only pylib on the path: no _rustybt module anywhere
    code = ("import sys; sys.path.insert(0, %r); from rustybt_api import results; "
            "r = results.load(%r); assert '_rustybt' not in sys.modules; print(len(r.trades), r.metrics['num_trades'])"
            % (str(ROOT / "pylib"), str(sample_run)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    trades, count = done.stdout.split()
    assert trades == count


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nothing", "is not a results folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "has no metrics.json"),
])
def test_load_errors(tmp_path, make, message):
    with pytest.raises(results.ResultsError, match=message):
        results.load(make(tmp_path))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fast=st.integers(2, 8), gap=st.integers(2, 20), quantity=st.sampled_from(["1", "7", "250"]))
def test_run_returns_results_equal_to_the_files(binary, tmp_path, fast, gap, quantity):
    out = tmp_path / f"run-{fast}-{gap}-{quantity}"
    os.environ["RUSTYBT_BIN"] = str(binary)
    r = results.run(algo=SMA, params={"fast": fast, "slow": fast + gap, "quantity": quantity}, out=out,
                    progress=False, end="2024-01-03")
    assert r.info["parameters"] == {"fast": str(fast), "slow": str(fast + gap), "quantity": quantity}
    check_equals_files(r)


def test_run_reports_a_failure(binary, tmp_path, monkeypatch):
    monkeypatch.setenv("RUSTYBT_BIN", str(binary))
    with pytest.raises(results.ResultsError, match="need 0 < fast < slow"):
        results.run(algo=SMA, params={"fast": 9, "slow": 3}, out=tmp_path / "bad", progress=False)


def test_run_shows_progress(binary, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUSTYBT_BIN", str(binary))
    results.run(algo=SMA, out=tmp_path / "p", progress=True)
    err = capsys.readouterr().err
    # tqdm's bar (tqdm is installed with optuna) ends at "30240/30240"; the text line says it too.
    assert "backtest" in err and "30240/30240" in err


def test_run_shows_progress_as_text_without_tqdm(binary, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("RUSTYBT_BIN", str(binary))
    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    monkeypatch.setattr("importlib.import_module", lambda name, *a: no_tqdm(name))
    results.run(algo=SMA, out=tmp_path / "p", progress=True)
    err = capsys.readouterr().err
    assert "backtest" in err and "30240/30240 bars (100%)" in err


def test_the_example_notebook_runs(binary, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("RUSTYBT_BIN", str(binary))
    notebook = nbformat.read(ROOT / "examples" / "results.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "examples")}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("rustybt results" in h for h in html)  # the summary
    assert any("<iframe srcdoc=" in h and "Plotly.newPlot" in h for h in html)  # the report inline
    assert any("fast=5 slow=15" in h for h in html)  # the comparison table


RECORD_ERRORS = '''
from rustybt_api import Algorithm


class Bad(Algorithm):
    which = "empty"

    def on_tick(self, ctx):
        if self.which == "empty":
            self.record("", 1.0)
        else:
            self.record(3, 1.0)
'''


@pytest.mark.parametrize("which, message", [
    ("empty", "ValueError: record() needs a non-empty name"),
    ("number", "TypeError: record() needs a str name, got int"),
])
def test_record_errors_name_the_problem(binary, tmp_path, which, message):
    algo = tmp_path / "bad.py"
    algo.write_text(RECORD_ERRORS)
    done = subprocess.run([str(binary), "run", "--algo", str(algo), "--param", f"which={which}", "--out",
                           str(tmp_path / "out"), "--quiet", "--no-progress"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 1
    assert message in done.stderr and "bad.py" in done.stderr


def test_record_outside_an_engine():
    from rustybt_api import Algorithm, Indicator, NotAttachedError

    with pytest.raises(NotAttachedError):
        Algorithm().record("x", 1.0)
    indicator = Indicator()
    indicator.record("width", 2)
    indicator.record("width", 2.5)
    assert indicator.recorded == [("width", 2.0), ("width", 2.5)]  # type: ignore[attr-defined]


def test_a_run_without_records_writes_no_records_file(sample_run):
    assert not (sample_run / "records.csv").exists() and not (sample_run / "records.parquet").exists()
    assert results.load(sample_run).records.empty
