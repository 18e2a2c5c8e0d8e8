"""The algorithm's own state across live restarts (the host journals the bytes).

``dump(algorithm)`` pickles ``algorithm.__getstate__()`` when the class defines it, otherwise its
public attributes that pickle (engine handles such as indicators, and anything else that cannot
be pickled, are skipped and named once, so the user knows what a restart will not restore).
``load(algorithm, data)`` gives the state back through ``__setstate__`` when defined, otherwise
by setting the attributes. Runs after ``initialize``, so restored values win over initial ones.
"""

from __future__ import annotations

import pickle
from typing import Any

FORMAT = "pickle"


def _defines(algorithm: Any, name: str) -> bool:
    # object.__getstate__ exists on 3.11+; only a class's own definition counts.
    return any(name in vars(klass) for klass in type(algorithm).__mro__ if klass is not object)


def dump(algorithm: Any) -> tuple[str, bytes, list[str]]:
    """Returns (format, bytes, skipped attribute names)."""
    if _defines(algorithm, "__getstate__"):
        return FORMAT, pickle.dumps(algorithm.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL), []
    state: dict[str, Any] = {}
    skipped: list[str] = []
    for name, value in vars(algorithm).items():
        if name.startswith("_"):
            continue
        if type(value).__module__.startswith(("_rustybt", "rustybt_api")):
            skipped.append(name)
            continue
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            skipped.append(name)
            continue
        state[name] = value
    return FORMAT, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), skipped


def load(algorithm: Any, fmt: str, data: bytes) -> list[str]:
    """Restores a state from :func:`dump`; returns the attribute names restored."""
    if fmt != FORMAT:
        raise ValueError(f"unknown algorithm state format {fmt!r} (expected {FORMAT!r})")
    state = pickle.loads(data)
    if _defines(algorithm, "__setstate__"):
        algorithm.__setstate__(state)
        return sorted(state) if isinstance(state, dict) else []
    if not isinstance(state, dict):
        raise TypeError(
            f"the saved state is a {type(state).__name__}, not attributes; "
            f"define __setstate__ on {type(algorithm).__name__} to restore it"
        )
    for name, value in state.items():
        setattr(algorithm, name, value)
    return sorted(state)
