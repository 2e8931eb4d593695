"""Where the project is, also from inside a DVC temporary experiment copy."""

from __future__ import annotations

import os
from pathlib import Path

DVC_TEMP_EXPERIMENTS = os.path.join(".dvc", "tmp", "exps")


def project_root(start: Path | None = None) -> Path:
    """The repository root; from inside ``.dvc/tmp/exps/<copy>``, the outer repository's.

    ``dvc exp run --temp`` and queued experiments run in such a copy, which is deleted
    afterwards: anything that must outlive the experiment (MLflow runs, the Optuna study,
    git-ignored local backbones) is looked up from the outer root.
    """
    here = (start or Path.cwd()).resolve()
    text = str(here) + os.sep
    marker = os.sep + DVC_TEMP_EXPERIMENTS + os.sep
    return Path(text[: text.index(marker)]) if marker in text else here


def local_folder(name: str) -> Path | None:
    """``name`` as an existing folder: as given, else relative to the project root."""
    for candidate in (Path(name), project_root() / name):
        if candidate.is_dir():
            return candidate
    return None


def plainly_a_path(name: str) -> bool:
    """``name`` can only mean a folder: ``./``, ``../``, ``/`` or ``~`` first, or its parent folder
    exists (``models/tiny-clip`` once ``models/`` is there). A hub id (``org/model``) is none of these."""
    if name.startswith(("./", "../", "/", "~", ".\\", "..\\")):
        return True
    parent = Path(name).parent
    return parent != Path(".") and any(p.is_dir() for p in (parent, project_root() / parent))
