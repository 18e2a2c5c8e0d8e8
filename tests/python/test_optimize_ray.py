"""`rustybt optimize` on a Ray cluster: ``rustybt_api._ray_executor.RayExecutor`` (what the Rust study
driver calls with ``--executor ray``) against a real two-node local cluster (the ``ray_cluster``
fixture of tests/support/ray_cluster.py).

The oracle is the same study run by forked local workers: every trial that comes back through Ray
must carry exactly the metrics and daily returns the local run stored in its study.sqlite.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT, VENV_PYTHON
from rustybt_api._ray_executor import RayExecutor, RayExecutorError
from tests.support.ray_cluster import RayCluster, free_port

STUDY_ARGS = ["--algo", "algorithms/sma_cross.py", "--param", "fast=5:15:5", "--param", "slow=20:30:10",
              "--maximize", "net_profit"]
WAIT_S = 180.0


@pytest.fixture(scope="module")
def local_study(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grid study run by one forked local worker: the oracle, and the study the Ray workers serve."""
    study = tmp_path_factory.mktemp("ray") / "study"
    proc = subprocess.run([str(binary), "optimize", *STUDY_ARGS, "-j", "1", "--study", str(study)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1", "RUSTYBT_PYTHON": str(VENV_PYTHON)})
    assert proc.returncode == 0, proc.stderr
    return study


def stored_trials(study: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(study / "study.sqlite") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT number, params, metrics, returns, error FROM trials ORDER BY number").fetchall()
    return [dict(r) for r in rows]


def request(number: int, params: dict[str, Any]) -> str:
    return json.dumps({"number": number, "params": [[k, str(v)] for k, v in params.items()], "seed": 0})


@pytest.fixture
def executor(ray_cluster: RayCluster, local_study: Path, binary: Path) -> Iterator[RayExecutor]:
    ex = RayExecutor(ray_cluster.address, str(local_study), str(binary), None, str(VENV_PYTHON))
    try:
        yield ex
    finally:
        ex.close()
    assert wait_for(lambda: not worker_pids(local_study)), "worker processes outlived close()"


def wait_for(condition: Any, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def worker_pids(study: Path) -> list[int]:
    """The `rustybt optimize worker --study STUDY` processes running on this machine."""
    needle = b"\0".join([b"optimize", b"worker", b"--study", str(study).encode()])
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def answer(ex: RayExecutor) -> tuple[int, str | None, str | None]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        got = ex.next(0.5)
        if got is not None:
            return got
    pytest.fail(f"no answer from the Ray workers in {WAIT_S:.0f} s")


def test_trials_through_ray_equal_the_local_study(executor: RayExecutor, local_study: Path) -> None:
    trials = stored_trials(local_study)
    assert len(trials) == 6 and all(t["error"] is None for t in trials)
    # One actor per CPU of the cluster: one on each node.
    assert executor.slots() == [0, 1]
    queue = list(trials)
    results: dict[int, dict[str, Any]] = {}
    used: set[int] = set()
    for slot in executor.slots():
        t = queue.pop()
        executor.submit(slot, request(t["number"], json.loads(t["params"])))
    while len(results) < len(trials):
        slot, line, why = answer(executor)
        assert why is None and line is not None, why
        result = json.loads(line)
        results[result["number"]] = result
        used.add(slot)
        if queue:
            t = queue.pop()
            executor.submit(slot, request(t["number"], json.loads(t["params"])))
    assert used == {0, 1}
    for t in trials:
        got = results[t["number"]]
        assert got["error"] is None
        assert got["metrics"] == json.loads(t["metrics"]), t["params"]
        assert got["returns"] == json.loads(t["returns"]), t["params"]
        assert got["bars"] > 0
    assert executor.next(0.1) is None  # nothing left in flight


def test_a_trial_that_raises_comes_back_with_its_error_and_the_worker_goes_on(
        executor: RayExecutor, local_study: Path) -> None:
    executor.submit(0, request(99, {"fast": 30, "slow": 20}))
    slot, line, why = answer(executor)
    assert (slot, why) == (0, None) and line is not None
    failed = json.loads(line)
    assert failed["number"] == 99  # the study records it as failed (src/optimize/study.rs)
    assert "need 0 < fast < slow, got fast=30 slow=20" in failed["error"]
    assert "ValueError" in failed["error"]
    first = stored_trials(local_study)[0]
    executor.submit(0, request(first["number"], json.loads(first["params"])))
    slot, line, why = answer(executor)
    assert slot == 0 and line is not None
    assert json.loads(line)["metrics"] == json.loads(first["metrics"])


def test_a_killed_worker_process_comes_back_as_gone_and_its_slot_retires(
        executor: RayExecutor, local_study: Path) -> None:
    pids = worker_pids(local_study)
    assert len(pids) == 2, pids
    os.kill(pids[0], signal.SIGKILL)
    assert wait_for(lambda: pids[0] not in worker_pids(local_study))
    first = stored_trials(local_study)[0]
    for slot in executor.slots():
        executor.submit(slot, request(first["number"], json.loads(first["params"])))
    answers = {s: (line, why) for s, line, why in (answer(executor), answer(executor))}
    gone = [s for s, (line, _) in answers.items() if line is None]
    assert len(gone) == 1, answers
    dead, alive = gone[0], 1 - gone[0]
    assert answers[dead][1] == "was killed by signal 9"
    assert json.loads(answers[alive][0] or "{}")["metrics"] == json.loads(first["metrics"])
    executor.retire(dead)
    assert executor.slots() == [alive]
    with pytest.raises(KeyError):
        executor.submit(dead, request(0, {}))


def test_a_worker_that_exits_reports_its_status_and_stderr(executor: RayExecutor) -> None:
    # A request the worker cannot read ends it (a protocol error, not a trial error).
    executor.submit(1, "{not json")
    slot, line, why = answer(executor)
    assert slot == 1 and line is None and why is not None
    assert why.startswith("exited with status"), why
    assert "a trial request is not valid" in why


def test_more_workers_than_the_cluster_has_cpus_are_refused(
        ray_cluster: RayCluster, local_study: Path, binary: Path) -> None:
    with pytest.raises(RayExecutorError, match=r"has 2 CPUs: it cannot run 3 workers"):
        RayExecutor(ray_cluster.address, str(local_study), str(binary), 3, None)
    # The refused executor left the driver disconnected: a new one can join.
    ok = RayExecutor(ray_cluster.address, str(local_study), str(binary), 1, str(VENV_PYTHON))
    try:
        assert ok.slots() == [0]
    finally:
        ok.close()


def test_a_worker_binary_that_cannot_start_is_a_clear_error(
        ray_cluster: RayCluster, local_study: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing-rustybt"
    with pytest.raises(RayExecutorError, match=rf"cannot start `{missing} optimize worker` on the Ray cluster: "
                       rf"FileNotFoundError: .*No such file or directory: '{missing}'") as err:
        RayExecutor(ray_cluster.address, str(local_study), str(missing), None, None)
    assert "same rustybt checkout" in err.value.hint


def test_no_cluster_at_the_address_names_ray_start() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(RayExecutorError, match=rf"no Ray cluster answers at {address}") as err:
        RayExecutor(address, "study", "rustybt", None, None)
    assert "ray start --head" in err.value.hint


def run_optimize(binary: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "optimize", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "NO_COLOR": "1", "RUSTYBT_PYTHON": str(VENV_PYTHON)})


def trial_table(study: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(study / "study.sqlite") as db:
        return db.execute("SELECT number, window, params, seed, state, objective_values, metrics, returns, error"
                          " FROM trials ORDER BY number").fetchall()


def test_a_study_with_executor_ray_stores_the_table_of_a_local_study(
        ray_cluster: RayCluster, local_study: Path, binary: Path, tmp_path: Path) -> None:
    study = tmp_path / "on-ray"
    proc = run_optimize(binary, *STUDY_ARGS, "--executor", "ray", "--address", ray_cluster.address, "--study", study)
    assert proc.returncode == 0, proc.stderr
    assert "2 Ray workers" in proc.stderr  # one per CPU of the two nodes
    assert trial_table(study) == trial_table(local_study)
    assert wait_for(lambda: not worker_pids(study)), "worker processes outlived the study"


def test_executor_ray_without_a_cluster_is_a_usage_error_naming_ray_start(binary: Path, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    proc = run_optimize(binary, *STUDY_ARGS, "--executor", "ray", "--address", address, "--study", tmp_path / "s")
    assert proc.returncode == 2, proc.stderr
    assert f"no Ray cluster answers at {address}" in proc.stderr
    assert "hint: start a cluster with `ray start --head" in proc.stderr
    assert "panicked" not in proc.stderr and "Traceback" not in proc.stderr
