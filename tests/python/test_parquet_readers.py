"""Every Parquet file a run writes is readable by pandas (through pyarrow) and by polars, with
Decimal columns intact: the same exact values as the CSV beside it."""

from __future__ import annotations

import csv
from decimal import Decimal

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import ROOT


def test_pandas_and_polars_read_every_parquet_file_exactly(run_rustybt, tmp_path):
    result = run_rustybt("run", "--algo", ROOT / "algorithms" / "sma_cross.py", "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    files = sorted(result.out.glob("*.parquet"))
    assert files, "a run writes Parquet results"
    decimal_columns_checked = 0
    for path in files:
        schema = pq.read_schema(path)
        via_pandas = pd.read_parquet(path)  # the pyarrow engine
        via_polars = pl.read_parquet(path)
        assert len(via_pandas) == via_polars.height, path.name
        assert list(via_pandas.columns) == via_polars.columns, path.name
        csv_path = path.with_suffix(".csv")
        rows = list(csv.DictReader(csv_path.open())) if csv_path.exists() else None
        if rows is not None:
            assert len(rows) == len(via_pandas), path.name
        for field in schema:
            if not pa.types.is_decimal(field.type):
                continue
            assert isinstance(via_polars.schema[field.name], pl.Decimal), (path.name, field.name)
            from_pandas = list(via_pandas[field.name])
            from_polars = [Decimal(str(v)) if v is not None else None for v in via_polars[field.name]]
            assert all(isinstance(v, Decimal) for v in from_pandas if v is not None), (path.name, field.name)
            assert from_pandas == from_polars, (path.name, field.name)
            if rows is not None:
                # CSV columns share the Parquet names, except `qty` (Parquet: the same name).
                from_csv = [Decimal(r[field.name]) if r[field.name] != "" else None for r in rows]
                assert from_pandas == from_csv, (path.name, field.name)
            decimal_columns_checked += 1
    assert decimal_columns_checked >= 3



def check_equity_files(out, ticks: int) -> None:
    """equity.parquet holds exactly equity.csv's values, at the scale of its finest value."""
    rows = list(csv.DictReader((out / "equity.csv").open()))
    assert len(rows) == ticks
    table = pq.read_table(out / "equity.parquet")
    assert table.num_rows == ticks
    for name in ("cash", "equity"):
        from_csv = [Decimal(r[name]) for r in rows]
        assert table.column(name).to_pylist() == from_csv, name
        assert table.schema.field(name).type.scale == max(-v.as_tuple().exponent for v in from_csv)
    times = [t.isoformat().replace("+00:00", "Z") for t in table.column("time").to_pylist()]
    assert times == [r["time"] for r in rows]


def test_a_long_run_streams_its_equity_files_with_the_same_exact_values(run_rustybt, bars_csv, tmp_path):
    # 200,000 ticks: the equity files are written in several pieces while the run goes.
    data = bars_csv(rows=200_000, name="LONG")
    config = tmp_path / "costs.toml"
    config.write_text('[commission]\nrate = "0.00073"\n')
    result = run_rustybt(
        "run", "--algo", ROOT / "algorithms" / "sma_cross.py", "--data", data,
        "--config", config, "--no-progress", "--quiet",
    )
    assert result.returncode == 0, result.stderr
    check_equity_files(result.out, 200_000)


def test_finer_values_late_in_a_long_run_are_stored_exactly(run_rustybt, bars_csv, write_algo, tmp_path):
    # The first trade comes after the first streamed piece: cash has no decimals until its
    # commission (rate 0.00073 on two-decimal prices) gives it seven, so the Parquet layout
    # taken from the first piece cannot hold them and the file is written whole at the end.
    data = bars_csv(rows=150_000, name="LATE")
    config = tmp_path / "costs.toml"
    config.write_text('[commission]\nrate = "0.00073"\n')
    algo = write_algo("""
        from rustybt_api import Algorithm

        class Late(Algorithm):
            def initialize(self, ctx):
                self.ticks = 0

            def on_tick(self, ctx):
                self.ticks += 1
                if self.ticks == 100_000:
                    self.buy(ctx.symbols[0], 3)
    """)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--config", config, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((result.out / "equity.csv").open()))
    assert {Decimal(r["cash"]).as_tuple().exponent for r in rows[:99_000]} == {0}
    check_equity_files(result.out, 150_000)
