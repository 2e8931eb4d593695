"""The feature cache built in shards on several machines, then merged into the one cache.

``python -m src.featurize --shard i/n`` caches the posts of shard i (1 to n): those whose guid's
SHA-256 is i - 1 modulo n, an assignment every machine computes alike with no coordination. The
shard is a cache of its own posts in ``<features.dir>/shards/i-of-n/`` (msc/features/build.py, built
beside it and renamed into place, so a killed run leaves no shard), its texts padded to the fixed
``features.max_text_tokens`` so that shards line up, and a ``shard.json``. Every shard of one build
has the same fingerprint: the cache's (settings, backbone, libraries, preprocessing code) over the
data *listing* rather than every file's bytes, which only the shard's own machine reads; it records
its posts' file digests instead. ``--merge`` checks the shards, trims the texts to the longest one,
and writes the cache a one-process featurize writes, fingerprint included.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from msc.core.errors import UserError
from msc.core.files import file_lock
from msc.core.handoff import HandOff, read_handoff, write_handoff
from msc.data.config import DataConfig
from msc.data.posts import Dataset
from msc.features.build import build_and_swap, listed_posts
from msc.features.cache import FeatureCache, cache_lock
from msc.features.config import FeaturesConfig
from msc.features.manifest import cache_fingerprint, fresh_manifest
from msc.features.screen import report_screening, sample_digest, screen_samples
from msc.model.config import ModelConfig
from msc.model.provenance import backbone_identity

SHARDS = "shards"  # <features.dir>/shards/<i>-of-<n>/
SHARD_MANIFEST = "shard.json"
SHARD_NAME = re.compile(r"(\d+)-of-(\d+)")
LEFTOVERS = (".tmp", ".old", ".lock")  # what build_and_swap and its lock leave beside a shard: never a shard


@dataclass(frozen=True)
class ShardManifest(HandOff):
    """``shard.json``: which shard of which build the cache beside it holds."""

    NAME: ClassVar[str] = "cache-shard"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "feature cache shard manifest"
    WRITTEN_BY: ClassVar[str] = "`python -m src.featurize --shard i/n`"

    shard: int  # i, counted from 1
    shards: int  # n
    fingerprint: str  # shard_fingerprint: the same in every shard of one build
    text_width: int  # the texts' tokenized width here: the merged cache's is the widest shard's
    digests: dict  # guid -> sample_digest of every post of this shard, kept or skipped


def parse_shard(spelling: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), 1 <= i <= n; a sentence for anything else."""
    match = re.fullmatch(r"(\d+)/(\d+)", spelling.strip())
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise UserError(f"--shard {spelling!r} is not a shard i/n with 1 <= i <= n (shards are counted from 1): "
                        "write, for example, --shard 1/4, 2/4, 3/4 and 4/4 on four machines")
    return int(match[1]), int(match[2])


def shard_of(guid: str, shards: int) -> int:
    """The shard (1..n) that holds post ``guid``: stable across machines and Python runs (hash() is salted)."""
    return int.from_bytes(hashlib.sha256(guid.encode()).digest()[:8], "big") % shards + 1


def shards_folder(features: FeaturesConfig) -> Path:
    return Path(features.dir) / SHARDS


def shard_fingerprint(data: DataConfig, model: ModelConfig, features: FeaturesConfig, listed: Dataset,
                      identity: str) -> str:
    """The cache's fingerprint over the listing files' bytes (the posts, their order and labels) in place
    of every sample file's, which a shard's machine reads for its own posts only; wherever each machine
    keeps the data and the backbone."""
    listing = hashlib.sha256()
    for label_file in listed.label_files:
        listing.update(label_file.read_bytes())
    return cache_fingerprint(data, model, features, f"listing:{listing.hexdigest()}", identity, located=False)


def read_shard(folder: Path) -> ShardManifest:
    return read_handoff(ShardManifest, folder / SHARD_MANIFEST)


def build_shard(data: DataConfig, model: ModelConfig, features: FeaturesConfig, shard: int, shards: int,
                force: bool = False) -> tuple[FeatureCache, bool]:
    """Cache shard ``shard`` of ``shards`` unless an intact one of this build is there; the bool says
    whether it was built."""
    listed = listed_posts(data)
    identity = backbone_identity(model.backbone, model.revision)
    fingerprint = shard_fingerprint(data, model, features, listed, identity)
    folder = shards_folder(features) / f"{shard}-of-{shards}"

    def fresh() -> bool:  # an intact shard of this build: a re-run (of a loop over the shards) skips it
        manifest = None if force else fresh_manifest(folder, fingerprint)
        if manifest is None or manifest.fingerprint != fingerprint:
            return False
        try:
            done = read_shard(folder)
        except UserError:  # shard.json damaged or removed: rebuilt
            return False
        return (done.fingerprint, done.shard, done.shards) == (fingerprint, shard, shards)

    if fresh():
        return FeatureCache(folder), False
    with file_lock(cache_lock(folder)):  # one builder per shard on a machine
        if fresh():
            return FeatureCache(folder), False
        cache_shard(data, model, features, listed, shard, shards, folder, fingerprint, identity)
    return FeatureCache(folder), True


def cache_shard(data: DataConfig, model: ModelConfig, features: FeaturesConfig, listed: Dataset, shard: int,
                shards: int, folder: Path, fingerprint: str, identity: str) -> None:
    """Screen and cache the posts of shard ``shard`` into ``folder``, with its shard.json."""
    mine = replace(listed, labelled=[s for s in listed.labelled if shard_of(s.guid, shards) == shard],
                   test=[s for s in listed.test if shard_of(s.guid, shards) == shard])
    if not mine.samples:
        raise UserError(f"shard {shard}/{shards} holds none of the {len(listed.samples)} posts listed in "
                        f"{data.root}: use fewer shards")
    screening = screen_samples(mine, data.on_error)
    report_screening(screening)
    digests = {sample.guid: sample_digest(sample) for sample in mine.samples}

    def finish(staging: Path, width: int) -> None:
        write_handoff(staging / SHARD_MANIFEST, ShardManifest(shard, shards, fingerprint, width, digests), indent=None)

    # The data fingerprint of the shard's own files; the merge computes the whole data's from the digests.
    build_and_swap(screening, data, model, features, folder, fingerprint, hashlib.sha256(
        "".join(digests.values()).encode()).hexdigest(), identity, features.max_text_tokens, finish)
