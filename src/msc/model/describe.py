"""One line that names a backbone in reports, without loading it (no torch)."""

from __future__ import annotations

import json

from msc.core.paths import local_folder


def random_weights(name: str) -> bool:
    """Whether ``name`` is a random-weight backbone from ``python -m src.sample``: those carry
    ``msc_random_weights`` in their config.json, so a report made with one is never mistaken for a
    CLIP result."""
    folder = local_folder(name)
    config_file = folder / "config.json" if folder is not None else None
    return bool(config_file is not None and config_file.is_file()
                and json.loads(config_file.read_text()).get("msc_random_weights"))


def describe_backbone(name: str) -> str:
    """One line for reports: the backbone's name, and a warning when its weights are random."""
    folder = local_folder(name)
    if folder is not None and (folder / "config.json").is_file():
        if random_weights(name):
            return (f"`{name}`: **random weights** written by `python -m src.sample`. These numbers test the "
                    "pipeline; they are not CLIP results")
        return f"`{name}` (local folder)"
    return f"`{name}` (Hugging Face hub)"
