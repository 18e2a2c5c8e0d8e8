"""The algorithm's own state across live restarts (the host journals the bytes).

``dump(algorithm, client_ids)`` pickles ``algorithm.__getstate__()`` when the class defines it,
otherwise its public attributes that pickle. Attributes that cannot be saved (engine objects
such as indicators, anything that does not pickle) are skipped; their names and the reason are
kept in the saved state, so the restart can say what it did not restore and why.

``Order`` handles are saved by reference, wherever they sit (an attribute, a dict, a list, a
user object): as the journal's client order id. ``load`` re-binds each to the order of that id:
the live engine order when this session still tracks it (an exchange order left open), else a
read-only :class:`JournalOrder` with the journal's final status, fills and price.

``load(algorithm, fmt, data, orders)`` gives the state back through ``__setstate__`` when the
class defines it, otherwise by setting the attributes. Runs after ``initialize``, so restored
values win over initial ones. ``orders`` maps the client order ids of :func:`order_ids` to a
live handle or to the journal's fields of that order.
"""

from __future__ import annotations

import io
import pickle
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from ..errors import OrderError

FORMAT = "pickle"
#: Reserved key of an attribute state: {name: why it was not saved}. Attribute names starting
#: with ``_`` are never saved, so it cannot clash with one.
DROPPED = "__rustybt_dropped__"
#: Persistent ids of ``Order`` handles in a pickle.
ORDER_REF = "rustybt.order"
ORDER_SNAPSHOT = "rustybt.order.snapshot"

_OPEN = frozenset({"new", "accepted", "triggered", "partially_filled"})
_FIELDS = ("id", "client_order_id", "symbol", "side", "quantity", "status", "filled_quantity",
           "fill_price", "fees", "order_type", "limit", "stop", "tif", "reason", "submitted_at_ns")


class JournalOrder:
    """An order of an earlier session, re-bound from the journal after a restart.

    Reads like an ``Order`` handle (``status``, ``is_open``, ``filled_quantity``,
    ``fill_price``…) with the values the journal holds; it no longer lives in the engine, so
    ``cancel()`` returns False and ``modify()`` raises ``OrderError``.
    """

    __slots__ = _FIELDS
    id: int | None
    client_order_id: str | None
    symbol: str | None
    side: str | None
    quantity: Decimal | None
    status: str | None
    filled_quantity: Decimal | None
    fill_price: Decimal | None
    fees: Decimal | None
    order_type: str | None
    limit: Decimal | None
    stop: Decimal | None
    tif: str | None
    reason: str | None
    submitted_at_ns: int | None

    def __init__(self, **fields: Any) -> None:
        for name in _FIELDS:
            object.__setattr__(self, name, fields.get(name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN

    @property
    def average_price(self) -> Decimal | None:
        return self.fill_price

    @property
    def submitted_at(self) -> datetime | None:
        ns = self.submitted_at_ns
        return None if ns is None else datetime.fromtimestamp(ns / 1e9, timezone.utc)

    def cancel(self) -> bool:
        return False

    def modify(self, quantity: Any = None, price: Any = None) -> None:
        raise OrderError(
            f"order {self.client_order_id or self.id} belongs to an earlier session and is "
            f"{self.status}: it cannot be modified"
        )

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JournalOrder):
            return self._fields() == other._fields()
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.client_order_id, self.id))

    def __repr__(self) -> str:
        return (f"<JournalOrder {self.client_order_id} {self.order_type} {self.side} {self.quantity} "
                f"{self.symbol} {self.status}>")


def _defines(algorithm: Any, name: str) -> bool:
    # object.__getstate__ exists on 3.11+; only a class's own definition counts.
    return any(name in vars(klass) for klass in type(algorithm).__mro__ if klass is not object)


def _is_order_handle(value: Any) -> bool:
    kind = type(value)
    return kind.__module__ == "_rustybt" and kind.__name__ == "Order"


