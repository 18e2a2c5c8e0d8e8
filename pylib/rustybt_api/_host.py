"""Helpers the host calls while loading and reloading user code. Not part of the public API."""

from __future__ import annotations

import os
import sys
from types import ModuleType

TYPE_CHECKING = False  # not `typing`'s: importing it (with `re`) costs ~4 ms of every start
if TYPE_CHECKING:
    from typing import Any, Collection

__all__ = [
    "guard_streams",
    "purge_modules",
    "restore_modules",
    "user_module_dirs",
    "user_module_files",
    "carry_state",
    "upgrade_indicator",
]


def _under(path: str | None, roots: list[str]) -> bool:
    if not path:
        return False
    path = os.path.abspath(path)
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _pylib() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _system_roots() -> list[str]:
    """Folders that never hold the user's own modules: the interpreter's prefixes, every
    site-packages, the stdlib, and pylib. (Without ``sysconfig``: importing it and its data
    module cost several ms of every start; the stdlib is where ``os`` came from.)"""
    import site

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, _pylib()}
    roots.add(os.path.dirname(os.__file__))
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # some embedded or virtualenv set-ups lack these
        pass
    return sorted(os.path.abspath(r) for r in roots if r)


def _is_local_file(path: str | None, system: list[str]) -> bool:
    """A ``.py`` file outside the interpreter's and pylib's folders: a user module. (Its own
    folder is then one of :func:`user_module_dirs`, so no list of those is needed.)"""
    return (
        bool(path)
        and str(path).endswith(".py")  # never an extension module: those cannot load twice
        and "site-packages" not in str(path)
        and not _under(path, system)
    )


def _is_user_module(path: str | None, roots: list[str], system: list[str]) -> bool:
    return _is_local_file(path, system) and _under(path, roots)


def purge_modules(roots: list[str], keep: str | None = None) -> dict[str, ModuleType]:
    """Removes from sys.modules every module of the user's own (a ``.py`` file under ``roots``
    or another local folder, see :func:`user_module_dirs`, and not in the interpreter's or
    pylib's folders), so the next import reads it fresh. Returns them, to restore on failure."""
    system = _system_roots()
    removed = {}
    for name, module in list(sys.modules.items()):
        if name == keep:
            continue
        if _is_local_file(getattr(module, "__file__", None), system):
            removed[name] = sys.modules.pop(name)
    return removed


def restore_modules(saved: dict[str, ModuleType]) -> None:
    """Puts back modules removed by :func:`purge_modules` (after a failed reload), replacing
    any version the rejected code imported in the meantime."""
    for name, module in saved.items():
        sys.modules[name] = module


def user_module_dirs(exclude: list[str]) -> list[str]:
    """Folders of imported modules that are the user's own: not in the standard library,
    site-packages, or any of ``exclude`` (pylib). These are watched for hot reload."""
    system = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    skip = [*system, *(os.path.abspath(p) for p in exclude)]
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py") or "site-packages" in path:
            continue
        if _under(path, skip):
            continue
        found.add(os.path.dirname(os.path.abspath(path)))
    return sorted(found)


def user_module_files(skip_prefix: str, keep: str, before: Collection[str] | None = None) -> list[str]:
    """The files of the user's own modules now imported (see :func:`purge_modules`), except the
    host's modules of other algorithms (names starting with ``skip_prefix``; ``keep`` is the one
    being loaded). Called right after an algorithm file ran: its load purged every user module
    first, so these are exactly the local modules it imported, directly or through each other.
    ``before``: the names in ``sys.modules`` just before the file ran; only the modules added
    since are looked at (with pandas imported, walking all of ``sys.modules`` cost ~1.4 ms)."""
    system = _system_roots()
    modules = sys.modules
    names = list(modules) if before is None else [n for n in list(modules) if n not in before]
    found = set()
    for name in names:
        if name.startswith(skip_prefix) and name != keep:
            continue
        path = getattr(modules.get(name), "__file__", None)
        if _is_local_file(path, system):
            found.add(os.path.realpath(str(path)))
    return sorted(found)


def carry_state(old: Any, new: Any) -> None:
    """Moves the state of a running algorithm instance to its reloaded replacement:
    ``__getstate__``/``__setstate__`` when the class defines them, else the instance dict."""
    new._rustybt = old._rustybt  # first, so __setstate__ may already log or place orders
    getstate = getattr(type(old), "__getstate__", None)
    custom_get = getstate is not None and getstate is not getattr(object, "__getstate__", None)
    if custom_get:
        state = old.__getstate__()
        setstate = getattr(new, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        elif isinstance(state, dict):
            new.__dict__.update(state)
        else:
            raise TypeError(
                f"{type(old).__name__}.__getstate__ returned {type(state).__name__}, not a dict; "
                "define __setstate__ to take it"
            )
    else:
        new.__dict__.update(old.__dict__)
    new._rustybt = old._rustybt


def upgrade_indicator(old: Any) -> Any:
    """The reloaded version of a custom indicator instance, or None when its class did not
    change: the class is looked up afresh by module and qualified name, built with the old
    instance's parameters, and given its state like an algorithm (see :func:`carry_state`)."""
    from .indicator import Indicator, indicator_parameters

    cls = type(old)
    found: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    if found is None or found is cls or not isinstance(found, type):
        return None
    if not issubclass(found, Indicator):
        raise TypeError(f"{cls.__qualname__} is no longer an Indicator subclass after the reload")
    kept = indicator_parameters(cls)
    params = {k: getattr(old, k) for k in indicator_parameters(found) if k in kept}
    new = found(**params)
    getstate = getattr(cls, "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
        state = old.__getstate__()
        setstate = getattr(new, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:
            new.__dict__.update(state)
    else:
        new.__dict__.update(old.__dict__)
    return new


class _PipeSafeStream:
    """``sys.stdout``/``sys.stderr`` whose reader may go away (``rustybt run ... | head``):
    output to a closed pipe is dropped (the descriptor is pointed at ``os.devnull``, as the
    host does for its own writes) instead of raising BrokenPipeError into the algorithm."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Wraps sys.stdout and sys.stderr once in :class:`_PipeSafeStream`."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _PipeSafeStream):
            setattr(sys, name, _PipeSafeStream(stream))
