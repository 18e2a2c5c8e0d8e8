"""Holds every Protocol of ``rustybt_api.types`` against the native class the engine passes.

Two halves:

* pure functions that compare a Protocol with a class, and a value with an annotation; the
  unit tests in ``test_types.py`` feed them hand-made classes;
* ``test_*`` functions that run only inside the rustybt host (``rustybt test`` on this file,
  as ``test_types.py`` does): they run a probe algorithm through the real engine, collect every
  object it is handed, and compare.

Compared: member names both ways (a renamed member on either side fails), property vs method,
each method's parameters (names, kinds, defaults) from the native text signatures, and each
property's value on the live object against the Protocol's return annotation (including
``Literal`` words and the native class of nested Protocols).
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


class _Empty(Protocol):
    pass


# What typing puts in every Protocol's namespace (it differs between Python versions).
_MACHINERY = frozenset(vars(_Empty)) | {"__annotations__"}
# Dunder methods that are part of an object's interface (the rest come from `object`).
_INTERFACE_DUNDERS = frozenset({"__len__", "__iter__", "__getitem__", "__contains__", "__call__"})


def protocols(module: types.ModuleType) -> dict[str, type]:
    """Every Protocol class defined in ``module``, private ones included."""
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and value.__module__ == module.__name__
        and getattr(value, "_is_protocol", False)  # typing.is_protocol from 3.13
    }


def protocol_members(proto: type) -> dict[str, Any]:
    return {name: value for name, value in vars(proto).items() if name not in _MACHINERY}


def class_members(cls: type) -> dict[str, Any]:
    """Public members of ``cls`` and the interface dunders it defines itself."""
    names = [n for n in dir(cls) if not n.startswith("_")]
    names += [n for n in _INTERFACE_DUNDERS if n in vars(cls)]
    return {name: inspect.getattr_static(cls, name) for name in names}


def _kind(member: Any) -> str:
    if isinstance(member, property) or inspect.isdatadescriptor(member):
        return "property"  # pyo3 getters and #[pyo3(get)] fields are getset descriptors
    return "method" if callable(member) else "attribute"


def _parameters(func: Any) -> list[tuple[str, str, str]]:
    """(name, kind, default) of each parameter after self; defaults compared by repr."""
    params = list(inspect.signature(func).parameters.values())[1:]
    return [
        (p.name, p.kind.name, "required" if p.default is p.empty else repr(p.default))
        for p in params
    ]


def _same_parameters(declared: list[tuple[str, str, str]], native: list[tuple[str, str, str]]) -> bool:
    """pyo3's text signatures show only None and literal defaults, others (-1) as `...`: then
    only whether there is a default can be compared."""
    if len(declared) != len(native):
        return False
    return all(
        d[:2] == n[:2] and (d[2] == n[2] or (n[2] == "Ellipsis" and d[2] != "required"))
        for d, n in zip(declared, native)
    )


def member_problems(proto: type, cls: type) -> list[str]:
    """How ``cls`` differs from ``proto``: missing or extra members, property vs method, and
    method parameters. Empty when they match."""
    name = f"{proto.__name__} (native {cls.__module__}.{cls.__qualname__})"
    wanted, found = protocol_members(proto), class_members(cls)
    problems = [f"{name}: `{m}` is in the Protocol but not on the native class" for m in sorted(set(wanted) - set(found))]
    problems += [f"{name}: `{m}` is on the native class but not in the Protocol" for m in sorted(set(found) - set(wanted))]
    for member in sorted(set(wanted) & set(found)):
        kinds = _kind(wanted[member]), _kind(found[member])
        if kinds[0] != kinds[1]:
            problems.append(f"{name}: `{member}` is a {kinds[0]} in the Protocol, a {kinds[1]} on the native class")
            continue
        if kinds[0] != "method":
            continue
        try:
            native = _parameters(getattr(cls, member))
        except (TypeError, ValueError):
            problems.append(f"{name}: `{member}` has no signature on the native class (no __text_signature__)")
            continue
        declared = _parameters(wanted[member])
        if not _same_parameters(declared, native):
            problems.append(f"{name}: `{member}` takes {declared} in the Protocol, {native} on the native class")
    return problems


def _numpy_names() -> dict[str, Any]:
    return {"np": np, "npt": npt}


def return_type(proto: type, member: str, globalns: dict[str, Any]) -> Any:
    """The evaluated return annotation of a Protocol property."""
    getter = protocol_members(proto)[member].fget
    return typing.get_type_hints(getter, globalns=globalns, localns=_numpy_names())["return"]


def matches(value: Any, annotation: Any, natives: dict[type, type]) -> bool:
    """Whether ``value`` is of type ``annotation``; a Protocol must be its native class
    (``natives``: Protocol -> native class)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg, natives) for arg in args)
    if origin is typing.Literal:
        return isinstance(value, str) and value in args
    if origin is np.ndarray:
        (scalar,) = typing.get_args(args[1])  # ndarray[shape, dtype[scalar]]
        return isinstance(value, np.ndarray) and value.dtype.type is scalar
    if origin is dict:
        return isinstance(value, dict) and all(
            matches(k, args[0], natives) and matches(v, args[1], natives) for k, v in value.items()
        )
    if origin is list:
        return isinstance(value, list) and all(matches(v, args[0], natives) for v in value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return isinstance(value, tuple) and all(matches(v, args[0], natives) for v in value)
        return isinstance(value, tuple) and len(value) == len(args) and all(
            matches(v, a, natives) for v, a in zip(value, args)
        )
    if annotation in natives:
        return type(value) is natives[annotation]
    if annotation is int or annotation is float:
        return type(value) is annotation  # not bool for int, not int for float
    return isinstance(value, annotation)


def value_problems(proto: type, obj: object, natives: dict[type, type], globalns: dict[str, Any]) -> list[str]:
    """Each property of ``proto`` read on the live ``obj`` and checked against its annotation."""
    problems = []
    for member, value in sorted(protocol_members(proto).items()):
        if not isinstance(value, property):
            continue
        annotation = return_type(proto, member, globalns)
        try:
            got = getattr(obj, member)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            problems.append(f"{proto.__name__}.{member} raised {error!r}")
            continue
        if not matches(got, annotation, natives):
            shown = repr(got) if not isinstance(got, np.ndarray) else f"ndarray[{got.dtype}]"
            problems.append(f"{proto.__name__}.{member} is {shown} ({type(got).__name__}), not {annotation}")
    return problems


# --- Inside the host: the probe ----------------------------------------------------------------

# Native classes that only own memory behind NumPy views; algorithms never receive them.
INTERNAL = {"SeriesBuffer", "OutputBuffer", "AggregateBuffer", "CrossSectionBuffer"}


def _probe_run() -> dict[str, list[object]]:
    """Every kind of object the engine hands an algorithm, by the Protocol describing it."""
    from rustybt_api import Algorithm, Indicator
    from rustybt_api.testing import backtest, generate_bars

    seen: dict[str, list[object]] = {}

    def keep(proto: str, obj: object) -> None:
        seen.setdefault(proto, []).append(obj)

    class BarProbe(Indicator):
        def update(self, bar: object) -> float:
            if len(seen.get("Bar", [])) < 3:
                keep("Bar", bar)
            return 0.0

    class Probe(Algorithm):
        def initialize(self, ctx: Any) -> None:
            keep("Context", ctx)
            keep("_Engine", self._rustybt)
            keep("_Schedules", self._engine().schedules)
            keep("Logger", self.log)
            keep("IndicatorHandle", self.indicator("SMA", "TEST", timeperiod=3))
            keep("IndicatorHandle", self.indicator("MACD", "TEST", timeframe="5m"))
            self.indicator(BarProbe, "TEST")

        def on_tick(self, ctx: Any) -> None:
            if len(ctx.history("TEST")) == 30:
                keep("Bars", ctx.history("TEST"))
                keep("Bars", ctx.history("TEST", "5m"))  # a higher timeframe: `count` is set
                keep("Portfolio", ctx.portfolio)
                keep("Order", self.buy("TEST", 2))
                keep("Order", self.sell("TEST", 1, limit="100000", tif="day"))

        def on_order(self, event: Any) -> None:
            keep("OrderEvent", event)

        def on_fill(self, fill: Any) -> None:
            keep("Fill", fill)

    backtest(Probe, list(generate_bars(60, seed=5)), symbol="TEST")
    return seen


def test_every_protocol_matches_the_native_class_the_engine_passes() -> None:
    import _rustybt  # only inside the host

    from rustybt_api import types as api_types

    here = Path(__file__).resolve().parents[2]
    assert Path(api_types.__file__).resolve().parents[2] == here, (
        f"the host loaded {api_types.__file__}, not this tree's pylib: set RUSTYBT_HOME={here}"
    )
    seen = _probe_run()
    protos = protocols(api_types)
    assert set(protos) == set(seen), "every Protocol of types.py needs a probe here (and back)"
    natives: dict[type, type] = {}
    for name, objects in seen.items():
        classes = {type(obj) for obj in objects}
        assert len(classes) == 1, f"{name}: the engine passes several classes {classes}"
        (cls,) = classes
        assert cls.__module__ == "_rustybt", f"{name}: {cls} is not native"
        natives[protos[name]] = cls
    problems = []
    for name, proto in sorted(protos.items()):
        problems += member_problems(proto, natives[proto])
        for obj in seen[name]:
            problems += value_problems(proto, obj, natives, vars(api_types))
    assert not problems, "\n".join(problems)

    described = {cls.__name__ for cls in natives.values()}
    exposed = {n for n, v in vars(_rustybt).items() if isinstance(v, type) and v.__module__ == "_rustybt"}
    assert exposed - described == INTERNAL, "a native class without a Protocol in types.py"

