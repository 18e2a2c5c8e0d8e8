"""The embedded interpreter: version, doctor, and the same interpreter whatever PATH is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import BIN, ROOT, VENV, VENV_PYTHON


def _doctor_fields(stdout: str) -> dict[str, str]:
    fields = {}
    for line in stdout.splitlines():
        if ":" in line and not line.startswith(" "):
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def test_version_prints_rustybt_and_python(run_rustybt):
    result = run_rustybt("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "rustybt 0.1.0"
    assert lines[1].startswith("python 3.")


def test_doctor_reports_interpreter_and_packages(run_rustybt):
    result = run_rustybt("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    fields = _doctor_fields(result.stdout)
    assert fields["interpreter"] == str(VENV_PYTHON)
    assert fields["sys.prefix"] == str(VENV)
    for package in ("numpy", "TA-Lib", "ccxt"):
        assert any(l.strip().startswith(f"ok       {package}") for l in result.stdout.splitlines()), package
    assert str(ROOT / "pylib") in result.stdout


def test_interpreter_is_the_same_with_a_bare_path(binary, tmp_path):
    normal = subprocess.run([binary, "doctor"], capture_output=True, text=True, cwd=ROOT)
    assert normal.returncode == 0, normal.stdout + normal.stderr
    for path in ("/usr/bin:/bin", ""):
        bare = subprocess.run(
            [binary, "doctor"], capture_output=True, text=True, cwd=tmp_path, env={"PATH": path}
        )
        assert bare.returncode == 0, bare.stdout + bare.stderr
        want, got = _doctor_fields(normal.stdout), _doctor_fields(bare.stdout)
        for key in ("interpreter", "sys.executable", "sys.prefix", "sys.base_prefix", "python version"):
            assert got[key] == want[key], key
        assert "ok       numpy" in bare.stdout


def test_virtual_env_variable_is_honoured(binary, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VIRTUAL_ENV": str(VENV)}
    result = subprocess.run([binary, "doctor"], capture_output=True, text=True, cwd=tmp_path, env=env)
    fields = _doctor_fields(result.stdout)
    assert fields["chosen from"] == "VIRTUAL_ENV"
    assert fields["sys.prefix"] == str(VENV)


def _venv_of_another_version(folder: Path) -> Path:
    """A virtualenv whose pyvenv.cfg names a Python this binary does not embed."""
    venv = folder / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.9.18\n")
    return venv


def test_a_venv_of_another_python_version_is_passed_over(binary, tmp_path):
    # Before the fix a binary linked to 3.11 embedded the nearest .venv whatever its version,
    # and then failed to import that venv's numpy (built for another version).
    venv = _venv_of_another_version(tmp_path)
    result = subprocess.run(
        [binary, "doctor"], capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    fields = _doctor_fields(result.stdout)
    assert fields["interpreter"] != str(venv / "bin" / "python")
    assert f"passed over: {venv} is Python 3.9 but this rustybt embeds Python 3." in fields["chosen from"]
    assert "ok       numpy" in result.stdout


def test_an_explicit_interpreter_of_another_version_is_refused(binary, tmp_path):
    venv = _venv_of_another_version(tmp_path)
    python = venv / "bin" / "python"
    result = subprocess.run([binary, "--python", str(python), "doctor"], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"interpreter `{python}` is Python 3.9 but this rustybt embeds Python 3." in result.stderr
    assert "rebuild rustybt against this one" in result.stderr


def test_missing_explicit_interpreter_is_a_clear_error(binary):
    result = subprocess.run(
        [binary, "--python", "/nonexistent/python", "doctor"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "interpreter `/nonexistent/python` does not exist" in result.stderr


SLOW_ALGO = """
import time
from rustybt_api import Algorithm

class Slow(Algorithm):
    def initialize(self, ctx):
        print("started", flush=True)

    def on_tick(self, ctx):
        time.sleep(0.002)
        if ctx.portfolio.position(ctx.symbols[0]) == 0:
            self.buy(ctx.symbols[0], 1)
"""


def test_ctrl_c_stops_cleanly_and_writes_partial_results(binary, tmp_path):
    algo = tmp_path / "slow.py"
    algo.write_text(SLOW_ALGO)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [binary, "run", "--algo", algo, "--out", out, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "panicked" not in stderr
    assert "interrupted" in stderr
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    assert metrics["partial"] is True
    rows = (out / "equity.csv").read_text().splitlines()
    assert 10 < len(rows) < 3 * 7 * 24 * 60
    assert "Status: interrupted" in stdout or "interrupted" in stdout.lower()


def test_doctor_and_version_into_a_closed_pipe_do_not_panic(binary):
    # `rustybt doctor | head -1`: the reader goes away before rustybt writes. Before the fix,
    # println! panicked on the broken pipe.
    for args in (["doctor"], ["--version"]):
        proc = subprocess.Popen(
            [str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
        assert "panicked" not in stderr, stderr
        assert code in (0, 2), (args, code, stderr)
