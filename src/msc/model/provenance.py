"""Which backbone exactly: its identity, recorded where features are made and checked where a model loads.

A hub id is identified as ``hub:<id>@<commit>``: ``model.revision`` (``main``, a tag) resolved to the
commit it names now, online or from the local Hugging Face cache (its ``refs/<revision>``), so that a
moved ``main`` is another backbone. A local folder is identified as ``folder:<sha256>`` of its files'
names and bytes. featurize records the identity in the cache's manifest and fingerprint; tune in each
run's params and ``head.json``; the logged model loads a hub backbone by the recorded commit and refuses
a backbone of another identity (``checked_revision``) unless the caller accepts the change on purpose.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

from msc.core.errors import UserError
from msc.model.backbone import backbone_folder, offline_help

HUB, FOLDER = "hub:", "folder:"
ACCEPT_KEY = "accept_backbone_change"  # model_config key: load a backbone of another identity, with a warning
ACCEPT_ENV = "MSC_ACCEPT_BACKBONE_CHANGE"  # the same for callers that cannot pass a model_config


# (folder, each file's name, inode, size and mtime) -> digest: a process that loads models over one
# folder many times (tune logs and loads a model per trial) reads a real backbone's ~600 MB once.
DIGESTS: dict[tuple, str] = {}


def folder_digest(folder: Path) -> str:
    """sha256 over the names and bytes of the files directly in ``folder`` (config, weights, tokenizer)."""
    files = sorted(path for path in folder.iterdir() if path.is_file())
    stats = [(path.name, (stat := path.stat()).st_ino, stat.st_size, stat.st_mtime_ns) for path in files]
    key = (str(folder.resolve()), *stats)
    if key not in DIGESTS:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        DIGESTS[key] = digest.hexdigest()
    return DIGESTS[key]


def hub_commit(name: str, revision: str) -> str:
    """The commit that ``revision`` of the hub model ``name`` names: asked of the hub when it is
    reachable, else read from the local cache (``HF_HUB_OFFLINE=1`` reads only the cache)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        # The file lands in (or is read from) <cache>/models--<org>--<name>/snapshots/<commit>/config.json.
        return Path(hf_hub_download(name, "config.json", revision=revision)).parent.name
    except (OSError, ValueError, EntryNotFoundError) as error:
        raise UserError(f"{offline_help(name)}; resolving its revision '{revision}' to a commit failed with "
                        f"{type(error).__name__}") from None


def backbone_identity(name: str, revision: str) -> str:
    """``hub:<id>@<commit>`` for a hub id, ``folder:<sha256>`` for a local folder."""
    folder = backbone_folder(name)
    return f"{FOLDER}{folder_digest(folder)}" if folder else f"{HUB}{name}@{hub_commit(name, revision)}"


def identity_commit(identity: str | None) -> str | None:
    """The commit of a hub identity; None for a folder's (or none recorded)."""
    return identity.rpartition("@")[2] if identity and identity.startswith(HUB) else None


def accepts_change(model_config: dict | None) -> bool:
    """Whether the caller loads a backbone of another identity on purpose (model_config or environment)."""
    return bool((model_config or {}).get(ACCEPT_KEY)) or os.environ.get(ACCEPT_ENV, "") not in ("", "0")


def current_identity(reference: str, revision: str) -> str:
    """``reference``'s identity now, or what stops it from having one (for the sentence)."""
    try:
        return backbone_identity(reference, revision)
    except UserError:
        return f"not available here at revision '{revision}'"


def checked_revision(recorded: str | None, reference: str, revision: str, accept: bool) -> str:
    """The revision to load the backbone ``reference`` with, once it has the ``recorded`` identity
    (head.json's ``backbone_identity``): a hub backbone is loaded by its recorded commit, a folder is
    hashed. Another identity is a sentence (what was expected, what was found, how to get the right
    one or accept the change); with ``accept``, a warning, and ``revision`` as configured is loaded."""
    if recorded is None:
        warnings.warn(f"this model was logged before msc recorded backbone identities, so it cannot check that "
                      f"'{reference}' is the backbone its head was trained on; register it again (`python -m "
                      "src.tune`) to have it checked", stacklevel=2)
        return revision
    commit = identity_commit(recorded)
    if commit is not None and backbone_folder(reference) is None:
        found = current_identity(reference, commit)
        if found == recorded:
            return commit
        found = f"{found}, and its '{revision}' is {current_identity(reference, revision)}"
        fix = f"download that commit (`huggingface-cli download {reference} --revision {commit}`)"
    else:
        found = current_identity(reference, revision)
        if found == recorded:
            return revision
        fix = ("put the backbone's original files back (register.bundle_backbone: true makes a version carry its own "
               "copy), or train on the new backbone (`python -m src.featurize`, then `python -m src.tune`)")
    sentence = (f"the backbone '{reference}' is not the one this model's head was trained on: its head.json records "
                f"{recorded}, and '{reference}' is {found}; {fix}, or accept the change on purpose (the head then runs "
                f"on features it was not trained on) with model_config={{'{ACCEPT_KEY}': True}} or {ACCEPT_ENV}=1")
    if not accept:
        raise UserError(sentence)
    warnings.warn(f"accepted on purpose: {sentence}", stacklevel=2)
    return revision
