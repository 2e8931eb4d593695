"""No command replaces what it did not write.

A command that replaces a folder (the sample's dataset and backbone, the benchmark's work folder,
the feature cache) or files of fixed names in a folder a user chose (the split's, the ablation's)
first asks ``refuse_foreign``: what is missing, empty, or known to be the command's own may be
replaced; anything else is a user's, and the command stops with one sentence naming it and the flag
that allows it. A folder is known as the command's own by a mark file inside it (``mark``), or by
the hand-off file the command writes beside its outputs (``holds_handoff``; the cache's manifest),
so that re-running a command over its own previous output still works."""

from __future__ import annotations

import json
from pathlib import Path

from msc.core.errors import UserError
from msc.core.files import atomic_write_text
from msc.core.handoff import SCHEMA_KEY

SAMPLE_MARK = ".msc-sample"  # in the dataset and the backbone folders that `python -m src.sample` writes
BENCHMARK_MARK = ".msc-benchmark"  # in the work folder of `python -m src.benchmark`


def is_empty_or_missing(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def refuse_foreign(targets: list[tuple[str, Path, bool]], command: str, flag: str) -> None:
    """Stop before ``command`` replaces any of ``targets`` (``(where, folder, ours)``: the option or key
    naming the folder, such as ``--out``, the folder, and whether it is known to be the command's own)
    when it holds files and is not known to be ours; ``flag`` allows it. All are checked before any is
    written, and one sentence names every such folder."""
    foreign = [(where, folder) for where, folder, ours in targets if not ours and not is_empty_or_missing(folder)]
    if not foreign:
        return
    named = " and ".join(f"{where} '{folder}'" for where, folder in foreign)
    many = len(foreign) > 1
    raise UserError(f"{named} already {'exist' if many else 'exists'} and {'were' if many else 'was'} not written by "
                    f"`python -m src.{command}`, which would replace {'them' if many else 'it'}; choose another "
                    f"{' and '.join(dict.fromkeys(where for where, _ in foreign))}, or add {flag} to replace "
                    f"{'them' if many else 'it'}")


def holds_handoff(path: Path, name: str) -> bool:
    """Whether ``path`` is a hand-off file of schema ``name`` (any version; msc/core/handoff.py): the mark of
    a stage whose outputs are files in a folder that may hold others, such as results/."""
    try:
        tag = json.loads(path.read_text(encoding="utf-8")).get(SCHEMA_KEY, "")
    except (OSError, ValueError, AttributeError):
        return False
    return str(tag).partition("@")[0] == name


def has_mark(folder: Path, mark_name: str) -> bool:
    return (folder / mark_name).is_file()


def mark(folder: Path, mark_name: str, command: str) -> None:
    """Leave ``command``'s mark in ``folder`` (a constant text, so the folder's digest stays reproducible)."""
    atomic_write_text(folder / mark_name, f"written by `python -m src.{command}`; it replaces this folder when run "
                      "again. Delete this file to keep the folder from being replaced.\n")
