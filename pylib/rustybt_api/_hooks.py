"""The misspelt-hook check (``on_bar`` for ``on_tick``) that ``rustybt run`` makes at every start
and ``rustybt validate`` makes as part of its structure step. Apart from ``_validate`` so a run
does not import the validator's modules (``inspect``, ``traceback``, ``dataclasses``: ~10 ms
before the first tick); ``difflib`` is imported only for a class with other public methods."""

from __future__ import annotations

import types

# The engine's hooks and the argument each one takes.
HOOKS = {"initialize": "ctx", "on_tick": "ctx", "on_fill": "fill", "on_order": "event", "on_stop": "ctx"}

# Names other frameworks use for the hooks, and common slips.
ALIASES = {"on_bar": "on_tick", "on_start": "initialize", "init": "initialize", "on_end": "on_stop",
           "on_data": "on_tick", "handle_data": "on_tick", "next": "on_tick"}


def misnamed_hooks(cls: type) -> list[tuple[str, str, str | None, int]]:
    """Methods of ``cls`` whose names look like a hook but are not one (the engine never calls
    them): ``(name, the hook meant, file, line)`` each."""
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name in HOOKS or not isinstance(value, types.FunctionType):
            continue
        import difflib

        close = difflib.get_close_matches(name, list(HOOKS), n=1, cutoff=0.75)
        suggestion = close[0] if close else ALIASES.get(name)
        if suggestion:
            # The first line of the definition, its decorators included (as `inspect` says).
            code = value.__code__
            found.append((name, suggestion, code.co_filename or None, code.co_firstlineno))
    return found


def misnamed_hook_warnings(cls: type) -> list[str]:
    """:func:`misnamed_hooks` as lines for the terminal: ``file:line: message (hint)``."""
    lines = []
    for name, suggestion, file, line in misnamed_hooks(cls):
        where = f"{file}:{line}: " if file and line else ""
        lines.append(f"{where}{cls.__name__}.{name} is never called by the engine (did you mean `{suggestion}`?)")
    return lines
