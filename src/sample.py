"""Stage-free helper ``python -m src.sample``: the offline sample dataset (msc/data/synthetic.py) and a
tiny random-weight backbone of any family (msc/model/tiny.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from msc.core.errors import cli
from msc.core.files import check_output_folder
from msc.core.labels import COURSE_LABELS
from msc.core.owned import SAMPLE_MARK, has_mark, refuse_foreign
from msc.data.synthetic import FORMATS, parse_labels, write_dataset
from msc.model.tiny import FAMILIES, SHAPES, write_backbone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic dataset and a random-weight CLIP.")
    parser.add_argument("--out", type=Path, default=Path("data"), help="dataset folder (default: data)")
    parser.add_argument("--n", type=int, default=800, help="number of samples, labelled and test (default: 800)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples and the backbone's weights "
                        "(default: 0)")
    parser.add_argument("--format", choices=FORMATS, default="mvsa", help="mvsa (default): the course's layout; "
                        "table: DIR/posts.csv with id,text,image_path,label and DIR/images/")
    parser.add_argument("--labels", default=",".join(COURSE_LABELS),
                        help=f"comma-separated label names, 2 or more (default: {','.join(COURSE_LABELS)})")
    parser.add_argument("--backbone-out", type=Path, help="the backbone's folder (default: models/tiny-clip, "
                        "the sample's model.backbone)")
    parser.add_argument("--backbone-shape", choices=sorted(SHAPES), default="tiny",
                        help="tiny (default; 224 px images), tiny-32px (the tests' backbone: 32 px images) or vit-b-32, "
                             "ViT-B/32's shape for benchmarks")
    parser.add_argument("--backbone-family", choices=FAMILIES, default="clip",
                        help="the backbone's family: clip (default) or siglip")
    parser.add_argument("--no-data", action="store_true", help="write only the backbone")
    parser.add_argument("--force", action="store_true", help="replace --out and --backbone-out even when they hold "
                        f"files that src.sample did not write (it marks its own with a {SAMPLE_MARK} file)")
    parser.add_argument("--tokenizer", type=Path, help="a folder with CLIP's BPE vocab.json and merges.txt (such as "
                        "../shared/clip-bpe): the backbone tokenizes as the real CLIP does (default: the sample's "
                        "small vocabulary)")
    args = parser.parse_args(argv)
    from msc.model.backbone import SAMPLE_BACKBONE  # torch: after the arguments, so --help answers at once

    args.backbone_out = args.backbone_out or Path(SAMPLE_BACKBONE)
    labels = parse_labels(args.labels)
    # Both folders are checked before either is written: a refusal leaves everything as it was.
    targets = ([] if args.no_data else [("--out", args.out)]) + [("--backbone-out", args.backbone_out)]
    for where, folder in targets:
        check_output_folder(folder, where)
    refuse_foreign([(where, folder, args.force or has_mark(folder, SAMPLE_MARK)) for where, folder in targets],
                   "sample", "--force")
    if not args.no_data:
        summary = write_dataset(args.out, args.n, args.seed, labels, args.format)
        accuracy = summary["bayes_accuracy"]
        print(f"wrote {args.n} samples to {args.out}/ (Bayes-optimal accuracy: text {accuracy['text']:.4f}, "
              f"image {accuracy['image']:.4f}, both {accuracy['both']:.4f}; see {args.out}/bayes.json)")
        if args.format == "table":
            print(f"labels {', '.join(labels)}; to use it, set data.format: table, data.root: {args.out}, data.table: posts.csv")
    write_backbone(args.backbone_out, args.backbone_shape, args.seed, args.tokenizer, args.backbone_family)
    vocabulary = f"CLIP's BPE from {args.tokenizer}" if args.tokenizer else "the sample's vocabulary"
    print(f"wrote a random-weight {args.backbone_shape} {args.backbone_family} backbone with {vocabulary} to "
          f"{args.backbone_out}/")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
