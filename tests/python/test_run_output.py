"""What a run tells its user, and that telling never costs the results: a closed pipe, log
levels, rejected orders, misspelt hooks, out-of-range cash, short samples, money formatting."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

from conftest import ROOT

CHATTY = '''
from rustybt_api import Algorithm

class Chatty(Algorithm):
    def on_tick(self, ctx):
        self.log.debug("debug %s", ctx.time)
        self.log.info("info %s", ctx.time)
        self.log.warning("warning %s", ctx.time)
        print("printed", ctx.time)
'''


def piped(binary: Path, algo: Path, out: Path, redirect: str) -> subprocess.CompletedProcess[str]:
    """`rustybt run ... <redirect> | head -5` with pipefail: the exit code is rustybt's."""
    command = (f"set -o pipefail; '{binary}' run --algo '{algo}' --out '{out}' --no-progress "
               f"{redirect} | head -5")
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "NO_COLOR": "1"})


def test_a_closed_pipe_never_stops_a_run_nor_loses_its_results(binary, write_algo, tmp_path):
    # Regression: a write to the closed pipe panicked, the panic message failed the same way,
    # the process aborted (exit 134) and no results folder was written.
    algo = write_algo(CHATTY)
    for name, redirect in [("both", "2>&1"), ("stdout", "2>/dev/null")]:
        out = tmp_path / name
        proc = piped(binary, algo, out, redirect)
        assert proc.returncode == 0, (name, proc.returncode, proc.stderr[-2000:])
        assert len(proc.stdout.splitlines()) == 5, name
        assert "panicked" not in proc.stdout + proc.stderr
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["status"] == "complete", name
        log = (out / "log.txt").read_text().splitlines()
        assert sum("INFO    Chatty: info" in line for line in log) == metrics["run"]["ticks_processed"]


def test_a_closed_pipe_keeps_a_failing_runs_own_exit_code(binary, write_algo, tmp_path):
    algo = write_algo(CHATTY + "        if len(ctx.history(ctx.symbols[0])) == 3000:\n            raise ValueError('late')\n")
    proc = piped(binary, algo, tmp_path / "out", "2>&1")
    assert proc.returncode == 1, proc.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["status"] == "failed"


def test_log_level_filters_the_echo_and_log_txt_keeps_every_line(run_rustybt, write_algo, bars_csv):
    algo = write_algo(CHATTY)
    data = bars_csv(rows=50)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--log-level", "warning")
    assert result.returncode == 0, result.stderr
    assert "WARNING Chatty: warning" in result.stderr
    assert "INFO    Chatty" not in result.stderr and "DEBUG   Chatty" not in result.stderr
    log = (result.out / "log.txt").read_text()
    assert log.count("DEBUG   Chatty") == log.count("INFO    Chatty") == log.count("WARNING Chatty") == 50

    config = result.out.parent / "levels.toml"
    config.write_text('[run]\nlog_level = "error"\n')
    quiet = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--config", config)
    assert "Chatty:" not in quiet.stderr
    bad = run_rustybt("run", "--algo", algo, "--data", data, "--log-level", "loud")
    assert bad.returncode == 2
    assert "log level `loud` is not one of debug, info, warning, error" in bad.stderr
    bad.assert_clean_failure()


REJECTED = '''
from rustybt_api import Algorithm

class Greedy(Algorithm):
    def on_tick(self, ctx):
        if len(ctx.history("TEST")) % 10 == 0:
            self.buy("TEST", 1000000)
'''


def test_rejected_orders_are_counted_and_the_summary_warns_with_the_reasons(run_rustybt, write_algo, bars_csv):
    # Regression: a run whose orders were all rejected said "Trades 0, Fills 0" and nothing else.
    result = run_rustybt("run", "--algo", write_algo(REJECTED), "--data", bars_csv(rows=200), "--no-progress")
    assert result.returncode == 0, result.stderr
    orders = result.metrics()["orders"]
    assert orders["total"] == orders["rejected"] == 20
    assert orders["filled"] == orders["cancelled"] == orders["expired"] == orders["open"] == 0
    (reason,) = orders["rejection_reasons"]
    assert reason["count"] == 20
    assert reason["reason"].startswith("insufficient buying power: the positions and orders would need <n>")
    assert reason["example"].startswith("insufficient buying power: the positions and orders would need 1")
    assert "Orders             20 (0 filled, 0 cancelled, 20 rejected, 0 expired)" in result.stdout
    assert "Warning: 20 of 20 orders were rejected; most frequent reasons (all in orders.csv):" in result.stdout
    assert "    20x  insufficient buying power" in result.stdout


def test_a_misspelt_hook_is_warned_about_at_run_time(run_rustybt, write_algo, bars_csv):
    algo = write_algo('''
        from rustybt_api import Algorithm

        class Typo(Algorithm):
            def on_bar(self, ctx):
                self.buy("TEST", 1)
    ''')
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=20), "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"warning: {algo}:5: Typo.on_bar is never called by the engine (did you mean `on_tick`?)" in result.stderr
    assert "Typo.on_bar is never called" in (result.out / "log.txt").read_text()


def test_cash_beyond_decimal_range_says_too_large(run_rustybt):
    result = run_rustybt("run", "--algo", ROOT / "algorithms" / "sma_cross.py", "--cash", "1" * 32)
    assert result.returncode == 2
    assert f"--cash: `{'1' * 32}` is too large (at most 79228162514264337593543950335)" in result.stderr
    result.assert_clean_failure()


def test_money_is_shown_to_the_currency_precision_and_short_samples_say_why(run_rustybt):
    result = run_rustybt("run", "--algo", ROOT / "algorithms" / "sma_cross.py", "--no-progress", "--quiet",
                         "--cash", "100000.123456", "--currency", "JPY")
    assert result.returncode == 0, result.stderr
    assert "Initial cash       100,000 JPY" in result.stdout
    # The bundled sample is one week of minutes: 7 daily returns (from the initial cash), under the minimum.
    metrics = result.metrics()
    assert metrics["sharpe"] is None and metrics["cagr"] is None
    assert metrics["unavailable"]["sharpe"] == "needs at least 20 daily returns; the run has 7"
    assert "Sharpe             n/a (needs at least 20 daily returns; the run has 7)" in result.stdout
    assert metrics["initial_cash"] == "100000.123456"  # the files keep the exact value


def test_backtest_in_rustybt_test_leaves_no_temporary_folder(run_rustybt, tmp_path):
    # Regression: every testing.backtest() call left a /tmp/rustybt-backtest-* folder behind.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp_path / "test_cleanup.py").write_text(textwrap.dedent('''
        from rustybt_api import Algorithm
        from rustybt_api.testing import backtest, generate_bars

        class Buyer(Algorithm):
            def on_tick(self, ctx):
                if len(ctx.history("TEST")) == 2:
                    self.buy("TEST", 1)

        def test_removed_unless_kept(tmp_path):
            result = backtest(Buyer, list(generate_bars(20, seed=1)))
            assert result.out is None and len(result.fills) == 1 and result.equity
            kept = backtest(Buyer, list(generate_bars(20, seed=1)), keep=True)
            assert kept.out is not None and (kept.out / "metrics.json").exists()
    '''))
    result = run_rustybt("test", str(tmp_path / "test_cleanup.py"), "--", "-q", "-p", "no:cacheprovider",
                         cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp)})
    assert result.returncode == 0, result.stdout + result.stderr
    left = [p for p in tmp.iterdir() if p.name.startswith("rustybt-backtest-")]
    assert len(left) == 1 and (left[0] / "metrics.json").exists()  # the one kept on request
