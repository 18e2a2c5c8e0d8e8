"""Benchmark: an on_tick with an empty body (the cost of the engine plus one Python call)."""

from rustybt_api import Algorithm


class EmptyTick(Algorithm):
    def on_tick(self, ctx):
        pass
