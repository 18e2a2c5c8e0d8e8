"""A real two-node Ray cluster on this machine, for the tests of ``rustybt optimize --executor ray``.

``ray start --head`` and a second ``ray start --address`` (a worker node), each with one CPU, with
their files under a short temporary folder (Ray's unix socket paths are length-limited). Each
``ray start`` runs in a session of its own, so teardown ends exactly that cluster's processes (by
session): ``ray stop --force`` would end every Ray process of this machine, another test run's too.

Ray gives a node the machine's routable address even when told 127.0.0.1 (its GCS listens on every
interface); the tests connect at 127.0.0.1:PORT all the same. Nothing leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

_NODES = 2
_START_TIMEOUT_S = 180.0
_ALIVE_SCRIPT = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + float(sys.argv[3])
while sum(n["Alive"] for n in ray.nodes()) < int(sys.argv[2]):
    if time.monotonic() > deadline:
        sys.exit(f"only {sum(n['Alive'] for n in ray.nodes())} of {sys.argv[2]} nodes alive")
    time.sleep(0.2)
"""


@dataclass
class RayCluster:
    address: str
    temp_dir: Path
    start_s: float = 0.0
    sessions: list[int] = field(default_factory=list)

    def processes(self) -> list[int]:
        """Processes of this cluster still alive: in its sessions (Ray's actors have process groups
        of their own, their worker processes too), or naming its folder."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                session = os.getsid(int(entry.name))
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ProcessLookupError):
                continue
            if session in self.sessions or str(self.temp_dir).encode() in cmdline:
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """SIGTERM to the cluster's processes, SIGKILL to what is left after a grace period."""
        for sig, grace_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in self.processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace_s
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.processes():
                break
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_start(cluster: RayCluster, args: list[str], cpus: int, log: Path) -> None:
    ray = Path(sys.executable).parent / "ray"
    # A port of our own for each node's agent and dashboard: their defaults are fixed numbers.
    ports = ["--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(ray), "start", *args, "--num-cpus", str(cpus), "--disable-usage-stats", "--temp-dir", str(cluster.temp_dir), *ports],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its daemons and workers stay in this session: see RayCluster.stop
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        )
        cluster.sessions.append(proc.pid)
        if proc.wait(timeout=_START_TIMEOUT_S) != 0:
            raise RuntimeError(f"`ray start {' '.join(args)}` failed:\n{log.read_text()[-4000:]}")


def start_cluster(nodes: int = _NODES, cpus: int = 1) -> RayCluster:
    """Starts a head and `nodes - 1` worker nodes of `cpus` CPUs each and waits until all are alive."""
    started = time.monotonic()
    port = free_port()
    cluster = RayCluster(address=f"127.0.0.1:{port}", temp_dir=Path(tempfile.mkdtemp(prefix="rb-ray-", dir="/tmp")))
    log = cluster.temp_dir / "start.log"
    try:
        _ray_start(cluster, ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--include-dashboard=false", "--dashboard-port", str(free_port())], cpus, log)
        for _ in range(nodes - 1):
            _ray_start(cluster, ["--address", cluster.address, "--node-ip-address", "127.0.0.1"], cpus, log)
        alive = subprocess.run([sys.executable, "-c", _ALIVE_SCRIPT, cluster.address, str(nodes), "60"],
                               timeout=_START_TIMEOUT_S, capture_output=True, text=True)
        if alive.returncode != 0:
            raise RuntimeError(f"the Ray cluster at {cluster.address} did not come up:\n{alive.stderr[-4000:]}")
    except BaseException:
        cluster.stop()
        raise
    cluster.start_s = time.monotonic() - started
    return cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.processes()
        assert not left, f"Ray processes survived the cluster's teardown: {left}"


if __name__ == "__main__":
    # `python -m tests.support.ray_cluster`: how long a cluster takes to start and stop here.
    t0 = time.monotonic()
    c = start_cluster()
    print(f"started {_NODES} nodes at {c.address} in {c.start_s:.1f} s")
    t1 = time.monotonic()
    c.stop()
    print(f"stopped in {time.monotonic() - t1:.1f} s; processes left: {c.processes()}")
