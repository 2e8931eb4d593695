"""The typed loader every params.yaml section goes through: a frozen dataclass built from a mapping,
strictly. An unknown key, a value of the wrong type and a failed range check each stop the run with
one sentence naming the key (``file: key 'train.lr' must be of type float, got '1e-3x'``).

Each layer declares its own section (``msc.data.config.DataConfig``, ...) with ``require`` checks in
``__post_init__``; ``msc.config`` composes the sections and loads the file through ``build``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Literal

from msc.core.errors import UserError


def require(condition: bool, key: str, value: Any, rule: str) -> None:
    """Raise a UserError naming ``key`` unless ``condition``; the sections' range checks."""
    if not condition:
        raise UserError(f"key '{key}' is {value!r}; it {rule}")


def as_float(value: Any) -> Any:
    """``value`` as a float when it is a string Python's float() reads, else unchanged.

    PyYAML follows YAML 1.1, which reads ``1e-05``, ``1E-5`` and ``3e-4`` as strings (a float needs a
    dot there), and ``dvc exp run -S train.weight_decay=0.00001`` writes ``1e-05``.
    """
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` coerced to ``annotation`` (int -> float only), or raise UserError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):  # ``X | None``
        if value is None:
            return None
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return check_type(value, annotation, where)
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise UserError(f"{where} is {value!r}; it must be one of {', '.join(map(str, allowed))}")
        return value
    if origin in (dict, list):
        if not isinstance(value, origin):
            raise UserError(f"{where} must be a {origin.__name__}, got {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float:
        value = as_float(value)  # 1e-05 (what dvc exp run -S writes) is a string to YAML 1.1
    if annotation is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where} is {value!r}; it must be a finite number")
    if (annotation in (int, float) and isinstance(value, bool)) or not isinstance(value, annotation):
        raise UserError(f"{where} must be of type {annotation.__name__}, got {value!r}")
    return value


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """``cls``'s field annotations, evaluated once: they are strings (``from __future__ import annotations``),
    and evaluating them on every build cost a quarter of loading params.yaml, which checks each bound of the
    search space by building a whole config."""
    return typing.get_type_hints(cls)


def build(cls: type, values: Any, source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``values``, naming any unknown or mistyped key.

    ``source`` names the file for messages; ``prefix`` is the dotted path of ``cls`` in it. A field
    whose type is itself a dataclass (a section of the composed config) is built the same way.
    """
    if not isinstance(values, dict):
        raise UserError(f"{source}: '{prefix.rstrip('.') or 'the file'}' must be a mapping, got {values!r}")
    hints = field_types(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"{source}: unknown key '{prefix}{unknown[0]}'; the keys there are: "
            + ", ".join(f"{prefix}{k}" for k in sorted(known))
        )
    kwargs = {}
    for name, value in values.items():
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = build(hints[name], value or {}, source, f"{prefix}{name}.")
        else:
            kwargs[name] = check_type(value, hints[name], f"{source}: key '{prefix}{name}'")
    try:
        return cls(**kwargs)
    except UserError as error:  # a range check in __post_init__
        raise UserError(f"{source}: {error}") from None
