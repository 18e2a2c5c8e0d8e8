"""A strategy written in Rust (examples/rust_momentum.rs) on the same engine as its Python twin
(examples/momentum_top_decile.py): identical orders, fills, trades and equity."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_BIN = Path(
    os.environ.get("RUSTYBT_EXAMPLE_BIN", ROOT / "target" / "release" / "examples" / "rust_momentum")
)
sys.path.insert(0, str(ROOT / "examples"))

from make_panel_data import write_panel  # noqa: E402


@pytest.fixture(scope="module")
def example_bin() -> Path:
    if not EXAMPLE_BIN.exists():
        pytest.fail(f"{EXAMPLE_BIN} is missing: build it with `make build` (cargo build --release --examples)")
    return EXAMPLE_BIN


def orders_of(path: Path) -> list[tuple[str, ...]]:
    """Every order event: time, order id, symbol, side, quantity, status."""
    keys = ("time", "order_id", "symbol", "side", "quantity", "status")
    with path.open() as f:
        return [tuple(row[k] for k in keys) for row in csv.DictReader(f)]


@pytest.mark.parametrize(
    ("every", "daily", "sessions"),
    [("30m", False, 2), ("bar", True, 60)],
    ids=["every-30m-minute-bars", "every-bar-daily-bars"],
)
def test_rust_and_python_strategies_agree(run_rustybt, example_bin, tmp_path, every, daily, sessions):
    data = write_panel(tmp_path / "panel.csv", symbols=40, sessions=sessions, daily=daily)
    python = run_rustybt(
        "run", "--algo", ROOT / "examples" / "momentum_top_decile.py", "--data", data,
        "--cash", "1000000", "--param", f"every={every}", "--no-progress", "--quiet",
    )
    assert python.returncode == 0, python.stderr
    rust_out = tmp_path / "rust"
    rust = subprocess.run(
        [example_bin, "--data", data, "--out", rust_out, "--cash", "1000000", "--every", every],
        capture_output=True, text=True, timeout=300,
    )
    assert rust.returncode == 0, rust.stderr
    report = json.loads(rust.stdout.strip().splitlines()[-1])
    assert report["engine"] == "rust" and report["rebalances"] > 2

    for name in ("fills.csv", "trades.csv", "equity.csv"):
        assert (rust_out / name).read_bytes() == (python.out / name).read_bytes(), name
    fills = list(csv.DictReader((rust_out / "fills.csv").open()))
    assert len(fills) == report["fills"] > 4 * 2  # more than one rebalance's worth
    orders = orders_of(python.out / "orders.csv")
    assert orders_of(rust_out / "orders.csv") == orders
    assert sum(1 for o in orders if o[5] == "new") >= len({f["order_id"] for f in fills})
    metrics = python.metrics()
    assert metrics["final_equity"] == report["final_equity"]
    assert metrics["run"]["bars_processed"] == report["bars"]
