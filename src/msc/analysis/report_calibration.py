"""The report's section on the registered model's probabilities: what its calibration and label rule did
on the holdout, the coverage its label sets reached, and the posts whose given label is most likely
wrong, with their tweet and a thumbnail. Read from what the tune stage wrote (metrics.json,
label_issues.csv), so it describes the version in Production, not the ablation's heads."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from msc.analysis.report_text import markdown_table, one_line
from msc.data.dataset import read_posts
from msc.data.posts import DataSource
from msc.data.text import raw_post_text

TOP_ISSUES = 10  # label issues shown in the report; label_issues.csv has every labelled row it ranked
THUMBNAIL = 96  # px, the longer side of a thumbnail
THUMBNAILS = "label_issues"  # under figures/


def coverage_lines(holdout: dict, labels: tuple[str, ...]) -> list[str]:
    """The label sets' coverage and mean size on the holdout, overall and per true label, at each coverage
    metrics.json has (``holdout.label_sets``); a sentence when the model has none."""
    sets = holdout.get("label_sets")
    if not sets:
        return ["The registered version has no conformal label sets (registered before them): `python -m src.tune` "
                "registers one that has.", ""]
    header = ["asked", "reached", "mean set size", "empty sets",
              *[f"{label}: reached, mean size (rows)" for label in labels]]
    body = []
    for asked, report in sets.items():
        per_class = [("n/a" if c["coverage"] is None else f"{c['coverage']:.3f}, {c['mean_set_size']:.2f} ({c['rows']})")
                     for c in (report["per_class"][label] for label in labels)]
        body.append([asked, f"{report['coverage']:.3f}", f"{report['mean_set_size']:.2f}",
                     f"{report['empty_sets']:.1%}", *per_class])
    return ["Label sets (`src.predict --coverage C`, the served model's `coverage` param) on the holdout: the share "
            "of posts whose set holds the true label, against the coverage asked. The guarantee is on average over "
            "posts like the out-of-fold rows; per class it holds only with `--class-conditional`.", "",
            markdown_table(header, body), ""]


def thumbnail(image: Path | None, out: Path) -> bool:
    """A small JPEG of ``image`` at ``out``; False when there is no readable image."""
    if image is None or not image.is_file():
        return False
    try:
        with Image.open(image) as opened:
            small = opened.convert("RGB")
            small.thumbnail((THUMBNAIL, THUMBNAIL))
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    small.save(out, format="JPEG", quality=85)
    return True


def issue_lines(issues_csv: Path, source: DataSource, encoding: str, figures: Path) -> list[str]:
    """The first TOP_ISSUES rows of label_issues.csv with their tweet and a thumbnail (in figures/)."""
    if not issues_csv.is_file():
        return [f"No `{issues_csv.name}` (written by `python -m src.tune` since issue 32): run the tune stage to rank "
                "the label issues.", ""]
    with issues_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return ["The registered version has no label issues logged with it (registered before they were ranked).", ""]
    try:
        posts = {post.guid: post for post in read_posts(source, with_test=False).labelled}
    except Exception:  # noqa: BLE001 - the data moved or changed since tune: the table stays, without texts
        posts = {}
    body = []
    for row in rows[:TOP_ISSUES]:
        post = posts.get(row["id"])
        name = f"{THUMBNAILS}/{len(body)}.jpg"  # by rank: an id may hold characters a file name cannot
        image = f"![]({figures.name}/{name})" if post and thumbnail(post.image_path, figures / name) else ""
        text = one_line(raw_post_text(post, encoding) or "") if post else "(not in the data now)"
        body.append([row["id"], row["given_label"], row["suggested_label"], f"{float(row['score']):.3f}", image, text])
    return [f"The {len(body)} labelled posts whose given label is most likely wrong (cleanlab's label quality of "
            f"the out-of-fold probabilities, lowest first; all {len(rows)} in [{issues_csv.name}]({issues_csv.name})):",
            "", markdown_table(["id", "given", "suggested", "score", "image", "text"], body, "lllrll"), ""]


def calibration_section(holdout: dict, labels: tuple[str, ...], issues_csv: Path, source: DataSource, encoding: str,
                        figures: Path) -> list[str]:
    """The section's lines: ``holdout`` is metrics.json's, ``issues_csv`` label_issues.csv, ``source`` the
    data the posts come from, ``figures`` the report's figures folder."""
    if "ece" not in holdout:  # a summary that registered nothing it could score (the ablation's own tests write one)
        return ["## The registered model's probabilities", "", "`metrics.json` holds no holdout scores of a registered "
                "model: run `python -m src.tune` to register one.", ""]
    kind = holdout.get("calibration", "temperature")
    ece = (f"expected calibration error {holdout['ece']:.3f} with its `{kind}` map, "
           f"{holdout.get('ece_temperature_only', holdout['ece']):.3f} with the temperature alone "
           f"(T = {holdout['temperature']:.3f}), {holdout['ece_uncalibrated']:.3f} raw")
    loss = ""
    if "log_loss" in holdout:  # metrics.json written since the log loss was added
        loss = (f" Its log loss is {holdout['log_loss']:.3f} ({holdout['log_loss_temperature_only']:.3f} with the "
                f"temperature alone, {holdout['log_loss_uncalibrated']:.3f} raw).")
        if (holdout["ece"] < holdout["ece_uncalibrated"]) != (holdout["log_loss"] < holdout["log_loss_uncalibrated"]):
            loss += (" The two disagree on whether the map helped; trust the log loss, which scores the probability of "
                     "every post's true class, where the ECE bins the top probability alone and is noisy on a small "
                     "holdout.")
    return ["## The registered model's probabilities", "",
            f"On the holdout, the version in Production (`results/metrics.json`) has an {ece}, and its label rule "
            f"gives accuracy {holdout['accuracy']:.3f} and weighted F1 {holdout['weighted_f1']:.3f}.{loss} The label is "
            "the argmax of the calibrated probabilities times per-class weights fitted for `train.select_metric`, so a "
            "post can be labelled with a class whose probability is not the largest (docs/calibrated-probabilities.md "
            "says why).", "",
            *coverage_lines(holdout, labels),
            *issue_lines(issues_csv, source, encoding, figures)]