def _snapshot_of(order: Any) -> dict[str, Any]:
    """The fields of an engine order that never reached the journal (e.g. rejected at once)."""
    submitted = order.submitted_at
    return {
        "id": order.id, "client_order_id": None, "symbol": order.symbol, "side": order.side,
        "quantity": order.quantity, "status": order.status, "filled_quantity": order.filled_quantity,
        "fill_price": order.fill_price, "fees": order.fees, "order_type": order.order_type,
        "limit": order.limit, "stop": order.stop, "tif": order.tif, "reason": order.reason,
        "submitted_at_ns": None if submitted is None else int(submitted.timestamp()) * 10**9,
    }


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, client_ids: dict[int, str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.client_ids = client_ids

    def persistent_id(self, obj: Any) -> Any:  # noqa: D102 (pickle's hook)
        if isinstance(obj, JournalOrder):
            if obj.client_order_id is not None:
                return (ORDER_REF, obj.client_order_id, obj.id)
            return (ORDER_SNAPSHOT, obj._fields())
        if _is_order_handle(obj):
            client_id = self.client_ids.get(obj.id)
            if client_id is not None:
                return (ORDER_REF, client_id, obj.id)
            return (ORDER_SNAPSHOT, _snapshot_of(obj))
        return None


def _dumps(value: Any, client_ids: dict[int, str]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, client_ids).dump(value)
    return buffer.getvalue()


def _why_not(value: Any, client_ids: dict[int, str]) -> str | None:
    """Why ``value`` cannot be saved, or None when it can."""
    is_order = _is_order_handle(value) or isinstance(value, JournalOrder)
    if not is_order and type(value).__module__.startswith(("_rustybt", "rustybt_api")):
        return f"an engine object ({type(value).__name__}): set it up again in initialize"
    try:
        _dumps(value, client_ids)
    except Exception as e:  # noqa: BLE001 (any pickling failure is a reason to skip)
        return f"it does not pickle: {type(e).__name__}: {e}"
    return None


def dump(algorithm: Any, client_ids: dict[int, str] | None = None) -> tuple[str, bytes, list[str]]:
    """Returns (format, bytes, skipped attributes as ``name (why)``)."""
    ids = client_ids or {}
    if _defines(algorithm, "__getstate__"):
        return FORMAT, _dumps(algorithm.__getstate__(), ids), []
    state: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for name, value in vars(algorithm).items():
        if name.startswith("_"):
            continue
        why = _why_not(value, ids)
        if why is None:
            state[name] = value
        else:
            dropped[name] = why
    if dropped:
        state[DROPPED] = dropped
    return FORMAT, _dumps(state, ids), [f"{name} ({why})" for name, why in dropped.items()]


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, resolve: Callable[[str, Any], Any]) -> None:
        super().__init__(file)
        self.resolve = resolve

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 (pickle's hook)
        if isinstance(pid, tuple) and pid and pid[0] == ORDER_REF:
            return self.resolve(pid[1], pid[2])
        if isinstance(pid, tuple) and pid and pid[0] == ORDER_SNAPSHOT:
            return JournalOrder(**pid[1])
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r} in the saved state")


def order_ids(fmt: str, data: bytes) -> list[str]:
    """The client order ids the saved state refers to (the host looks them up for :func:`load`)."""
    _check_format(fmt)
    seen: list[str] = []

    def note(client_id: str, engine_id: Any) -> None:
        if client_id not in seen:
            seen.append(client_id)

    _Unpickler(io.BytesIO(data), note).load()
    return seen


def _check_format(fmt: str) -> None:
    if fmt != FORMAT:
        raise ValueError(f"unknown algorithm state format {fmt!r} (expected {FORMAT!r})")


def load(algorithm: Any, fmt: str, data: bytes,
         orders: dict[str, Any] | None = None) -> tuple[str, int, str]:
    """Restores a state from :func:`dump`. Returns what was restored (the attribute names, or
    ``through `Class.__setstate__```, or ``no attributes``), how many ``Order`` handles were
    re-bound, and what was not restored and why (empty when nothing was dropped)."""
    _check_format(fmt)
    known = orders or {}
    bound: dict[str, Any] = {}

    def resolve(client_id: str, engine_id: Any) -> Any:
        if client_id not in bound:
            found = known.get(client_id)
            if found is None:
                found = JournalOrder(id=engine_id, client_order_id=client_id, status="unknown",
                                     reason="not in the journal")
            elif isinstance(found, dict):
                found = JournalOrder(**{"id": engine_id, **found})
            bound[client_id] = found
        return bound[client_id]

    state = _Unpickler(io.BytesIO(data), resolve).load()
    dropped: dict[str, str] = state.pop(DROPPED, {}) if isinstance(state, dict) else {}
    if _defines(algorithm, "__setstate__"):
        algorithm.__setstate__(state)
        restored = f"through `{type(algorithm).__name__}.__setstate__`"
    elif not isinstance(state, dict):
        raise TypeError(
            f"the saved state is a {type(state).__name__}, not attributes; "
            f"define __setstate__ on {type(algorithm).__name__} to restore it"
        )
    else:
        for name, value in state.items():
            setattr(algorithm, name, value)
        restored = ", ".join(sorted(state)) if state else "no attributes"
    not_restored = ", ".join(f"{name} ({why})" for name, why in dropped.items())
    return restored, len(bound), not_restored
