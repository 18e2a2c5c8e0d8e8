"""The report's building blocks: a step with a status and its problems."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

# Order matters: the worst status of a step's problems wins.
STATUSES = ("pass", "warn", "fail", "skipped")


@dataclass
class Problem:
    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    source: str | None = None
    traceback: str | None = None
    scenario: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "message": self.message, "file": self.file, "line": self.line,
            "column": self.column, "hint": self.hint, "source": self.source,
            "traceback": self.traceback, "scenario": self.scenario,
        }

    def where(self) -> str:
        if not self.file:
            return ""
        text = self.file
        if self.line:
            text += f":{self.line}"
            if self.column:
                text += f":{self.column}"
        return text


@dataclass
class Step:
    name: str
    status: str = "pass"
    summary: str = ""
    problems: list[Problem] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: Problem) -> None:
        self.problems.append(problem)
        self.status = "fail"

    def warn(self, problem: Problem) -> None:
        self.problems.append(problem)
        if self.status == "pass":
            self.status = "warn"

    def skip(self, why: str) -> Step:
        self.status = "skipped"
        self.summary = why
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name, "status": self.status, "summary": self.summary,
            "problems": [p.as_dict() for p in self.problems], "details": self.details,
        }


def user_location(tb: TracebackType | None, user_files: set[str]) -> tuple[str | None, int | None]:
    """The innermost frame of ``tb`` that is in one of the user's files."""
    found: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in user_files:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def location_in_text(traceback_text: str, user_files: set[str]) -> tuple[str | None, int | None]:
    """The innermost ``File "...", line N`` of a formatted traceback that is a user file."""
    found: tuple[str | None, int | None] = (None, None)
    for match in _FRAME.finditer(traceback_text or ""):
        if match.group(1) in user_files or os.path.abspath(match.group(1)) in user_files:
            found = (match.group(1), int(match.group(2)))
    return found
