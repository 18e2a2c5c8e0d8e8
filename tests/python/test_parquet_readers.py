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
