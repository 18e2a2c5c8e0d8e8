"""Benchmark: the cost of ctx.history() (and of its .close view) at chosen history lengths."""

import json
import time
from itertools import repeat

from rustybt_api import Algorithm


class HistoryProbe(Algorithm):
    report = ""
    at = [1_000]
    calls = 20_000

    def initialize(self, ctx):
        self.symbol = ctx.symbols[0]
        self.results = {}
        self.pending = set(self.at)

    def on_tick(self, ctx):
        n = len(ctx.history(self.symbol))
        if n not in self.pending:
            return
        history, symbol = ctx.history, self.symbol
        best_plain = best_view = float("inf")
        for _ in range(3):  # best of three: the first pass also pays one-time lazy set-up
            loop = time.perf_counter_ns()
            for _ in repeat(None, self.calls):
                pass
            loop = time.perf_counter_ns() - loop
            started = time.perf_counter_ns()
            for _ in repeat(None, self.calls):
                history(symbol)
            best_plain = min(best_plain, time.perf_counter_ns() - started - loop)
            started = time.perf_counter_ns()
            for _ in repeat(None, self.calls):
                history(symbol).close
            best_view = min(best_view, time.perf_counter_ns() - started - loop)
        self.results[n] = {
            "history_ns": best_plain / self.calls,
            "history_close_ns": best_view / self.calls,
        }

    def on_stop(self, ctx):
        with open(self.report, "w") as f:
            json.dump(self.results, f)
