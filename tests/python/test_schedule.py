"""Scheduled callbacks: `Algorithm.schedule(every= / at= / cron=)` on the real engine."""

from __future__ import annotations

import datetime as dt
import re

from conftest import generate_bars, write_csv

UTC = dt.timezone.utc

RECORDER = """
from rustybt_api import Algorithm

class Recorder(Algorithm):
    def initialize(self, ctx):
        self.handle = self.schedule(self.record, {rule})

    def record(self, ctx):
        closes = ctx.history("{symbol}").close
        # When it runs, the callback sees the bars closed by ctx.time and no later ones.
        last_close_time = ctx.history("{symbol}").time[-1]
        self.log.info("fired %s bars=%d last=%d fired=%d", ctx.time.isoformat(), len(closes),
                      last_close_time, self.handle.fired)

    def on_tick(self, ctx):
        pass
"""


def fired(result) -> list[tuple[str, int]]:
    text = (result.out / "log.txt").read_text()
    return [(m[0], int(m[1])) for m in re.findall(r"fired (\S+) bars=(\d+)", text)]


def run(run_rustybt, write_algo, tmp_path, rule, bars, *extra, symbol="TEST"):
    data = write_csv(tmp_path / f"{symbol}.csv", bars)
    algo = write_algo(RECORDER.format(rule=rule, symbol=symbol), name="recorder")
    return run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet", *extra)


def test_every_fires_at_each_period_boundary_with_only_closed_bars(run_rustybt, write_algo, tmp_path):
    bars = list(generate_bars(300, seed=1))  # 1-minute bars from 00:00
    done = run(run_rustybt, write_algo, tmp_path, 'every="1h"', bars)
    assert done.returncode == 0, done.stderr
    # The bar opening at 00:59 closes at 01:00: 60 bars are closed then, never 61.
    assert fired(done) == [
        ("2024-01-01T01:00:00+00:00", 60),
        ("2024-01-01T02:00:00+00:00", 120),
        ("2024-01-01T03:00:00+00:00", 180),
        ("2024-01-01T04:00:00+00:00", 240),
        ("2024-01-01T05:00:00+00:00", 300),
    ]


