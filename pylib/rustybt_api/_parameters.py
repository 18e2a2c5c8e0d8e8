"""Parameters of user classes: their public, non-callable class attributes, and ``Param``, a
parameter that also declares the space ``rustybt optimize`` searches."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from types import GenericAlias

TYPE_CHECKING = False  # not `typing`'s: importing it (with `re`) costs ~4 ms of every start
if TYPE_CHECKING:
    from typing import Any, Generic, Sequence, TypeVar, overload

    T = TypeVar("T")
else:
    # What `Param` needs of `typing` at run time, without importing it.
    T = "T"

    def overload(func):  # the undecorated definition after the overloads is the one kept
        return func

    class Generic:
        """``class Param(Generic[T])`` and ``Param[int]`` (a ``types.GenericAlias``, as
        ``list[int]`` is) without ``typing``."""

        __slots__ = ()

        def __class_getitem__(cls, item):
            return cls if cls is Generic else GenericAlias(cls, item)

__all__ = [
    "Param", "ParameterError", "class_parameters", "convert_text", "parameter_space", "parse_space",
]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ParameterError(ValueError):
    """A parameter override the class does not accept; ``hint`` says what it does accept."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Param(Generic[T]):
    """A parameter with the space an optimizer searches::

        fast = Param(10, low=5, high=50, step=5)        # int grid 5, 10, ... 50
        risk = Param(0.01, low=0.001, high=0.1, log=True) # float, sampled on a log scale
        kind = Param("ema", choices=["sma", "ema"])      # categorical

    On an instance it reads as its value (``self.fast`` is an ``int``); on the class it is the
    ``Param``. ``rustybt run --param fast=15`` sets a value, which must lie in the space.
    A plain class attribute (``fast = 10``) stays a fixed parameter.
    """

    __slots__ = ("default", "low", "high", "step", "log", "choices", "name")

    def __init__(
        self,
        default: T,
        *,
        low: T | None = None,
        high: T | None = None,
        step: T | None = None,
        log: bool = False,
        choices: Sequence[T] | None = None,
    ) -> None:
        self.default = default
        self.low, self.high, self.step, self.log = low, high, step, log
        self.choices: tuple[T, ...] | None = tuple(choices) if choices is not None else None
        self.name = ""
        self._check_declaration()

    def _check_declaration(self) -> None:
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            if ranged or self.step is not None or self.log:
                raise ValueError("Param: give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("Param: choices is empty")
            if self.default not in self.choices:
                raise ValueError(f"Param: default {self.default!r} is not one of choices {list(self.choices)!r}")
            return
        if not ranged:
            if self.step is not None or self.log:
                raise ValueError("Param: step and log need low and high")
            return
        if self.low is None or self.high is None:
            raise ValueError("Param: give both low and high")
        if isinstance(self.default, bool) or not isinstance(self.default, (int, float, Decimal)):
            raise ValueError(f"Param: low/high need a number default, not {type(self.default).__name__}")
        for label, bound in (("low", self.low), ("high", self.high), ("step", self.step)):
            if bound is not None and not _same_kind(bound, self.default):
                raise ValueError(
                    f"Param: {label}={bound!r} is a {type(bound).__name__} but the default is a "
                    f"{type(self.default).__name__}"
                )
        low, high = _number(self.low), _number(self.high)
        if not low < high:
            raise ValueError(f"Param: low {self.low!r} must be below high {self.high!r}")
        if self.step is not None and not _number(self.step) > 0:
            raise ValueError(f"Param: step {self.step!r} must be positive")
        if self.log and (self.step is not None or not low > 0):
            raise ValueError("Param: log=True needs low > 0 and no step")
        if not low <= _number(self.default) <= high:
            raise ValueError(f"Param: default {self.default!r} is outside [{self.low!r}, {self.high!r}]")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Param[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | Param[T]:
        if obj is None:
            return self
        value: T = obj.__dict__.get(self.name, self.default)
        return value

    def __set__(self, obj: object, value: T) -> None:
        # The algorithm may change its own parameter while it runs; only overrides are checked.
        obj.__dict__[self.name] = value

    @property
    def kind(self) -> str:
        """``fixed``, ``categorical``, ``int``, ``float`` or ``decimal``."""
        if self.choices is not None:
            return "categorical"
        if self.low is None:
            return "fixed"
        if isinstance(self.default, int):
            return "int"
        return "decimal" if isinstance(self.default, Decimal) else "float"

    def check(self, value: Any) -> None:
        """Raises ``ValueError`` when ``value`` lies outside the declared space."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{value!r} is not one of {list(self.choices)!r}")
        elif self.low is not None and self.high is not None:
            if not _number(self.low) <= _number(value) <= _number(self.high):
                raise ValueError(f"{value!r} is outside the declared range [{self.low!r}, {self.high!r}]")

    def parse(self, text: str) -> T:
        """Command-line text as a value of this parameter, checked against the space."""
        if self.choices is not None and not isinstance(self.default, (bool, int, float, Decimal)):
            matches = [c for c in self.choices if str(c) == text]
            if not matches:
                raise ValueError(f"`{text}` is not one of {[str(c) for c in self.choices]!r}")
            return matches[0]
        value: T = convert_text(text, self.default)
        self.check(value)
        return value

    def values(self) -> list[T]:
        """Every value of a finite space, in order (what a grid search tries)."""
        if self.choices is not None:
            return list(self.choices)
        if self.low is None:
            return [self.default]
        if self.step is None:
            raise ValueError(f"parameter `{self.name}` has no step: a grid needs one (or choices)")
        low, high, step = (_exact(v) for v in (self.low, self.high, self.step))
        count = int((high - low) // step) + 1
        exact = [low + i * step for i in range(count)]
        return [_like(v, self.default) for v in exact]

    def __repr__(self) -> str:
        parts = [repr(self.default)]
        for label in ("low", "high", "step"):
            if getattr(self, label) is not None:
                parts.append(f"{label}={getattr(self, label)!r}")
        if self.log:
            parts.append("log=True")
        if self.choices is not None:
            parts.append(f"choices={list(self.choices)!r}")
        return f"Param({', '.join(parts)})"


def _same_kind(value: object, default: object) -> bool:
    if isinstance(default, Decimal):
        return isinstance(value, (Decimal, int)) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (float, int)) and not isinstance(value, bool)
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> Decimal:
    """Compares ints, floats and Decimals exactly (a float by its exact binary value)."""
    return Decimal(value)


def _exact(value: Any) -> Decimal:
    """A grid bound as the decimal the user wrote (``0.1`` is 0.1, not its binary value)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _like(value: Decimal, default: T) -> T:
    if isinstance(default, bool):
        raise TypeError("a bool parameter has no range")
    if isinstance(default, int):
        return int(value)  # type: ignore[return-value]
    if isinstance(default, float):
        return float(value)  # type: ignore[return-value]
    return value  # type: ignore[return-value]


def convert_text(text: str, default: Any) -> Any:
    """Converts command-line text to the type of the parameter's default value."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"`{text}` is not a boolean (use true or false)")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"`{text}` is not an integer") from None
    if isinstance(default, float):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"`{text}` is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"`{text}` is not a finite number")
        return value
    if isinstance(default, Decimal):
        try:
            exact = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"`{text}` is not a decimal number") from None
        if not exact.is_finite():
            raise ValueError(f"`{text}` is not a finite decimal number")
        return exact
    if isinstance(default, str):
        return text
    import ast  # only here: importing it costs ~1 ms of every start

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_space(param: Param[Any], text: str) -> Param[Any]:
    """A space given on the command line for ``param``: ``5:50:5`` (low:high:step), ``5:50``
    (low:high), ``a,b,c`` (choices) or one value (fixed). Values take the default's type."""
    default = param.default
    try:
        if ":" in text:
            bounds = [convert_text(part, default) for part in text.split(":")]
            if len(bounds) not in (2, 3):
                raise ValueError(f"`{text}` is not low:high or low:high:step")
            low, high, *step = bounds
            inside = default if low <= default <= high else low
            space: Param[Any] = Param(inside, low=low, high=high, step=step[0] if step else None,
                                      log=param.log and not step)
        elif "," in text:
            choices = [param.parse(part) if param.choices else convert_text(part, default)
                       for part in text.split(",")]
            space = Param(default if default in choices else choices[0], choices=choices)
        else:
            space = Param(convert_text(text, default))
    except ValueError as err:
        raise ParameterError(f"invalid space for parameter `{param.name}`: {err}") from None
    space.name = param.name
    return space


def class_parameters(cls: type, base: type, reserved: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Public, non-callable class attributes of ``cls`` and its bases below ``base``, minus
    ``reserved``; a subclass's value wins over its base's. A ``Param`` stays a ``Param``."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is base or not issubclass(klass, base):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in reserved:
                continue
            if callable(value) or isinstance(value, (property, classmethod, staticmethod)):
                continue
            found[name] = value
    return found


def parameter_space(attributes: dict[str, Any]) -> dict[str, Param[Any]]:
    """Every parameter as a ``Param``: a plain attribute becomes a fixed one."""
    space: dict[str, Param[Any]] = {}
    for name, value in attributes.items():
        param = value if isinstance(value, Param) else Param(value)
        if not param.name:
            param.name = name
        space[name] = param
    return space
