"""Hot-reload latency: from a file save to the new code running, in a paced run.

    .venv/bin/python benches/reload_latency.py [--saves 20] [--pace 1ms]

The new code's first on_tick writes time.time() to a file; latency = that time - the save time.
It includes the debounce window of the watcher (src/watch.rs), loading and swapping, and up to
one tick of pacing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("RUSTYBT_BIN", ROOT / "target" / "release" / "rustybt"))
sys.path.insert(0, str(ROOT / "pylib"))
from rustybt_api.testing import generate_bars, write_csv  # noqa: E402

SOURCE = """
import time
from rustybt_api import Algorithm

class Marker(Algorithm):
    def on_tick(self, ctx):
        if not getattr(self, "stamped_{version}", False):
            setattr(self, "stamped_{version}", True)
            with open({stamp!r}, "a") as f:
                f.write("{version} %.6f\\n" % time.time())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--pace", default="1ms")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = write_csv(tmp_path / "BARS.csv", generate_bars(200_000, seed=1))
        stamp = tmp_path / "stamps.txt"
        algo = tmp_path / "marker.py"
        algo.write_text(SOURCE.format(version=0, stamp=str(stamp)))
        proc = subprocess.Popen(
            [BIN, "run", "--algo", algo, "--data", data, "--out", tmp_path / "out",
             "--pace", args.pace, "--no-progress", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while not stamp.exists():
                time.sleep(0.01)
            latencies = []
            for version in range(1, args.saves + 1):
                time.sleep(0.3)
                saved = time.time()
                temporary = algo.with_name(".marker.tmp")
                temporary.write_text(SOURCE.format(version=version, stamp=str(stamp)))
                os.replace(temporary, algo)
                deadline = time.time() + 10
                while time.time() < deadline:
                    found = [l for l in stamp.read_text().splitlines() if l.startswith(f"{version} ")]
                    if found:
                        latencies.append((float(found[0].split()[1]) - saved) * 1e3)
                        break
                    time.sleep(0.002)
                else:
                    sys.exit(f"version {version} never became active")
        finally:
            proc.send_signal(2)
            proc.wait(timeout=30)
    latencies.sort()
    print(f"hot reload, save -> new code active ({len(latencies)} saves, pace {args.pace}):")
    print(f"  median {statistics.median(latencies):.1f} ms, "
          f"p90 {latencies[int(len(latencies) * 0.9) - 1]:.1f} ms, max {latencies[-1]:.1f} ms")


if __name__ == "__main__":
    main()
