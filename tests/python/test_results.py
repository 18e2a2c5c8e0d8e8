"""The results folder, the terminal summary and the bundled sample / example algorithms."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from decimal import Decimal

import polars as pl

from conftest import ROOT, read_bars

SMA = ROOT / "algorithms" / "sma_cross.py"


def test_sma_cross_on_the_bundled_sample(run_rustybt):
    result = run_rustybt("run", "--algo", SMA, "--no-progress")
    assert result.returncode == 0, result.stderr
    metrics = result.metrics()
    for key in ("final_equity", "total_return", "num_trades", "sharpe", "sortino",
                "max_drawdown", "calmar", "win_rate", "profit_factor"):
        assert key in metrics, key
    assert metrics["status"] == "complete" and metrics["partial"] is False
    assert isinstance(metrics["final_equity"], str)  # money is a decimal string
    assert metrics["run"]["symbols"] == ["SYNA", "SYNB", "SYNC"]
    assert metrics["num_trades"] > 0
    assert "Final equity" in result.stdout and "Status: complete" in result.stdout

    fills = result.csv_rows("fills.csv")
    assert list(fills[0]) == ["time", "symbol", "side", "qty", "price", "fee", "order_id"]
    equity = result.csv_rows("equity.csv")
    assert len(equity) == 7 * 24 * 60
    # Equity is exactly cash + position x close, from the files alone.
    assert Decimal(equity[-1]["equity"]) == Decimal(metrics["final_equity"])

    parquet_fills = pl.read_parquet(result.out / "fills.parquet")
    assert parquet_fills.height == len(fills)
    assert isinstance(parquet_fills.schema["price"], pl.Decimal)
    assert Decimal(str(parquet_fills["price"][0])) == Decimal(fills[0]["price"])
    assert pl.read_parquet(result.out / "equity.parquet").height == len(equity)


def test_rsi_oversold_uses_talib_on_the_views(run_rustybt):
    result = run_rustybt("run", "--algo", ROOT / "algorithms" / "rsi_oversold.py", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.metrics()["num_trades"] > 0
    log = (result.out / "log.txt").read_text()
    assert "INFO" in log and "trading SYNA with RSI(14)" in log


def test_parquet_input_gives_the_same_result_as_csv(run_rustybt, bars_csv, tmp_path):
    csv_path = bars_csv(rows=3000, seed=3, volatility=0.002, name="PQ")
    parquet_path = tmp_path / "PQ.parquet"
    frame = pl.read_csv(csv_path, schema_overrides={c: pl.String for c in ("open", "high", "low", "close")})
    frame.write_parquet(parquet_path)  # polars writes zstd by default
    from_csv = run_rustybt("run", "--algo", SMA, "--data", csv_path)
    from_parquet = run_rustybt("run", "--algo", SMA, "--data", parquet_path)
    assert from_csv.returncode == 0 and from_parquet.returncode == 0, from_parquet.stderr
    a, b = from_csv.metrics(), from_parquet.metrics()
    assert a["final_equity"] == b["final_equity"]
    assert a["num_trades"] == b["num_trades"]


def test_start_end_and_config_file(run_rustybt, bars_csv, tmp_path):
    data = bars_csv(rows=600, seed=9)
    config = tmp_path / "run.toml"
    config.write_text(
        f'[run]\nalgo = "{SMA}"\ndata = ["{data}"]\ncash = "5000"\n'
        'start = "2024-01-01T01:00:00Z"\nend = "2024-01-01T04:59:00Z"\n'
        '[params]\nfast = 4\nslow = 12\n[commission]\nrate = "0.001"\nminimum = "0.5"\n'
    )
    result = run_rustybt("run", "--config", config)
    assert result.returncode == 0, result.stderr
    metrics = result.metrics()
    assert metrics["run"]["parameters"]["slow"] == "12"
    assert metrics["run"]["bars_processed"] == 240
    fills = result.csv_rows("fills.csv")
    assert fills and all(Decimal(f["fee"]) >= Decimal("0.5") for f in fills)
    assert metrics["initial_cash"] == "5000"


def test_example_config_runs(run_rustybt):
    result = run_rustybt("run", "--config", ROOT / "config" / "example.toml", "--no-progress")
    assert result.returncode == 0, result.stderr


def test_bundled_sample_is_what_the_script_makes(tmp_path):
    script = ROOT / "examples" / "make_sample_data.py"
    subprocess.run([sys.executable, script, "--out", tmp_path], check=True, capture_output=True)
    for name in ("SYNA.csv", "SYNB.csv", "SYNC.csv"):
        assert filecmp.cmp(tmp_path / name, ROOT / "examples" / "data" / "sample" / name, shallow=False), name
        assert len(read_bars(tmp_path / name)) == 7 * 24 * 60
