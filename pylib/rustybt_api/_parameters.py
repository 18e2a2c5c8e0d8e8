"""Parameters of user classes: their public, non-callable class attributes."""

from __future__ import annotations

from typing import Any

__all__ = ["class_parameters"]


def class_parameters(cls: type, base: type, reserved: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Public, non-callable class attributes of ``cls`` and its bases below ``base``, minus
    ``reserved``; a subclass's value wins over its base's."""
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
