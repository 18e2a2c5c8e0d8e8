"""The report of a results folder: one self-contained, interactive HTML file.

``rustybt report RUN_DIR`` and ``rustybt run --report`` call :func:`main`; a notebook calls
``results.load(dir).report()``. The page embeds plotly.js (from the pinned ``plotly`` package)
and the data; it makes no request to any host, so it works offline and can be mailed. Charts are
drawn one after the other as the page loads (the first at once). ``--pdf`` prints the same page
through headless Chromium (:mod:`._browser`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
from pathlib import Path
from typing import Any

from ..results import ResultsError, load

__all__ = ["ReportError", "main", "write_report"]


class ReportError(Exception):
    """A report that cannot be made for a reason the user can fix; ``hint`` says how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def main(run_dir: str, out: str | None = None, pdf: bool = False, benchmark: str | None = None,
         window: int = 63) -> list[str]:
    """The command's entry: writes the report (and the PDF) and returns the paths written."""
    html_path = write_report(Path(run_dir), Path(out) if out else None, benchmark=benchmark, window=window)
    written = [str(html_path)]
    if pdf:
        from ._browser import print_pdf

        written.append(str(print_pdf(html_path, html_path.with_suffix(".pdf"))))
    return written


def write_report(run_dir: Path, out: Path | None = None, benchmark: str | None = None, window: int = 63) -> Path:
    """Writes the HTML report of ``run_dir`` to ``out`` (default ``run_dir/report.html``)."""
    try:
        results = load(run_dir)
    except ResultsError as err:
        raise ReportError(str(err), err.hint) from None
    if window < 2:
        raise ReportError("the rolling window must be at least 2 days")
    from ._analysis import Analysis, metric_groups
    from ._page import render

    analysis = Analysis(results, benchmark, window)
    analysis.build()
    header = _header(results, analysis)
    page = render(
        title=f"rustybt report: {header['algorithm']}",
        header=header,
        metrics=metric_groups(results.raw),
        charts=analysis.charts,
        trades=analysis.trade_table(),
        rejections=analysis.rejections,
        notes=analysis.notes,
        plotly_js=_plotly_js(),
    )
    path = out if out is not None else results.path / "report.html"
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True)
    path.write_text(page, encoding="utf-8")
    return path


def _plotly_js() -> str:
    """plotly.min.js of the pinned plotly package, embedded whole (no CDN)."""
    try:
        offline: Any = importlib.import_module("plotly.offline")
    except ImportError:
        raise ReportError("the report needs the `plotly` package",
                          "install the project's requirements: `.venv/bin/pip install -r requirements.txt`") from None
    return str(offline.get_plotlyjs())


def _header(results: Any, analysis: Any) -> dict[str, Any]:
    info = results.info
    raw = results.raw
    data = []
    for name in info.get("data_files") or []:
        path = Path(str(name))
        entry = {"file": str(name)}
        if path.is_file():
            entry["size"] = f"{path.stat().st_size:,} bytes"
            entry["sha256"] = _sha256(path)
        else:
            entry["size"] = "gone"
        data.append(entry)
    seconds = info.get("wall_seconds")
    return {
        "algorithm": f"{info.get('class_name', '?')} ({Path(str(info.get('algorithm', '?'))).name})",
        "algorithm_path": str(info.get("algorithm", "")),
        "parameters": {str(k): str(v) for k, v in (info.get("parameters") or {}).items()},
        "data": data,
        "symbols": ", ".join(str(s) for s in info.get("symbols") or []),
        "period": f"{raw.get('start_time', '?')} .. {raw.get('end_time', '?')}",
        "bars": info.get("bars_processed"),
        "run_time": f"{seconds:.3f} s" if isinstance(seconds, (int, float)) else "?",
        "status": str(raw.get("status", "?")) + (f": {raw.get('reason')}" if raw.get("reason") else ""),
        "versions": f"rustybt {info.get('rustybt_version', '?')}, Python {info.get('python_version', '?')}",
        "benchmark": analysis.benchmark_name or "none",
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "folder": str(results.path),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

