"""A small Debug Adapter Protocol client for tests: what VS Code does when it attaches, over TCP.

Messages are ``Content-Length: N\\r\\n\\r\\n<json>`` frames. Every wait has a deadline, so a
debugger that never answers fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable


class DapError(AssertionError):
    """The adapter refused a request, closed the connection, or did not answer in time."""


class DapClient:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.timeout = timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=2)
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise DapError(f"cannot connect to {host}:{port}: {err}") from err
                time.sleep(0.1)
        self._buffer = b""
        self._seq = 0
        # Messages read while waiting for another one, in arrival order.
        self.pending: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []

    # -- sending and receiving ------------------------------------------------------------

    def send(self, command: str, **arguments: Any) -> int:
        """Sends a request and returns its sequence number (see :meth:`response`)."""
        self._seq += 1
        message = {"seq": self._seq, "type": "request", "command": command, "arguments": arguments}
        body = json.dumps(message).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self._seq

    def request(self, command: str, timeout: float | None = None, **arguments: Any) -> dict[str, Any]:
        """Sends a request and returns the body of its (successful) response."""
        return self.response(self.send(command, **arguments), timeout)

    def response(self, seq: int, timeout: float | None = None) -> dict[str, Any]:
        message = self.wait_for(
            lambda m: m.get("type") == "response" and m.get("request_seq") == seq,
            f"the response to request {seq}",
            timeout,
        )
        if not message.get("success"):
            raise DapError(f"{message.get('command')} failed: {message.get('message')} {message}")
        return message.get("body") or {}

    def event(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        """Waits for the next event called ``name`` and returns its body."""
        message = self.wait_for(
            lambda m: m.get("type") == "event" and m.get("event") == name, f"a {name!r} event", timeout
        )
        return message.get("body") or {}

    def wait_for(
        self, matches: Callable[[dict[str, Any]], bool], what: str, timeout: float | None = None
    ) -> dict[str, Any]:
        for i, message in enumerate(self.pending):
            if matches(message):
                return self.pending.pop(i)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            message = self._read(deadline, what)
            if matches(message):
                return message
            self.pending.append(message)

    def _read(self, deadline: float, what: str) -> dict[str, Any]:
        while True:
            header_end = self._buffer.find(b"\r\n\r\n")
            if header_end >= 0:
                headers = self._buffer[:header_end].decode("ascii").split("\r\n")
                length = next(
                    int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")
                )
                start = header_end + 4
                if len(self._buffer) >= start + length:
                    body = self._buffer[start : start + length]
                    self._buffer = self._buffer[start + length :]
                    message = json.loads(body)
                    self.seen.append(message)
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise DapError(f"timed out waiting for {what}; received: {self._summary()}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise DapError(f"the connection closed while waiting for {what}; received: {self._summary()}")
            self._buffer += chunk

    def _summary(self) -> str:
        return ", ".join(m.get("event") or m.get("command") or m.get("type", "?") for m in self.seen[-40:])

    # -- the steps of a session ------------------------------------------------------------

    def attach(self, breakpoints: dict[str, list[int]], **attach_arguments: Any) -> None:
        """initialize → attach → (initialized) → setBreakpoints → configurationDone, the way an
        IDE attaches. The adapter answers `attach` only after `configurationDone`."""
        # debugpy rejects an `attach` whose arguments are empty.
        attach_arguments.setdefault("justMyCode", True)
        self.request("initialize", adapterID="debugpy", clientID="rustybt-tests",
                     pathFormat="path", linesStartAt1=True, columnsStartAt1=True)
        attach_seq = self.send("attach", **attach_arguments)
        self.event("initialized")
        for path, lines in breakpoints.items():
            self.set_breakpoints(path, lines)
        self.request("configurationDone")
        self.response(attach_seq)

    def set_breakpoints(self, path: str, lines: list[int]) -> list[dict[str, Any]]:
        body = self.request(
            "setBreakpoints", source={"path": path}, breakpoints=[{"line": line} for line in lines]
        )
        return body.get("breakpoints", [])

    def top_frame(self, thread_id: int) -> dict[str, Any]:
        frames = self.request("stackTrace", threadId=thread_id, startFrame=0, levels=20)["stackFrames"]
        assert frames, "the stopped thread has no frames"
        return frames[0]

    def locals_of(self, frame_id: int) -> dict[str, str]:
        """Variable name → displayed value of the frame's Locals scope."""
        scopes = self.request("scopes", frameId=frame_id)["scopes"]
        scope = next(s for s in scopes if s["name"].lower().startswith("locals"))
        variables = self.request("variables", variablesReference=scope["variablesReference"])["variables"]
        return {v["name"]: v["value"] for v in variables}

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
