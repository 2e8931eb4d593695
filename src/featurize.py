"""Stage ``featurize``: compute or reuse the frozen-backbone feature cache (msc/features/build.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from msc.core.errors import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compute or reuse the frozen-backbone feature cache.")
    parser.add_argument("--params", default="params.yaml", help="the configuration file (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is fresh, and replace "
                        "features.dir even when it is not a feature cache")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--shard", metavar="I/N", help="build only shard I of N (1 <= I <= N) of the cache, into "
                       "<features.dir>/shards/I-of-N/, on any machine; merge the shards with --merge")
    split.add_argument("--merge", action="store_true", help="check the shard folders in <features.dir>/shards/ "
                       "(one build, every post once) and write the one cache from them")
    args = parser.parse_args(argv)
    # The library (torch, transformers) is imported after the arguments: --help answers at once.
    from msc.config import load_config
    from msc.core.errors import log_crashes_in, step
    from msc.core.files import check_output_folder
    from msc.core.owned import holds_handoff, refuse_foreign
    from msc.features.build import featurize
    from msc.features.manifest import MANIFEST, CacheManifest

    config = load_config(args.params)
    log_crashes_in(config.paths.logs)
    if args.shard is not None or args.merge:
        return in_shards(config, args)
    folder = Path(config.features.dir)  # a rebuild replaces the whole folder: refuse one that is not a cache
    check_output_folder(folder.parent, "features.dir")  # the cache is built beside it and swapped in
    ours = args.force or holds_handoff(folder / MANIFEST, CacheManifest.NAME)
    refuse_foreign([("features.dir", folder, ours)], "featurize", "--force")
    started = time.perf_counter()
    with step(f"checking the data in {config.data.root} and computing the feature cache {config.features.dir}"):
        cache, built = featurize(config.data, config.model, config.features, force=args.force)
    state = f"built in {time.perf_counter() - started:.1f}s" if built else "fresh, reused"
    skipped = len(cache.manifest.skipped)
    warn_fallbacks(cache)
    print(f"feature cache {cache.folder}/ {state}: {len(cache.guids)} samples "
          f"({cache.n_labelled} labelled, {cache.augment_views} augmented views each"
          + (f", {skipped} labelled skipped" if skipped else "") + f"), fingerprint {cache.fingerprint[:12]}")
    return 0


def warn_fallbacks(cache) -> None:
    """A warning naming the texts read as a fallback codec or with replaced characters, if any."""
    from msc.features.manifest import MANIFEST

    if fallbacks := cache.manifest.text_fallbacks:
        shown = ", ".join(f"{guid} ({how})" for guid, how in list(fallbacks.items())[:10])
        print(f"warning: {len(fallbacks)} texts were not UTF-8 or GB18030 and were read as cp1252, as UTF-16 or "
              "UTF-32 without a byte-order mark, or with replaced characters: "
              f"{shown}{', …' if len(fallbacks) > 10 else ''}. If they read wrong, set data.text_encoding to their "
              f"codec (list in {cache.folder / MANIFEST}, key text_fallbacks)",
              file=sys.stderr)


def in_shards(config, args: argparse.Namespace) -> int:
    """``--shard i/n`` or ``--merge`` (msc/features/shards.py, msc/features/merge.py)."""
    from msc.core.errors import step
    from msc.core.files import check_output_folder
    from msc.core.owned import holds_handoff, refuse_foreign
    from msc.features.manifest import MANIFEST, CacheManifest
    from msc.features.merge import STAGING, merge_shards
    from msc.features.shards import SHARD_MANIFEST, SHARDS, ShardManifest, build_shard, parse_shard

    folder = Path(config.features.dir)
    started = time.perf_counter()
    if args.shard is not None:
        shard, shards = parse_shard(args.shard)
        target = folder / SHARDS / f"{shard}-of-{shards}"
        check_output_folder(target.parent, "features.dir")
        ours = args.force or holds_handoff(target / SHARD_MANIFEST, ShardManifest.NAME)
        refuse_foreign([("the shard folder", target, ours)], "featurize", "--force")
        with step(f"computing shard {shard} of {shards} of the feature cache into {target}"):
            cache, built = build_shard(config.data, config.model, config.features, shard, shards, force=args.force)
        state = f"built in {time.perf_counter() - started:.1f}s" if built else "fresh, reused"
        warn_fallbacks(cache)
        print(f"feature cache shard {cache.folder}/ {state}: {len(cache.guids)} samples ({cache.n_labelled} labelled); "
              f"when all {shards} are in {folder / SHARDS}/, run `python -m src.featurize --merge`")
        return 0
    # The merged cache is written into features.dir beside the shards: a folder holding only them is ours.
    ours = args.force or holds_handoff(folder / MANIFEST, CacheManifest.NAME) or (
        folder.is_dir() and {entry.name for entry in folder.iterdir()} <= {SHARDS, STAGING})
    refuse_foreign([("features.dir", folder, ours)], "featurize", "--force")
    with step(f"merging the shards in {folder / SHARDS} into the feature cache {folder}"):
        cache, shards = merge_shards(config.data, config.model, config.features, args.params)
    warn_fallbacks(cache)
    print(f"feature cache {cache.folder}/ merged from {shards} shards in {time.perf_counter() - started:.1f}s: "
          f"{len(cache.guids)} samples ({cache.n_labelled} labelled, {cache.augment_views} augmented views each), "
          f"fingerprint {cache.fingerprint[:12]}")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
