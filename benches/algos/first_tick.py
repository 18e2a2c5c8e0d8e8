"""Benchmark: writes the wall time (ns) of its first on_tick to the file named by `stamp`, so
the caller can subtract the time it started the process (benches/data_catalog.py)."""

import time

from rustybt_api import Algorithm


class FirstTick(Algorithm):
    stamp = ""

    def initialize(self, ctx):
        self.seen = False

    def on_tick(self, ctx):
        if not self.seen:
            self.seen = True
            with open(self.stamp, "w") as f:
                f.write(str(time.time_ns()))