def test_an_algorithm_without_on_tick_runs_its_schedule_with_no_call_per_tick(run_rustybt, write_algo, tmp_path):
    # Algorithm's empty on_tick is not called: a schedule-only strategy costs no Python per tick.
    source = RECORDER.format(rule='every="1h"', symbol="TEST").replace("    def on_tick(self, ctx):\n        pass\n", "")
    assert "on_tick" not in source
    data = write_csv(tmp_path / "TEST.csv", list(generate_bars(300, seed=1)))
    done = run_rustybt("run", "--algo", write_algo(source, name="recorder"), "--data", data, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert [t for t, _ in fired(done)] == [f"2024-01-01T0{h}:00:00+00:00" for h in range(1, 6)]
    assert [n for _, n in fired(done)] == [60, 120, 180, 240, 300]
    hooks = [line.split()[0] for line in done.stderr.splitlines() if re.match(r"\w+\s+\d+ calls", line)]
    assert hooks == ["initialize"], done.stderr


def test_at_is_local_time_across_a_daylight_saving_change(run_rustybt, write_algo, tmp_path):
    # Hourly bars from Friday 2024-03-08 to Tuesday 2024-03-12; New York moves to UTC-4 on the 10th.
    start = dt.datetime(2024, 3, 8, tzinfo=UTC)
    bars = list(generate_bars(24 * 4, seed=2, start=start, interval=dt.timedelta(hours=1)))
    done = run(run_rustybt, write_algo, tmp_path, 'at="09:00", timezone="America/New_York"', bars)
    assert done.returncode == 0, done.stderr
    assert [t for t, _ in fired(done)] == [
        "2024-03-08T14:00:00+00:00",
        "2024-03-09T14:00:00+00:00",
        "2024-03-10T13:00:00+00:00",
        "2024-03-11T13:00:00+00:00",
    ]


def test_the_market_time_zone_is_the_default(run_rustybt, write_algo, tmp_path):
    start = dt.datetime(2024, 7, 1, tzinfo=UTC)
    bars = list(generate_bars(48, seed=3, start=start, interval=dt.timedelta(hours=1)))
    done = run(run_rustybt, write_algo, tmp_path, 'cron="0 9 * * *"', bars, "--timezone", "Europe/Berlin")
    assert done.returncode == 0, done.stderr
    assert [t for t, _ in fired(done)] == ["2024-07-01T07:00:00+00:00", "2024-07-02T07:00:00+00:00"]


def test_cron_weekdays_follow_posix(run_rustybt, write_algo, tmp_path):
    # A week of daily bars from Monday 2024-06-03: 1-5 is Monday to Friday (0 is Sunday).
    start = dt.datetime(2024, 6, 3, tzinfo=UTC)
    bars = list(generate_bars(8, seed=4, start=start, interval=dt.timedelta(days=1)))
    done = run(run_rustybt, write_algo, tmp_path, 'cron="0 0 * * 1-5"', bars)
    assert done.returncode == 0, done.stderr
    # Occurrences strictly after the start (Monday 03 00:00, the first open) up to the last
    # close (Tuesday 11 00:00): Saturday's and Sunday's midnights do not match 1-5.
    days = [dt.datetime.fromisoformat(t).strftime("%a %d") for t, _ in fired(done)]
    assert days == ["Tue 04", "Wed 05", "Thu 06", "Fri 07", "Mon 10", "Tue 11"]


def test_occurrences_between_sparse_ticks_fire_once(run_rustybt, write_algo, tmp_path):
    bars = list(generate_bars(5, seed=5, interval=dt.timedelta(hours=1)))
    done = run(run_rustybt, write_algo, tmp_path, 'every="15m"', bars)
    assert done.returncode == 0, done.stderr
    assert [bars for _, bars in fired(done)] == [1, 2, 3, 4, 5]


def test_cancel_and_callables(run_rustybt, write_algo, bars_csv):
    algo = write_algo(
        """
        from rustybt_api import Algorithm

        class Canceller(Algorithm):
            def initialize(self, ctx):
                self.seen = []
                self.handle = self.schedule(lambda c: self.seen.append(c.time), every="10m", name="tenner")
                assert self.handle.name == "tenner" and self.handle.active

            def on_tick(self, ctx):
                if len(self.seen) == 3 and self.handle.active:
                    assert self.handle.cancel() is True
                    assert self.handle.cancel() is False
                    assert self.handle.next_time is None and not self.handle.active

            def on_stop(self, ctx):
                self.log.info("seen %d", len(self.seen))
        """
    )
    done = run_rustybt("run", "--algo", algo, "--data", bars_csv(200), "--no-progress", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "seen 3" in (done.out / "log.txt").read_text()


def test_bad_rules_and_failing_callbacks_are_named(run_rustybt, write_algo, bars_csv):
    data = bars_csv(100)
    cases = {
        'every="soon"': "`every` must be a positive duration",
        'every="1h", at="09:00"': "exactly one of `every`, `at` or `cron`",
        'cron="0 9 * *"': "expected 5 fields",
        'at="9h"': "`at` must be a local time",
        'every="1h", timezone="Nowhere/City"': "unknown time zone `Nowhere/City`",
    }
    for rule, message in cases.items():
        algo = write_algo(RECORDER.format(rule=rule, symbol="TEST"), name="bad")
        done = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet")
        assert done.returncode == 1, rule
        assert "ValueError" in done.stderr and message in done.stderr, (rule, done.stderr)
        done.assert_clean_failure()

    algo = write_algo(
        """
        from rustybt_api import Algorithm

        class Boom(Algorithm):
            def initialize(self, ctx):
                self.schedule(self.boom, every="10m")
                self.schedule(42, every="10m")

            def boom(self, ctx):
                raise ZeroDivisionError("no")

            def on_tick(self, ctx):
                pass
        """,
        name="boom",
    )
    done = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet")
    assert done.returncode == 1
    assert "TypeError" in done.stderr and "schedule needs a callable, got int" in done.stderr

    algo.write_text(algo.read_text().replace("        self.schedule(42, every=\"10m\")\n", ""))
    done = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet")
    assert done.returncode == 1
    assert "ZeroDivisionError in `boom (scheduled)` at" in done.stderr
    assert "boom.py:9 (simulated time 2024-01-01T00:10:00Z)" in done.stderr
