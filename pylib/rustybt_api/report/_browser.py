"""Printing the report to PDF with headless Chromium (the same page, its charts drawn)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import ReportError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str:
    """$RUSTYBT_CHROMIUM, else the first Chromium or Chrome on PATH."""
    explicit = os.environ.get("RUSTYBT_CHROMIUM")
    if explicit:
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise ReportError("`--pdf` needs Chromium or Chrome, and none is on PATH",
                      "install it (Debian: `apt-get install chromium`) or set RUSTYBT_CHROMIUM to its path")


def print_pdf(html_path: Path, pdf_path: Path, timeout_s: float = 120.0) -> Path:
    """Prints ``html_path`` to ``pdf_path``. Virtual time lets every chart draw before the
    print; the network is off (the page needs none)."""
    chromium = find_chromium()
    with tempfile.TemporaryDirectory(prefix="rustybt-chromium-") as profile:
        command = [
            chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            f"--user-data-dir={profile}", "--no-pdf-header-footer", "--virtual-time-budget=30000",
            "--run-all-compositor-stages-before-draw", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            f"--print-to-pdf={pdf_path.resolve()}", html_path.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise ReportError(f"Chromium did not print the report within {timeout_s:.0f} s") from None
    if done.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        tail = "\n".join((done.stderr or "").strip().splitlines()[-5:])
        raise ReportError(f"Chromium could not print the report (exit {done.returncode})", tail or None)
    return pdf_path
