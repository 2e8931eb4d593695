"""The digests of a logged model's files: recorded when it is logged, checked before it runs.

``artifacts/digests.json`` maps every file that decides what the model computes to its sha256: the
entry ``pyfunc_entry.py``, each file under ``code/`` (the msc code it ships), ``artifacts/head.json``
and ``artifacts/head.safetensors``, and every file of a backbone the registered version bundles
(register.bundle_backbone). A registered version also carries the sha256 of digests.json itself as
its tag ``model_digest``, which a change inside the model cannot rewrite.

Standard library only, and importing nothing of msc: the entry loads this file by its path, after
checking this file's own digest, and runs ``model_problem`` before any other code of the model runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DIGESTS = "artifacts/digests.json"  # in the model folder
DIGEST_TAG = "model_digest"  # the registered version's tag: sha256 of digests.json
ENTRY = "pyfunc_entry.py"  # where MLflow puts the "model from code" file: the model folder's root
CODE = "code"
BYTECODE = "__pycache__"  # Python's caches of compiled modules, beside their sources


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def walk(top: Path, unreadable: list[str]):
    """``os.walk(top)``, noting in ``unreadable`` each folder it cannot list; a folder that vanishes meanwhile
    (another loader at work) is skipped. Linked folders are listed, not entered."""
    def note(error: OSError) -> None:
        if not isinstance(error, FileNotFoundError):
            unreadable.append(f"{error.filename} ({error.strerror})")

    return os.walk(top, onerror=note)


def shipped_code(code: Path) -> list[Path]:
    """The files under a model's ``code`` folder that Python may run: no bytecode caches. A symbolic link is
    listed as itself, not followed: no logged model holds one, so it shows as a file added after logging.
    OSError for a folder it cannot list."""
    found, unreadable = [], []
    for folder, subfolders, files in walk(code, unreadable):
        found += [Path(folder, name) for name in subfolders if Path(folder, name).is_symlink()]
        subfolders[:] = [name for name in subfolders if name != BYTECODE]
        found += [Path(folder, name) for name in files]
    if unreadable:
        raise OSError(f"cannot list {unreadable[0]}")
    return sorted(found)


def drop_bytecode(model: Path) -> str | None:
    """Remove every bytecode cache under ``model``; a sentence when it cannot vouch that none is left: a cache
    it cannot remove, a folder it cannot list, or a linked folder (which no logged model holds, and which a
    walk does not enter). digests.json covers no bytecode, and Python runs a cached .pyc instead of its
    checked source when the cache's header matches (an unchecked-hash pyc, PEP 552, always does), so a
    planted cache would run unchecked. Caches are derived: Python compiles them again from the checked
    sources. Files only, the folders stay: another process loading the same folder (src.serve's workers,
    spark_udf's) may be writing fresh caches into them."""
    redo = f"which digests.json does not cover: remove the model's {BYTECODE} folders, or load a writable copy"
    unreadable: list[str] = []
    for folder, subfolders, files in walk(model, unreadable):
        if linked := [name for name in subfolders if Path(folder, name).is_symlink()]:
            return (f"'{Path(folder, linked[0])}' is a symbolic link, which no logged model holds, and the bytecode "
                    "caches behind it cannot be checked: get the model again from its source")
        for name in files if BYTECODE in Path(folder).relative_to(model).parts else []:
            try:
                Path(folder, name).unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                return f"cannot remove the bytecode cache '{Path(folder, name)}' ({error.strerror}), {redo}"
    if unreadable:
        return f"cannot list the model's folder {unreadable[0]} for bytecode caches, {redo}"
    return None


def digests_text(files: dict[str, Path], model_config: dict) -> str:
    """digests.json for ``files`` (name in the model folder -> where the file is now) and the
    ``model_config`` the model is logged with (MLmodel, which MLflow writes afterwards, must keep it)."""
    digests = {name: sha256_of(path) for name, path in sorted(files.items())}
    return json.dumps({"files": digests, "model_config": model_config}, indent=1) + "\n"


def model_problem(folder: Path, expected_digest: str | None = None, shown_as: Path | None = None) -> str | None:
    """A sentence naming the first file of the model in ``folder`` that is not as it was logged (changed,
    missing or added under code/), or None; ``expected_digest``: the registered version's ``model_digest``;
    ``shown_as``: the folder the sentence names, where ``folder`` is a private copy of it."""
    shown = shown_as or folder
    record = folder / DIGESTS
    redo = ("get the model again from its source, or log and register it again (`python -m src.tune --force`); "
            "do not load it as it is")
    if not record.is_file():
        return f"the model in '{shown}' has no {DIGESTS}, so its files cannot be checked: {redo}"
    if expected_digest is not None and sha256_of(record) != expected_digest:
        return (f"'{shown / DIGESTS}' is not the one this model version was registered with (its tag {DIGEST_TAG} "
                f"says sha256 {expected_digest[:12]}...): the model's files were changed after registration; {redo}")
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as error:
        return f"'{shown / DIGESTS}' cannot be read ({error!r}): {redo}"
    try:
        present = {path.relative_to(folder).as_posix() for path in shipped_code(folder / CODE)}
    except OSError as error:
        return f"the model's code in '{shown / CODE}' cannot be checked ({error}): {redo}"
    for name in sorted(set(recorded) | present):
        path = folder / name
        if name not in recorded:
            return f"'{shown / name}' was added to the model after it was logged (it is not in {DIGESTS}): {redo}"
        if not path.is_file():
            return f"'{shown / name}' is missing from the model: {redo}"
        if sha256_of(path) != recorded[name]:
            return (f"'{shown / name}' was changed after the model was logged (its sha256 is not the one in "
                    f"{DIGESTS}): {redo}")
    return None
