"""Starting debugpy inside the embedded interpreter for ``rustybt run --debug``.

Compiled into the binary (src/python/debug.rs) rather than imported from pylib: importing
``rustybt_api`` needs numpy, and an interpreter without debugpy must get the "install debugpy"
message, not an unrelated import error. The host calls these once, before loading user code."""

from __future__ import annotations

import os

__all__ = ["DebugStartError", "listen", "wait_for_client"]


class DebugStartError(Exception):
    """Why the debugger could not start. ``kind`` is ``missing``, ``in_use`` or ``failed``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def listen(host: str, port: int, python: str) -> tuple[str, int, str]:
    """Starts debugpy listening for a DAP client on ``host:port`` (0: any free port).

    Returns the address clients connect to and debugpy's version."""
    # pydevd warns on stderr about frozen standard-library modules; they are not user code.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:
        import debugpy
    except ImportError as err:
        raise DebugStartError("missing", str(err)) from None

    # debugpy serves the client from a separate adapter process started as `<python> -m
    # debugpy.adapter`. We name the interpreter rustybt chose (the virtualenv's, with debugpy
    # installed) instead of trusting sys.executable, which in an embedding host can be the host
    # binary itself. The alternative, listen(in_process_debug_adapter=True), needs no helper
    # process, but in debugpy 1.8.22 a port that is already taken makes it hang forever (the
    # bind fails on a background thread and listen() keeps waiting for it); the adapter
    # process reports it as an error instead.
    debugpy.configure(python=python)
    import subprocess

    popen = subprocess.Popen

    def adapter_popen(*args, **kwargs):
        # The adapter daemonizes and lives on while a client is attached, even after rustybt
        # exits: it must not inherit our stdin/stdout/stderr, or `rustybt run ... | tee` (and a
        # test reading the output) waits until the debugger detaches. It reports its errors
        # through debugpy, not on stderr.
        for stream in ("stdin", "stdout", "stderr"):
            kwargs.setdefault(stream, subprocess.DEVNULL)
        return popen(*args, **kwargs)

    subprocess.Popen = adapter_popen  # only for this call: listen() starts the adapter with it
    try:
        address = debugpy.listen((host, port))
    except Exception as err:  # debugpy raises RuntimeError, ValueError or OSError
        text = str(err)
        kind = "in_use" if "in use" in text.lower() else "failed"
        raise DebugStartError(kind, text) from None
    finally:
        subprocess.Popen = popen
    client_host, client_port = address
    return str(client_host), int(client_port), str(getattr(debugpy, "__version__", "?"))


def wait_for_client() -> None:
    """Blocks until a client has attached and sent ``configurationDone`` (its breakpoints are
    set by then). Ctrl-C raises KeyboardInterrupt."""
    import debugpy

    debugpy.wait_for_client()
