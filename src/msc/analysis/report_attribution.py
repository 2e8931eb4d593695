"""The report's section on what drove the analysed head's predictions: the modality attribution by
error kind and by class, and the token and patch evidence of its most confident errors."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from PIL import Image

from msc.analysis.report_figures import save_figure
from msc.analysis.report_text import markdown_table, one_line
from msc.data.images import open_image
from msc.model.explain import drivers
from msc.track.figures import plt

CORRECT = "correct"


def groups(attribution: dict) -> dict[str, np.ndarray]:
    """attr_text − attr_image of the correctly classified rows, then of the errors of each kind present."""
    difference = np.array(attribution["attr_text"]) - np.array(attribution["attr_image"])
    correct, kinds = np.array(attribution["correct"]), np.array(attribution["kinds"])
    out = {CORRECT: difference[correct]}
    for kind in dict.fromkeys(attribution["kinds"]):
        wrong = difference[~correct & (kinds == kind)]
        if len(wrong):
            out[kind] = wrong
    return out


def attribution_figure(by_group: dict[str, np.ndarray]):
    """One box per group of attr_text − attr_image (nats): right of 0, the text drove the prediction."""
    figure, axes = plt.subplots(figsize=(6.4, 0.5 * len(by_group) + 1.4))
    names = list(by_group)
    axes.boxplot([by_group[name] for name in names], vert=False, showfliers=True)
    axes.set_yticks(range(1, len(names) + 1), [f"{name} ({len(by_group[name])})" for name in names])
    axes.invert_yaxis()
    axes.axvline(0.0, color="#7f7f7f", linestyle=":")
    axes.set_xlabel("attr_text − attr_image (nats of the predicted class's log-probability)")
    figure.tight_layout()
    return figure


def evidence_figure(case: dict, true_label: str, predicted_label: str):
    """The image's centre square with the patch attributions over it, and the tweet's tokens shaded
    by theirs (red: towards the predicted class, blue: against it)."""
    figure, (image_axes, text_axes) = plt.subplots(1, 2, figsize=(9.0, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
    try:
        image = open_image(case["image_path"])
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image_axes.imshow(image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC))
    except (OSError, ValueError):
        image_axes.imshow(np.full((224, 224, 3), 255, dtype=np.uint8))  # the image is gone: the grid alone
    grid = case["patch_grid"]
    patches = np.array(case["patch_attr"]).reshape(grid, grid)
    scale = np.abs(patches).max() or 1.0
    image_axes.imshow(patches, cmap="bwr", vmin=-scale, vmax=scale, alpha=0.45, extent=(0, 224, 224, 0),
                      interpolation="nearest")
    image_axes.set_title(f"{grid}x{grid} patches", fontsize=9)
    image_axes.axis("off")
    values = np.array(case["token_attr"])
    scale = np.abs(values).max() or 1.0
    colours = plt.get_cmap("bwr")((values / scale + 1) / 2)
    x, y = 0.0, 0.95
    for token, colour in zip(case["tokens"], colours):
        width = 0.018 * len(token) + 0.02
        if x + width > 1.0:
            x, y = 0.0, y - 0.1
        text_axes.text(x, y, token, fontsize=9, va="top", bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.5})
        x += width
    text_axes.axis("off")
    figure.suptitle(f"guid {case['guid']}: true {true_label}, predicted {predicted_label}", fontsize=10)
    figure.tight_layout()
    return figure


def evidence_file(guid: str) -> str:
    """The evidence figure's file name: the guid itself when it is a plain name (the course's numbers), else
    a hash of it, so that an id from a table (``../x``, ``a/b``) can never name a file outside figures/."""
    if re.fullmatch(r"[\w-]{1,64}", guid):
        return f"evidence_{guid}.png"
    return f"evidence_{hashlib.sha256(guid.encode()).hexdigest()[:16]}.png"


def attribution_section(attribution: dict, name: str, cases: list[dict], figures: Path,
                        labels: tuple[str, ...]) -> list[str]:
    """The Markdown lines of the section, for class ids into ``labels``; writes its figures into ``figures``."""
    margin = attribution["driver_margin"]
    by_group = groups(attribution)
    save_figure(attribution_figure(by_group), figures / "attribution.png")
    table = []
    for group, values in by_group.items():
        driven = drivers(values, np.zeros_like(values), margin)
        table.append([f"`{group}`", str(len(values)), f"{np.median(values):+.3f}",
                      f"[{np.percentile(values, 25):+.3f}, {np.percentile(values, 75):+.3f}]",
                      f"{driven.count('text') / len(values):.0%}", f"{driven.count('image') / len(values):.0%}"])
    attr_text, attr_image = np.array(attribution["attr_text"]), np.array(attribution["attr_image"])
    row_drivers = np.array(drivers(attr_text, attr_image, margin))
    predicted = np.array(attribution["predicted"])
    per_class = [[label, str(int((predicted == i).sum()))]
                 + [f"{(row_drivers[predicted == i] == d).mean():.0%}" if (predicted == i).any() else "–"
                    for d in ("text", "image", "both")] for i, label in enumerate(labels)]
    lines = [
        f"## What drove the predictions: `{name}`",
        "",
        "For every holdout row, the predicted class's log-probability is split exactly between the text and the "
        "image (the two-player Shapley value over the head run with both, either and neither modality, a missing "
        "one being the zeros the head was trained to read as missing; `attr_text + attr_image` is the whole "
        f"change from neither). A modality drove a row when its share exceeds the other's by more than {margin} "
        "nats (`predict.driver_margin`). Right of 0 the text drove it, left the image:",
        "",
        markdown_table(["rows", "count", "median attr_text − attr_image", "middle half", "text drove", "image drove"],
                       table, "lrrrrr"),
        "",
        "![attr_text − attr_image by error kind, beside the correctly classified rows](figures/attribution.png)",
        "",
        "Per predicted class, how often each modality drove the label:",
        "",
        markdown_table(["predicted", "rows", "text", "image", "both"], per_class, "lrrrr"),
        "",
    ]
    if attribution["evidence_note"]:
        return lines + [f"No token or patch evidence: {attribution['evidence_note']}.", ""]
    truth = {case["guid"]: case for case in cases}
    lines += ["Token and patch evidence of the most confident errors: integrated gradients (Captum) of the predicted "
              "class's logit over the cached token and patch features, from the missing-modality zeros. Red pushed "
              "towards the predicted class, blue against it.", ""]
    for case in attribution["evidence"]:
        bad = truth.get(case["guid"], {})
        figure = figures / evidence_file(case["guid"])
        save_figure(evidence_figure(case, bad.get("true_label", "?"), labels[case["predicted"]]), figure)
        guid = one_line(case["guid"])  # a table's id is text like any other: one escaped line
        lines += [f"![evidence for guid {guid}](figures/{figure.name})", "", f"guid {guid}: {one_line(bad.get('text', ''))}",
                  ""]
    return lines
