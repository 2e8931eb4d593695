"""``tune.search_space``: its two spellings, its floats, and the check that every value it can draw is valid.

The search space is nested, one mapping per config section, so that ``dvc exp run -S`` can address
a bound (``-S tune.search_space.train.lr.high=0.05``: -S splits keys at every dot, so it cannot
reach a key that holds one). The older flat spelling, ``train.lr: {...}``, is still read. Both
become one flat mapping ``"train.lr" -> spec`` inside the config, the form tune and the study
identity use.
"""

from __future__ import annotations

from typing import Any, Callable

from msc.core.errors import UserError
from msc.core.settings import as_float

SEARCH_KINDS = ("float", "int", "categorical")


def flat_search_space(space: Any, where: str) -> dict[str, Any]:
    """The nested or the flat spelling as ``{"train.lr": spec}``; float bounds read with ``as_float``."""
    if not isinstance(space, dict):
        raise UserError(f"{where} tune.search_space must be a mapping such as 'train: {{lr: {{type: float, ...}}}}', "
                        f"got {space!r}")
    flat = {}
    for key, value in space.items():
        if "." in str(key) or (isinstance(value, dict) and "type" in value):  # the flat spelling: train.lr: spec
            flat[str(key)] = value
        elif isinstance(value, dict):  # the nested spelling: train: {lr: spec}
            flat.update({f"{key}.{name}": spec for name, spec in value.items()})
        else:
            raise UserError(f"{where} tune.search_space.{key} must map parameter names to specs, such as "
                            f"'{key}: {{lr: {{type: float, low: 0.0001, high: 0.01}}}}'; got {value!r}")
    return {key: with_float_bounds(spec) for key, spec in flat.items()}


def with_float_bounds(spec: Any) -> Any:
    if isinstance(spec, dict) and spec.get("type") == "float":
        return {name: as_float(value) if name in ("low", "high", "step") else value for name, value in spec.items()}
    return spec


def check_search_space(space: dict[str, Any], train_fields: set[str], where: str,
                       validate: Callable[[str, Any], None]) -> None:
    """Each entry is ``train.<field>: {type: float|int|categorical, ...}``, like Optuna's API;
    ``validate(key, value)`` raises a UserError for a value the config refuses."""
    for key, spec in space.items():
        section, _, name = key.partition(".")
        if section != "train" or name not in train_fields:
            raise UserError(f"{where} tune.search_space: '{key}' is not a train key; use one of "
                            + ", ".join(f"train.{n}" for n in sorted(train_fields)))
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in SEARCH_KINDS:
            raise UserError(f"{where} tune.search_space.{key}: 'type' must be one of {', '.join(SEARCH_KINDS)}")
        required = {"choices"} if kind == "categorical" else {"low", "high"}
        allowed = required | {"type", "log", "step"}
        if not required <= set(spec) or set(spec) - allowed:
            raise UserError(
                f"{where} tune.search_space.{key}: a {kind} needs {', '.join(sorted(required))}"
                f" and may have {', '.join(sorted(allowed - required - {'type'}))}; got {sorted(spec)}"
            )
        # Every value a trial can draw must make a valid config: checked here, not 30 trials later.
        for value in spec["choices"] if kind == "categorical" else (spec["low"], spec["high"]):
            try:
                validate(key, value)
            except UserError as error:
                raise UserError(f"{where} tune.search_space.{key}: the value {value!r} is not allowed "
                                f"({str(error).removeprefix('override: ')})") from None
