"""`rustybt run --debug`: a real debugpy inside the real binary, driven by a DAP client the way an
IDE attaches, and every way starting the debugger can fail."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import textwrap
import threading
import time
import venv
from pathlib import Path

import pytest

from conftest import ROOT, read_bars
from dap_client import DapClient

ALGORITHM = """
from rustybt_api import Algorithm


class Probe(Algorithm):
    def initialize(self, ctx):
        self.ticks = 0

    def on_tick(self, ctx):
        self.ticks += 1
        count = self.ticks * 10
        self.last = count  # BREAK
"""

INDICATOR = """
from rustybt_api import Indicator


class Doubled(Indicator):
    def update(self, bar):
        doubled = bar.close * 2
        return doubled  # BREAK
"""

INDICATOR_ALGORITHM = """
from rustybt_api import Algorithm
from indicators.doubled import Doubled


class UsesDoubled(Algorithm):
    def initialize(self, ctx):
        self.doubled = self.indicator(Doubled, "TEST")

    def on_tick(self, ctx):
        pass
"""


def break_line(path: Path) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if "# BREAK" in line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DebuggedRun:
    """`rustybt run --debug ...` in the background; stderr is read on a thread so the pipe never
    fills, and the process is killed by `stop()` whatever happened."""

    def __init__(self, binary: Path, *args: str | Path) -> None:
        self.proc = subprocess.Popen(
            [str(binary), "run", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.stdout = ""
        self._stdout_parts: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.lines.put), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout, self._stdout_parts.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(stream, put) -> None:
        for line in stream:
            put(line)

    def wait_for_line(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.stderr.append(line)
            if needle in line:
                return line
        raise AssertionError(f"never saw {needle!r} on stderr:\n{''.join(self.stderr)}")

    def finish(self, timeout: float = 120) -> int:
        """Waits for the exit and for both pipes to close: nothing else (debugpy's adapter,
        which outlives the run while a client is attached) may hold them open."""
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
            assert not reader.is_alive(), "an output pipe stayed open after rustybt exited"
        self.stdout = "".join(self._stdout_parts)
        while not self.lines.empty():
            self.stderr.append(self.lines.get())
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def attach_and_stop(client: DapClient, path: Path, line: int) -> tuple[int, dict, dict[str, str]]:
    """Attaches with one breakpoint, waits for the stop there; returns thread, frame, locals."""
    client.attach({str(path): [line]}, justMyCode=True)
    stopped = client.event("stopped", timeout=60)
    assert stopped["reason"] == "breakpoint", stopped
    frame = client.top_frame(stopped["threadId"])
    return stopped["threadId"], frame, client.locals_of(frame["id"])


def resume_to_end(client: DapClient, thread_id: int, path: Path) -> None:
    """Clears the breakpoints (so the run completes), continues and detaches."""
    client.set_breakpoints(str(path), [])
    client.request("continue", threadId=thread_id)
    try:
        client.request("disconnect", timeout=10)
    except AssertionError:
        pass  # the run may end, closing the connection, before the answer


def test_breakpoint_in_on_tick_stops_with_locals_and_run_completes(binary, tmp_path, write_algo, bars_csv):
    algo = write_algo(ALGORITHM)
    data = bars_csv(rows=40)
    out = tmp_path / "out"
    port = free_port()
    run = DebuggedRun(binary, "--algo", algo, "--data", data, "--out", out, "--no-progress",
                      "--debug", "--wait-for-client", "--debug-port", str(port))
    client = None
    try:
        listening = run.wait_for_line("listening on")
        assert f"127.0.0.1:{port}" in listening
        run.wait_for_line("waiting for a debugger to attach")
        client = DapClient("127.0.0.1", port)
        line = break_line(algo)
        thread_id, frame, local_values = attach_and_stop(client, algo, line)
        assert frame["source"]["path"] == str(algo)
        assert frame["line"] == line
        assert frame["name"] == "on_tick"
        # First tick: the line has not run yet, `count` has.
        assert local_values["count"] == "10", local_values
        assert "self" in local_values
        resume_to_end(client, thread_id, algo)
        assert run.finish() == 0, "".join(run.stderr)
    finally:
        if client:
            client.close()
        run.stop()
    assert "debugger attached" in "".join(run.stderr)
    metrics = (out / "metrics.json").read_text()
    assert '"status": "complete"' in metrics
    assert '"ticks_processed": 40' in metrics
    assert "total return" in run.stdout.lower()


def test_breakpoint_in_an_indicators_module(binary, tmp_path, bars_csv):
    project = tmp_path / "project"
    (project / "algorithms").mkdir(parents=True)
    (project / "indicators").mkdir()
    (project / "indicators" / "__init__.py").write_text("")
    indicator = project / "indicators" / "doubled.py"
    indicator.write_text(textwrap.dedent(INDICATOR))
    algo = project / "algorithms" / "uses_doubled.py"
    algo.write_text(textwrap.dedent(INDICATOR_ALGORITHM))
    data = bars_csv(rows=30)
    first_close = float(read_bars(data)[0]["close"])
    out = tmp_path / "out"
    port = free_port()
    run = DebuggedRun(binary, "--algo", algo, "--data", data, "--out", out, "--no-progress",
                      "--debug", "--wait-for-client", "--debug-port", str(port))
    client = None
    try:
        run.wait_for_line("waiting for a debugger to attach")
        client = DapClient("127.0.0.1", port)
        line = break_line(indicator)
        thread_id, frame, local_values = attach_and_stop(client, indicator, line)
        # The module imported from indicators/ maps to its real file.
        assert frame["source"]["path"] == str(indicator)
        assert frame["line"] == line
        assert frame["name"] == "update"
        assert float(local_values["doubled"]) == pytest.approx(first_close * 2), local_values
        resume_to_end(client, thread_id, indicator)
        assert run.finish() == 0, "".join(run.stderr)
    finally:
        if client:
            client.close()
        run.stop()
    assert (out / "metrics.json").is_file()


def test_breakpoints_stop_in_code_reloaded_by_pace(binary, tmp_path, write_algo, bars_csv):
    algo = write_algo(ALGORITHM)
    line = break_line(algo)
    out = tmp_path / "out"
    port = free_port()
    run = DebuggedRun(binary, "--algo", algo, "--data", bars_csv(rows=40), "--out", out,
                      "--no-progress", "--pace", "20ms", "--debug", "--wait-for-client",
                      "--debug-port", str(port))
    client = None
    try:
        run.wait_for_line("waiting for a debugger to attach")
        client = DapClient("127.0.0.1", port)
        thread_id, _, local_values = attach_and_stop(client, algo, line)
        assert local_values["count"] == "10"
        # Save new code with the breakpoint line unchanged; it is reloaded at a tick boundary.
        algo.write_text(textwrap.dedent(ALGORITHM).replace("self.ticks * 10", "self.ticks * 1000"))
        seen = []
        for _ in range(30):
            client.request("continue", threadId=thread_id)
            stopped = client.event("stopped", timeout=60)
            thread_id = stopped["threadId"]
            frame = client.top_frame(thread_id)
            assert (frame["source"]["path"], frame["line"]) == (str(algo), line)
            seen.append(int(client.locals_of(frame["id"])["count"]))
            if seen[-1] >= 1000:
                break
        # The new code runs with the old state: the tick count carried over.
        assert seen[-1] == 1000 * (len(seen) + 1), seen
        resume_to_end(client, thread_id, algo)
        assert run.finish() == 0, "".join(run.stderr)
    finally:
        if client:
            client.close()
        run.stop()
    assert "RELOAD  ok" in "".join(run.stderr)


def test_run_ends_while_the_client_stays_attached(binary, tmp_path, write_algo, bars_csv):
    algo = write_algo(ALGORITHM)
    out = tmp_path / "out"
    port = free_port()
    run = DebuggedRun(binary, "--algo", algo, "--data", bars_csv(rows=20), "--out", out,
                      "--no-progress", "--debug", "--wait-for-client", "--debug-port", str(port))
    client = None
    try:
        run.wait_for_line("waiting for a debugger to attach")
        client = DapClient("127.0.0.1", port)
        thread_id, _, local_values = attach_and_stop(client, algo, break_line(algo))
        assert local_values["count"] == "10"
        client.set_breakpoints(str(algo), [])
        client.request("continue", threadId=thread_id)
        # No disconnect: the run still ends, its output pipes close, the client is told.
        assert run.finish() == 0, "".join(run.stderr)
        client.event("terminated", timeout=30)
    finally:
        if client:
            client.close()
        run.stop()
    assert (out / "metrics.json").is_file()


def test_debug_without_a_client_runs_through_and_frees_the_port(run_rustybt, write_algo, bars_csv):
    port = free_port()
    result = run_rustybt("run", "--algo", write_algo(ALGORITHM), "--data", bars_csv(rows=20),
                         "--no-progress", "--debug", "--debug-port", str(port), timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"listening on 127.0.0.1:{port}" in result.stderr
    assert "waiting" not in result.stderr
    assert result.metrics()["status"] == "complete"
    # debugpy's adapter process must not outlive the run holding the port.
    deadline = time.monotonic() + 20
    while True:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.2)


def test_debug_port_0_picks_a_free_port(binary, write_algo, bars_csv, tmp_path):
    run = DebuggedRun(binary, "--algo", write_algo(ALGORITHM), "--data", bars_csv(rows=20),
                      "--out", tmp_path / "out", "--no-progress", "--debug", "--wait-for-client",
                      "--debug-port", "0")
    client = None
    try:
        line = run.wait_for_line("listening on")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        run.wait_for_line("waiting for a debugger")
        client = DapClient("127.0.0.1", port)
        client.attach({})
        client.request("disconnect", timeout=10)
        assert run.finish() == 0, "".join(run.stderr)
    finally:
        if client:
            client.close()
        run.stop()


def test_ctrl_c_while_waiting_for_a_client_exits_130(binary, write_algo, bars_csv, tmp_path):
    run = DebuggedRun(binary, "--algo", write_algo(ALGORITHM), "--data", bars_csv(rows=20),
                      "--out", tmp_path / "out", "--no-progress", "--debug", "--wait-for-client",
                      "--debug-port", str(free_port()))
    try:
        run.wait_for_line("waiting for a debugger to attach")
        run.proc.send_signal(signal.SIGINT)
        assert run.finish(timeout=30) == 130, "".join(run.stderr)
    finally:
        run.stop()
    assert "panicked" not in "".join(run.stderr)
    assert not (tmp_path / "out" / "metrics.json").exists()


# -- errors -----------------------------------------------------------------------------------


def test_port_in_use(run_rustybt, write_algo, bars_csv):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_rustybt("run", "--algo", write_algo(ALGORITHM), "--data", bars_csv(rows=20),
                             "--debug", "--debug-port", str(port), timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"error: cannot listen for a debugger on 127.0.0.1:{port}: the port is in use" in result.stderr
    assert "hint: choose another port with `--debug-port`" in result.stderr
    result.assert_clean_failure()
    assert not (result.out / "metrics.json").exists()


def test_debugpy_not_installed_names_the_pip_command(run_rustybt, write_algo, bars_csv, tmp_path):
    # A real interpreter without debugpy: a bare virtualenv of the same Python.
    bare = tmp_path / "bare-venv"
    venv.create(bare, with_pip=False)
    python = bare / "bin" / "python"
    result = run_rustybt("--python", python, "run", "--algo", write_algo(ALGORITHM),
                         "--data", bars_csv(rows=20), "--debug", timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"error: `--debug` needs debugpy, which is not installed in {python}" in result.stderr
    assert f"hint: install it with `{python} -m pip install debugpy`" in result.stderr
    result.assert_clean_failure()


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--wait-for-client"], "--wait-for-client"),
        (["--debug-port", "5678"], "--debug-port"),
        (["--debug-host", "127.0.0.1"], "--debug-host"),
    ],
)
def test_debug_flags_need_debug(run_rustybt, write_algo, flags, flag):
    result = run_rustybt("run", "--algo", write_algo(ALGORITHM), *flags)
    assert result.returncode == 2, result.stderr
    assert f"error: `{flag}` needs `--debug`" in result.stderr
    assert "hint: start the debugger with `rustybt run --debug ...`" in result.stderr
    result.assert_clean_failure()


@pytest.mark.parametrize("host", ["bad host!", "", "a..b", "host:5678"])
def test_malformed_debug_host(run_rustybt, write_algo, host):
    result = run_rustybt("run", "--algo", write_algo(ALGORITHM), "--debug", "--debug-host", host)
    assert result.returncode == 2, result.stderr
    assert f"error: invalid `--debug-host` `{host}`: not an IP address or a host name" in result.stderr
    assert "hint: give an IP address" in result.stderr
    result.assert_clean_failure()


def test_debug_host_not_on_this_machine(run_rustybt, write_algo, bars_csv):
    # 192.0.2.1 is TEST-NET-1: never assigned, so it cannot be bound. It is also not loopback.
    result = run_rustybt("run", "--algo", write_algo(ALGORITHM), "--data", bars_csv(rows=20),
                         "--debug", "--debug-host", "192.0.2.1", "--debug-port", str(free_port()),
                         timeout=120)
    assert result.returncode == 2, result.stderr
    assert "warning: the debugger will listen on 192.0.2.1 (not loopback)" in result.stderr
    assert "error: cannot listen for a debugger on 192.0.2.1:" in result.stderr
    assert "hint: `--debug-host` must be an address of this machine" in result.stderr
    result.assert_clean_failure()


def test_debug_port_out_of_range(run_rustybt, write_algo):
    result = run_rustybt("run", "--algo", write_algo(ALGORITHM), "--debug", "--debug-port", "70000")
    assert result.returncode == 2, result.stderr
    assert "--debug-port" in result.stderr and "70000" in result.stderr
    result.assert_clean_failure()
