"""`rustybt optimize` end to end on the real binary: the trial table is the same serial and in
parallel, every trial equals a plain `rustybt run`, studies resume after `kill -9`, walk-forward
training never sees a test bar, and every refusal says what to do."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import BIN, ROOT

SMA = ROOT / "algorithms" / "sma_cross.py"
GRID = ["--algo", str(SMA), "--param", "fast=5:15:5", "--param", "slow=20:30:10",
        "--maximize", "net_profit"]


def optimize(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "optimize", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env={**os.environ, "NO_COLOR": "1"})


def trial_table(study: Path) -> dict[str, tuple[str, Any, Any]]:
    """params JSON → (state, objective values, metrics) of every trial."""
    with sqlite3.connect(study / "study.sqlite") as db:
        rows = db.execute("SELECT params, state, objective_values, metrics FROM trials").fetchall()
    return {p: (s, json.loads(v) if v else None, json.loads(m) if m else None) for p, s, v, m in rows}


def meta(study: Path) -> dict[str, Any]:
    with sqlite3.connect(study / "study.sqlite") as db:
        return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}


@pytest.fixture(scope="module")
def serial_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study = tmp_path_factory.mktemp("grid") / "serial"
    proc = optimize(*GRID, "-j", "1", "--study", study)
    assert proc.returncode == 0, proc.stderr
    return study


def test_a_grid_study_is_the_same_serial_and_in_parallel_and_ranks_its_trials(serial_grid: Path, tmp_path: Path) -> None:
    parallel = tmp_path / "parallel"
    proc = optimize(*GRID, "-j", "2", "--study", parallel)
    assert proc.returncode == 0, proc.stderr
    serial = trial_table(serial_grid)
    assert len(serial) == 6 and all(state == "complete" for state, _, _ in serial.values())
    assert trial_table(parallel) == serial
    # The table printed is best first, and best.toml holds the best trial's parameters.
    best_params, (_, best_values, _) = max(serial.items(), key=lambda kv: kv[1][1][0])
    lines = [line for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert lines[0].split()[2] == f"{best_values[0]:.4f}"
    best_toml = (parallel / "best.toml").read_text()
    for name, value in json.loads(best_params).items():
        assert f"{name} = {value}" in best_toml
    assert "2 workers" in proc.stderr


def daily_returns_of(equity_csv: Path, initial_cash: Decimal) -> tuple[list[str], list[float]]:
    """The daily returns of a results folder's equity curve, as docs/metrics.md defines them: the
    last equity of each UTC day (a point stamped 00:00 closes the day before), from the cash."""
    closes: dict[str, Decimal] = {}
    with equity_csv.open() as f:
        for row in csv.DictReader(f):
            at = datetime.fromisoformat(row["time"].replace("Z", "+00:00")) - timedelta(microseconds=1)
            closes[at.date().isoformat()] = Decimal(row["equity"])
    values = [initial_cash, *closes.values()]
    return list(closes), [float(b - a) / float(a) for a, b in zip(values, values[1:])]


def test_every_trial_equals_a_plain_run_of_its_parameters(serial_grid: Path, tmp_path: Path) -> None:
    # A trial keeps no equity curve, only what its metrics and returns are computed from.
    table = trial_table(serial_grid)
    with sqlite3.connect(serial_grid / "study.sqlite") as db:
        returns = {p: json.loads(r) for p, r in db.execute("SELECT params, returns FROM trials")}
    for params_json in list(table)[:3]:
        params = json.loads(params_json)
        out = tmp_path / f"run-{params['fast']}-{params['slow']}"
        argv = [str(BIN), "run", "--algo", str(SMA), "--out", str(out), "-q", "--no-progress"]
        for name, value in params.items():
            argv += ["--param", f"{name}={value}"]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr
        plain = json.loads((out / "metrics.json").read_text())
        plain.pop("run")
        assert table[params_json][2] == plain
        days, values = daily_returns_of(out / "equity.csv", Decimal(plain["initial_cash"]))
        assert plain["num_equity_points"] > len(days) > 1
        assert returns[params_json]["days"] == days
        assert returns[params_json]["values"] == pytest.approx(values, rel=1e-12, abs=1e-15)


def test_trials_over_months_of_a_24_7_market_equal_plain_runs(tmp_path: Path) -> None:
    """Months of 15-minute bars of two symbols, weekends included, a day ending at 16:30: the
    return metrics (Sharpe, VaR, the benchmark's) exist, and each trial's equal a plain run's."""
    import sys
    sys.path.insert(0, str(ROOT / "pylib"))
    from rustybt_api.testing import generate_bars, write_csv

    data = []
    for i, symbol in enumerate(("AAA", "BBB")):
        bars = generate_bars(9000, seed=7 + i, interval=timedelta(minutes=15), volatility=0.004)
        data.append(write_csv(tmp_path / f"{symbol}.csv", bars))
    config = tmp_path / "metrics.toml"
    config.write_text('[metrics]\nday_end = "16:30"\nrisk_free_rate = 0.03\n')
    common = ["--config", config, *[a for d in data for a in ("--data", d)]]
    study = tmp_path / "study"
    proc = optimize("--algo", SMA, "--param", "fast=5:10:5", "--param", "slow=40", "--maximize", "sharpe",
                    "-j", "2", "--study", study, *common)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(study / "study.sqlite") as db:
        trials = db.execute("SELECT params, metrics, returns FROM trials").fetchall()
    assert len(trials) == 2
    for params_json, metrics, returns in trials:
        params = json.loads(params_json)
        out = tmp_path / f"run-{params['fast']}"
        argv = [str(BIN), "run", "--algo", str(SMA), "--out", str(out), "-q", "--no-progress", *map(str, common),
                "--param", f"fast={params['fast']}", "--param", f"slow={params['slow']}"]
        run = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert run.returncode == 0, run.stderr
        plain = json.loads((out / "metrics.json").read_text())
        plain.pop("run")
        trial = json.loads(metrics)
        assert trial == plain
        assert trial["days_per_year"] == 365 and trial["num_equity_points"] == 9000
        assert trial["sharpe"] is not None and trial["benchmark"]["sharpe"] is not None
        assert trial["max_drawdown"] > 0 and trial["num_fills"] > 100
        assert len(json.loads(returns)["days"]) == trial["num_returns"] > 90


def test_the_best_trial_is_rerun_into_a_results_folder_and_its_config_reproduces_it(serial_grid: Path, tmp_path: Path) -> None:
    best = json.loads((serial_grid / "best" / "metrics.json").read_text())
    out = tmp_path / "from-config"
    proc = subprocess.run([str(BIN), "run", "--config", str(serial_grid / "best.toml"), "--out", str(out), "-q"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    again = json.loads((out / "metrics.json").read_text())
    assert again["net_profit"] == best["net_profit"] and again["num_trades"] == best["num_trades"]
    table = trial_table(serial_grid)
    assert best["net_profit"] == str(max(table.values(), key=lambda t: t[1][0])[2]["net_profit"])


def test_show_csv_list_and_the_study_report(serial_grid: Path) -> None:
    proc = optimize("show", serial_grid, "--csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    assert len(rows) == 6 and {r["state"] for r in rows} == {"complete"}
    assert {(r["fast"], r["slow"]) for r in rows} == {(f, s) for f in ("5", "10", "15") for s in ("20", "30")}
    listed = optimize("list", "--root", serial_grid.parent)
    assert listed.returncode == 0 and "serial" in listed.stdout and "grid" in listed.stdout
    report = optimize("report", serial_grid)
    assert report.returncode == 0, report.stderr
    assert (serial_grid / "report.html").stat().st_size > 100_000
    mc = optimize("montecarlo", serial_grid / "best", "--method", "permutation", "--runs", "200", "--seed", "3")
    assert mc.returncode == 0, mc.stderr
    assert "percentile" in mc.stdout
    assert (serial_grid / "best" / "montecarlo-permutation.json").is_file()


def test_a_trial_that_raises_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    # sma_cross raises in initialize unless fast < slow: 15/10 and 20/10 fail.
    study = tmp_path / "s"
    proc = optimize("--algo", SMA, "--param", "fast=5:20:5", "--param", "slow=10", "--maximize", "net_profit",
                    "-j", "2", "--study", study)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(study / "study.sqlite") as db:
        rows = dict(db.execute("SELECT json_extract(params, '$.fast'), state FROM trials").fetchall())
        errors = [e for (e,) in db.execute("SELECT error FROM trials WHERE state = 'failed'")]
    assert rows == {5: "complete", 10: "failed", 15: "failed", 20: "failed"}
    assert all("need 0 < fast < slow" in e and "sma_cross.py" in e for e in errors)
    assert "failed: " in proc.stdout


def test_constraints_and_the_minimum_trade_count(tmp_path: Path) -> None:
    study = tmp_path / "c"
    proc = optimize("--algo", SMA, "--param", "fast=5:30:5", "--param", "slow=10:30:10", "--constraint", "fast < slow",
                    "--maximize", "net_profit", "--min-trades", "600", "--study", study)
    assert proc.returncode == 0, proc.stderr
    table = {tuple(json.loads(p)[k] for k in ("fast", "slow")): v for p, v in trial_table(study).items()}
    assert all(f < s for f, s in table)
    assert len(table) == sum(1 for f in range(5, 31, 5) for s in (10, 20, 30) if f < s)
    for (state, values, metrics) in table.values():
        assert state == ("complete" if metrics["num_trades"] >= 600 else "too_few_trades")
        assert (values is None) == (state != "complete")


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_seeded_samplers_give_the_same_table_serial_and_in_parallel(method: str, tmp_path: Path) -> None:
    args = ["--algo", SMA, "--param", "fast=2:20", "--param", "slow=21:60", "--maximize", "net_profit",
            "--method", method, "--trials", "8", "--seed", "11", "--batch", "2"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert optimize(*args, "-j", "1", "--study", one).returncode == 0
    assert optimize(*args, "-j", "2", "--study", two).returncode == 0
    a, b = trial_table(one), trial_table(two)
    assert a == b and len(a) == 8  # eight distinct parameter sets: no duplicates
    with sqlite3.connect(one / "study.sqlite") as db:
        order = [p for (p,) in db.execute("SELECT params FROM trials ORDER BY number")]
    with sqlite3.connect(two / "study.sqlite") as db:
        assert order == [p for (p,) in db.execute("SELECT params FROM trials ORDER BY number")]


def slow_grid(write_algo: Any, seconds: float) -> list[str]:
    """The grid's arguments on a copy of the strategy that sleeps `seconds` in `initialize`, so a
    study lasts long enough to act on while it runs."""
    slow = write_algo(SMA.read_text().replace(
        "    def initialize(self, ctx: Context) -> None:\n",
        f"    def initialize(self, ctx: Context) -> None:\n        __import__('time').sleep({seconds})\n"), "slow_sma")
    return ["--algo", slow, "--param", "fast=5:15:5", "--param", "slow=20:30:10", "--maximize", "net_profit"]


def test_kill_9_then_resume_gives_the_uninterrupted_table(serial_grid: Path, tmp_path: Path, write_algo: Any) -> None:
    # Half a second per trial on any machine, so the kill lands mid-study.
    args = slow_grid(write_algo, 0.5)
    study = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN), "optimize", *map(str, args), "-j", "2", "--study", str(study)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and done < 2:
        time.sleep(0.05)
        if (study / "study.sqlite").exists():
            try:
                with sqlite3.connect(study / "study.sqlite") as db:
                    done = db.execute("SELECT count(*) FROM trials").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= done < 6, done
    time.sleep(0.5)
    leftover = subprocess.run(["pgrep", "-f", str(study)], capture_output=True, text=True).stdout.split()
    assert leftover == [], "workers outlived the killed study"
    resumed = optimize("--resume", study, "-j", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "taken from the store" in resumed.stderr
    taken = int(resumed.stderr.split(" taken from the store")[0].split()[-1])
    assert taken >= 2
    assert trial_table(study) == trial_table(serial_grid)


def test_a_study_in_use_is_refused_to_a_second_optimize(tmp_path: Path, write_algo: Any) -> None:
    """While a study runs, a `--resume` of it (or a new study in the same folder) is refused with
    who holds it, instead of running the same trials beside it; the running study ends with each
    trial once, and once it is done, `--resume` opens it again."""
    args = slow_grid(write_algo, 0.3)
    study = tmp_path / "busy"
    proc = subprocess.Popen([str(BIN), "optimize", *map(str, args), "-j", "1", "--study", str(study)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (study / "study.sqlite").exists():
            time.sleep(0.05)
        for second in (["--resume", study], [*args, "--study", study]):
            refused = optimize(*second, "-j", "1")
            assert refused.returncode == 2, refused.stderr
            assert f"the study `{study}` is in use by another rustybt optimize: pid {proc.pid}" in refused.stderr
            assert "--resume" in refused.stderr
        assert proc.poll() is None, "the refusals were checked while the study ran"
    finally:
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    with sqlite3.connect(study / "study.sqlite") as db:
        numbers = [n for (n,) in db.execute("SELECT number FROM trials ORDER BY number")]
    assert numbers == list(range(6))
    resumed = optimize("--resume", study, "-j", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert "0 trials run, 6 taken from the store" in resumed.stderr


def test_a_study_being_created_is_refused_to_resume_before_its_store_is_read(tmp_path: Path) -> None:
    """The window between a new study's lock and its first table: a `--resume` then said "no
    such table: meta" (seen under load) instead of who holds the study. The holder here is this
    test, with the lock file's flock and the holder text `rustybt optimize` writes."""
    study = tmp_path / "starting"
    study.mkdir()
    sqlite3.connect(study / "study.sqlite").close()  # created, no tables yet
    with open(study / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(json.dumps({"pid": os.getpid(), "started_at": "2026-12-08T03:00:00Z",
                               "command": "rustybt optimize --study starting"}) + "\n")
        lock.flush()
        refused = optimize("--resume", study)
    assert refused.returncode == 2, refused.stderr
    assert f"the study `{study}` is in use by another rustybt optimize: pid {os.getpid()}" in refused.stderr
    assert "no such table" not in refused.stderr
    missing = optimize("--resume", tmp_path / "typo")
    assert missing.returncode == 2 and not (tmp_path / "typo").exists(), missing.stderr


def test_resume_refuses_changed_code_unless_forced(tmp_path: Path, write_algo: Any) -> None:
    algo = write_algo(SMA.read_text(), "mine")
    study = tmp_path / "s"
    args = ["--algo", algo, "--param", "fast=5:10:5", "--param", "slow=20", "--maximize", "net_profit",
            "--study", study]
    assert optimize(*args).returncode == 0
    again = optimize(*args)
    assert again.returncode == 2 and "already holds a study" in again.stderr and "--resume" in again.stderr
    algo.write_text(algo.read_text() + "\n# changed\n")
    refused = optimize("--resume", study)
    assert refused.returncode == 2
    assert "the algorithm's code changed" in refused.stderr and "--force" in refused.stderr
    forced = optimize("--resume", study, "--force")
    assert forced.returncode == 0, forced.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--param", "nope=1:3"], "unknown parameter `nope`"),
    (["--param", "fast=5:15:5", "--method", "annealing"], "unknown search method `annealing`"),
    (["--param", "fast=5:15:5", "--constraint", "fast < slower"], "names `slower`, which is not a parameter"),
    (["--param", "fast=5:15:5", "--watch"], "`--watch` is a flag of `rustybt run`"),
    ([], "has no parameter with a range to search"),
    (["--param", "fast=5:15:5", "--executor", "ray"], "needs the cluster's `--address"),
    (["--param", "fast=5:15:5", "--walk-forward", "train=10d"], "walk-forward needs `test=`"),
])
def test_bad_studies_are_refused_with_a_hint(args: list[str], message: str, tmp_path: Path) -> None:
    proc = optimize("--algo", SMA, *args, "--study", tmp_path / "s")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "hint:" in proc.stderr or "rustybt run" in proc.stderr
    assert "panicked" not in proc.stderr


def test_resuming_a_folder_without_a_study_is_a_usage_error(tmp_path: Path) -> None:
    proc = optimize("--resume", tmp_path)
    assert proc.returncode == 2 and "holds no study" in proc.stderr


# -- walk-forward ---------------------------------------------------------------------------

SWITCH = datetime(2024, 2, 1, tzinfo=timezone.utc)

DIRECTIONAL = '''
import os
from rustybt_api import Algorithm, Context, Param

class Directional(Algorithm):
    """Holds a long (side=1) or short (side=-1) position all the time; logs the bars it sees."""
    side = Param(1, choices=[1, -1])

    def initialize(self, ctx: Context) -> None:
        self.first = None
        self.last = None

    def on_tick(self, ctx: Context) -> None:
        self.first = self.first or ctx.time_ns
        self.last = ctx.time_ns
        if ctx.portfolio.position("WF") == 0:
            if self.side == 1:
                self.buy("WF", 10)
            else:
                self.sell("WF", 10)

    def on_stop(self, ctx: Context) -> None:
        with open(os.environ["PROBE_FILE"], "a") as probe:
            probe.write(f"{self.first} {self.last}\\n")
'''


def regime_switch_bars(path: Path) -> None:
    """Hourly bars, January 2024 rising and February falling: the best side switches on the 1st."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    price = 100.0
    with path.open("w") as f:
        f.write("timestamp,open,high,low,close,volume\n")
        t = start
        while t < datetime(2024, 3, 1, tzinfo=timezone.utc):
            step = 0.05 if t < SWITCH else -0.05
            close = price + step
            f.write(f"{t:%Y-%m-%dT%H:%M:%SZ},{price:.2f},{max(price, close) + 0.01:.2f},"
                    f"{min(price, close) - 0.01:.2f},{close:.2f},100\n")
            price = close
            t += timedelta(hours=1)


def test_walk_forward_follows_the_switch_and_training_never_sees_test_bars(tmp_path: Path, write_algo: Any) -> None:
    data = tmp_path / "WF.csv"
    regime_switch_bars(data)
    algo = write_algo(DIRECTIONAL, "directional")
    probe = tmp_path / "probe.txt"
    study = tmp_path / "wf"
    proc = subprocess.run(
        [str(BIN), "optimize", "--algo", str(algo), "--data", str(data), "--maximize", "net_profit",
         "--walk-forward", "train=10d,test=5d,step=5d", "-j", "2", "--study", str(study)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "PROBE_FILE": str(probe)})
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(study / "study.sqlite") as db:
        windows = db.execute("SELECT number, train_start, train_end, test_start, test_end, best_params, "
                             "results_dir FROM windows ORDER BY number").fetchall()
        trial_windows = db.execute("SELECT count(*), count(DISTINCT window) FROM trials").fetchone()
    assert len(windows) >= 8 and trial_windows == (2 * len(windows), len(windows))

    def ts(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    for number, train_start, train_end, test_start, test_end, best, results_dir in windows:
        side = json.loads(best)["side"]
        if ts(train_end) <= SWITCH:
            assert side == 1, (number, train_end)
        if ts(train_start) >= SWITCH:
            assert side == -1, (number, train_start)
        assert (study / results_dir / "metrics.json").is_file()
    # The first window trained wholly after the switch picks the new side for its test.
    after = [w for w in windows if ts(w[1]) >= SWITCH]
    assert after and json.loads(after[0][5])["side"] == -1
    # Every run logged the bars it saw: each lies inside one training window or one test window.
    bounds_train = [(ts(w[1]), ts(w[2])) for w in windows]
    bounds_test = [(ts(w[3]), ts(w[4])) for w in windows]
    seen = [tuple(int(x) for x in line.split()) for line in probe.read_text().splitlines()]
    assert len(seen) == 3 * len(windows)  # two training trials and one test run per window
    in_train = 0
    for first, last in seen:
        # a tick is a bar's close time: the first bar of [start, end) closes at start + 1h
        f = datetime.fromtimestamp(first / 1e9, timezone.utc) - timedelta(hours=1)
        l = datetime.fromtimestamp(last / 1e9, timezone.utc) - timedelta(hours=1)
        if any(a <= f and l < b for a, b in bounds_train) and not any(a <= f and l < b for a, b in bounds_test):
            in_train += 1
        else:
            assert any(a <= f and l < b for a, b in bounds_test), (f, l)
    assert in_train == 2 * len(windows)
    for (_, train_end), (test_start, _) in zip(bounds_train, bounds_test):
        assert train_end <= test_start


def test_noise_reruns_of_the_best_trial_give_repeatable_valid_bands(tmp_path: Path) -> None:
    docs = []
    for name in ("a", "b"):
        study = tmp_path / name
        proc = optimize(*GRID, "-j", "2", "--study", study, "--noise-runs", "6", "--noise-scale", "0.001")
        assert proc.returncode == 0, proc.stderr
        docs.append(json.loads((study / "best" / "montecarlo-noise.json").read_text()))
    a, b = docs
    assert a == b  # seeded: the same bands twice
    assert a["runs"] == 6 and a["method"] == "noise" and a["step_unit"] == "day"
    for step in range(len(a["steps"])):
        assert a["bands"]["5"][step] <= a["bands"]["50"][step] <= a["bands"]["95"][step]
    assert all(0 <= a["max_drawdown"][q] <= 1 for q in ("5", "50", "95"))
    # Noise moves the result: the bands are not all the unperturbed run's final value.
    assert a["final_value"]["5"] != a["final_value"]["95"]
    report = optimize("report", tmp_path / "a")
    assert report.returncode == 0, report.stderr
    assert "mc_noise" in (tmp_path / "a" / "report.html").read_text()


def test_ctrl_c_keeps_the_finished_trials_and_says_how_to_resume(tmp_path: Path) -> None:
    study = tmp_path / "int"
    proc = subprocess.Popen([str(BIN), "optimize", "--algo", str(SMA), "--param", "fast=5:40:5",
                             "--param", "slow=50:90:10", "--maximize", "net_profit", "-j", "2", "--study", str(study)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and done < 2:
        time.sleep(0.2)
        try:
            with sqlite3.connect(study / "study.sqlite") as db:
                done = db.execute("SELECT count(*) FROM trials").fetchone()[0]
        except sqlite3.Error:
            pass
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"rustybt optimize --resume {study}" in err and "internal error" not in err
    with sqlite3.connect(study / "study.sqlite") as db:
        kept = db.execute("SELECT count(*) FROM trials").fetchone()[0]
    assert 2 <= kept < 40
    resumed = optimize("--resume", study)
    assert resumed.returncode == 0 and f"{kept} taken from the store" in resumed.stderr


def test_estimate_measures_one_trial_and_creates_no_study(tmp_path: Path) -> None:
    study = tmp_path / "est"
    proc = optimize(*GRID, "--study", study, "--estimate")
    assert proc.returncode == 0, proc.stderr
    seconds = float(proc.stdout.split("one trial: ")[1].split(" s")[0])
    assert seconds > 0 and "6 trials on" in proc.stdout
    assert not study.exists()
