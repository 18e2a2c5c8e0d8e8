"""The Ray side of ``rustybt optimize --executor ray``: one Ray actor per worker slot, each relaying
trial requests to its own ``rustybt optimize worker --study DIR`` process.

The Rust study driver owns the search, the store and the order of results; it calls this object the
way it talks to forked local workers (``src/optimize/worker.rs``): one JSON line in, one JSON line out
per trial. Ray only places the worker processes on the cluster's nodes and carries the lines, so
every node needs the same rustybt checkout, study folder and data paths.
"""

from __future__ import annotations

import importlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

__all__ = ["RayExecutor", "RayExecutorError"]

# How long a new cluster may take to start an actor (a fresh Python worker per node).
_ACTOR_START_S = 120.0
# How much of a dead worker's stderr its error message keeps.
_STDERR_TAIL = 4000
_START_HINT = (
    "start a cluster with `ray start --head --port PORT` on the head node (and "
    "`ray start --address HEAD:PORT` on each other node), then pass `--address HEAD:PORT`"
)


class RayExecutorError(Exception):
    """The cluster cannot run the study (not reachable, too small, or a worker cannot start).

    ``hint`` says what to do about it (the Rust side prints it as the error's hint).
    """

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _ray() -> Any:
    # Ray ships type information that does not describe its `remote` decorators; it is imported
    # as `Any` here, and only when a study runs on Ray (importing it takes about a second).
    return importlib.import_module("ray")


class _Relay:
    """Runs inside a Ray actor: owns one worker process and relays lines to it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **env},
        )
        self._lock = threading.Lock()

    def pid(self) -> int:
        return self._process.pid

    def ask(self, line: str) -> tuple[str | None, str | None]:
        """The worker's answer to one request line, or why it has none."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        with self._lock:
            try:
                stdin.write(line.encode() + b"\n")
                stdin.flush()
                answer = stdout.readline()
            except (BrokenPipeError, ValueError):  # ValueError: the pipe was closed by stop()
                answer = b""
            if answer.endswith(b"\n"):
                return answer.decode().rstrip("\n"), None
        return None, self._exit_reason()

    def _exit_reason(self) -> str:
        try:
            code = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "closed its output but did not exit"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL))
        tail = self._stderr.read().decode(errors="replace").strip()
        return f"{how}: {tail}" if tail else how

    def stop(self) -> None:
        """Ends the worker: the end of its input first (it exits after its trial), then a kill."""
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _check_reachable(address: str) -> None:
    """Fails at once, with a hint, when nothing listens at `address` (ray.init would retry)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayExecutorError(f"`{address}` is not a Ray address of the form HOST:PORT", _START_HINT)
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise RayExecutorError(f"no Ray cluster answers at {address}: {err.strerror or err}", _START_HINT) from None


class RayExecutor:
    """Worker slots on a Ray cluster, one actor (one CPU) each."""

    def __init__(self, address: str, study_dir: str, binary: str, workers: int | None, python: str | None) -> None:
        _check_reachable(address)
        ray = self._ray = _ray()
        # The relay travels by value, so the cluster's Python does not need rustybt_api on its path.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        if not getattr(sys, "argv", None):  # an embedded interpreter may have none; Ray reads it
            sys.argv = ["rustybt"]
        try:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        except Exception as err:
            raise RayExecutorError(f"cannot join the Ray cluster at {address}: {_summary(err)}", _START_HINT) from None
        try:
            self._start(study_dir, binary, workers, python)
        except BaseException:
            self.close()
            raise

    def _start(self, study_dir: str, binary: str, workers: int | None, python: str | None) -> None:
        ray = self._ray
        cpus = int(ray.cluster_resources().get("CPU", 0))
        count = cpus if workers is None else workers
        if count < 1 or count > cpus:
            raise RayExecutorError(
                f"the Ray cluster has {cpus} CPU{'s' if cpus != 1 else ''}: it cannot run {count} worker{'s' if count != 1 else ''}",
                "each worker takes one CPU: add nodes with `ray start --address HEAD:PORT`, or ask for fewer with `-j N`",
            )
        env = {"RUSTYBT_PYTHON": python} if python else {}
        argv = [binary, "optimize", "worker", "--study", study_dir]
        # Two threads per actor: `stop` must reach a worker while `ask` waits for its trial.
        relay = ray.remote(num_cpus=1, max_concurrency=2)(_Relay)
        self._actors: dict[int, Any] = {slot: relay.remote(argv, env) for slot in range(count)}
        self._running: dict[Any, int] = {}
        started = [actor.pid.remote() for actor in self._actors.values()]
        try:
            ray.get(started, timeout=_ACTOR_START_S)
        except ray.exceptions.GetTimeoutError:
            raise RayExecutorError(f"the Ray cluster did not start {count} workers in {_ACTOR_START_S:.0f} s",
                                   "check the nodes with `ray status --address HEAD:PORT`") from None
        except ray.exceptions.RayError as err:
            raise RayExecutorError(f"cannot start `{binary} optimize worker` on the Ray cluster: {_summary(err)}",
                                   "every node needs the same rustybt checkout, study folder and data paths") from None

    def slots(self) -> list[int]:
        return sorted(self._actors)

    def submit(self, slot: int, request: str) -> None:
        if "\n" in request:
            raise ValueError("a trial request is one line")
        self._running[self._actors[slot].ask.remote(request)] = slot

    def next(self, timeout_s: float) -> tuple[int, str | None, str | None] | None:
        if not self._running:
            time.sleep(timeout_s)
            return None
        ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=timeout_s)
        if not ready:
            return None
        slot = self._running.pop(ready[0])
        try:
            line, why = self._ray.get(ready[0])
        except self._ray.exceptions.RayError as err:
            return slot, None, f"lost its Ray actor: {_summary(err)}"
        return slot, line, why

    def retire(self, slot: int) -> None:
        actor = self._actors.pop(slot, None)
        if actor is not None:
            self._end([actor])

    def close(self) -> None:
        actors = list(getattr(self, "_actors", {}).values())
        self._actors = {}
        self._running = {}
        self._end(actors)
        self._ray.shutdown()

    def _end(self, actors: list[Any]) -> None:
        """Stops each actor's worker process, then the actor (a dead one answers at once)."""
        ray = self._ray
        stopping = [actor.stop.remote() for actor in actors]
        if stopping:
            ray.wait(stopping, num_returns=len(stopping), timeout=15)
        for actor in actors:
            ray.kill(actor, no_restart=True)


def _summary(err: BaseException) -> str:
    """The line of a Ray error that says what happened: the underlying exception when it has one."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b.*:", line)]
    return causes[-1] if causes else lines[0] if lines else type(err).__name__
