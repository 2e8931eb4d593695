"""Files one stage hands the next: each has one schema, a frozen dataclass, written and read here.

A file carries ``"schema": "<name>@<version>"`` beside its fields. A reader refuses, with one
sentence naming the file and the command that writes it again, a file that is missing, is not
JSON, names another schema (a foreign file), or has another version (stale, or newer than this
code). The string form keeps the version out of DVC's numeric metrics (``results/metrics.json``
is one of these files).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from msc.core.errors import UserError
from msc.core.files import atomic_write_text

SCHEMA_KEY = "schema"


@dataclasses.dataclass(frozen=True)
class HandOff:
    """Base of every hand-off schema. Subclasses set the class variables and their fields."""

    NAME: ClassVar[str]  # "cache-manifest": what the schema key names
    VERSION: ClassVar[int]  # bumped whenever a field is added, removed or changes meaning
    WHAT: ClassVar[str]  # "feature cache manifest": for sentences
    WRITTEN_BY: ClassVar[str]  # "`python -m src.featurize` (or `dvc repro featurize`)"
    # An older version still read, -> the values of the fields it lacks (a registered model's head.json
    # outlives the code that wrote it); any other version is refused.
    UPGRADES: ClassVar[dict[int, dict[str, Any]]] = {}

    @classmethod
    def tag(cls) -> str:
        return f"{cls.NAME}@{cls.VERSION}"

    def to_dict(self) -> dict[str, Any]:
        return {SCHEMA_KEY: self.tag(), **dataclasses.asdict(self)}

    @classmethod
    def stored_keys(cls) -> set[str]:
        """The keys a file of this schema holds besides ``schema``: its fields, unless a schema stores
        a nested record's fields at the top level (it then overrides this, ``to_dict`` and ``from_dict``)."""
        return {field.name for field in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls(**{key: data[key] for key in cls.stored_keys()})


Record = TypeVar("Record", bound=HandOff)


def write_handoff(path: str | os.PathLike, record: HandOff, indent: int | None = 2) -> None:
    """Write ``record`` atomically as JSON with its schema tag."""
    atomic_write_text(path, json.dumps(record.to_dict(), indent=indent, sort_keys=indent is not None) + "\n")


def read_handoff(schema: type[Record], path: str | os.PathLike) -> Record:
    """The ``schema`` record in ``path``, or a UserError saying what is wrong and how to fix it."""
    path = Path(path)
    redo = f"run {schema.WRITTEN_BY}"
    if not path.is_file():
        raise UserError(f"no {schema.WHAT} at '{path}': {redo} first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UserError(f"'{path}' is not a readable {schema.WHAT} ({error}): {redo} again") from None
    tag = data.get(SCHEMA_KEY) if isinstance(data, dict) else None
    name, _, version = str(tag).partition("@")
    if tag is None:
        raise UserError(f"'{path}' has no schema tag, so it was written before msc {schema.WHAT} files were "
                        f"versioned (this code reads {schema.tag()}): {redo} again")
    if name != schema.NAME:
        raise UserError(f"'{path}' is a {name!r} file, not a {schema.WHAT} ({schema.tag()}): point at the right "
                        f"file, or {redo}")
    upgrade = schema.UPGRADES.get(int(version)) if version.isdigit() else None
    if version != str(schema.VERSION) and upgrade is None:
        newer = version.isdigit() and int(version) > schema.VERSION
        raise UserError(f"'{path}' is a {schema.WHAT} of version {version}, and this code reads version "
                        f"{schema.VERSION}; " + ("update this checkout, or " if newer else "") + f"{redo} again")
    data = {**(upgrade or {}), **data}
    missing = sorted(schema.stored_keys() - set(data))
    if missing:
        raise UserError(f"'{path}' lacks {', '.join(missing)} although it says {tag}; it was edited or damaged: "
                        f"{redo} again")
    return schema.from_dict(data)
