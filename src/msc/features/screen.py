"""Checking every listed sample's files once, before any backbone work, and the data's fingerprint."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, replace

from msc.core.errors import UserError
from msc.data.images import image_problem
from msc.data.posts import Dataset, Sample


def sample_digest(sample: Sample) -> str:
    """SHA-256 (hex) of one listed sample's files: its text and its image, each as its bytes' SHA-256, or as
    missing, or as none (an inline text, a post without an image)."""
    digest = hashlib.sha256()
    for path in (sample.text_path, sample.image_path):
        if path is None:
            digest.update(b"none")
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"missing")
    return digest.hexdigest()


def data_fingerprint(dataset: Dataset, digests: dict[str, str] | None = None) -> str:
    """SHA-256 over the files that list the posts (label files, or the table, which holds inline
    texts) and every listed sample's ``sample_digest``. With ``data.on_error: skip`` the rows kept
    follow from these bytes alone. ``digests``: guid -> sample_digest, computed where the files are
    (the shards of a cache built on several machines, msc/features/shards.py), else here."""
    digest = hashlib.sha256()
    for label_file in dataset.label_files:
        digest.update(label_file.read_bytes())
    for sample in dataset.samples:
        digest.update(sample.guid.encode())
        digest.update(bytes.fromhex(digests[sample.guid] if digests is not None else sample_digest(sample)))
    return digest.hexdigest()


@dataclass
class Screening:
    """What featurize does with the listed samples, after checking every file once."""

    dataset: Dataset  # the rows to cache: labelled samples without problems, then every test sample
    skipped: list[dict[str, str]]  # labelled samples dropped under data.on_error: skip: guid, reason
    blank_text: list[str]  # test guids whose text is cached as a missing modality (zeros)
    blank_image: list[str]  # guids whose image is cached as a missing modality (zeros): test samples whose image
    # is unusable, and posts of a table that have none


def file_problems(sample: Sample) -> tuple[str | None, str | None]:
    """Why the text and why the image of ``sample`` cannot be used, or None for each that can (or
    that the post does not have: inline text, no image)."""
    text = None if sample.text_path is None or sample.text_path.is_file() else f"no file {sample.text_path}"
    if sample.image_path is None:
        image = None
    elif not sample.image_path.is_file():
        image = f"no file {sample.image_path}"
    else:
        problem = image_problem(sample.image_path)
        image = None if problem is None else f"{sample.image_path}: {problem}"
    return text, image


def screen_samples(dataset: Dataset, on_error: str) -> Screening:
    """Check every listed sample's files; stop listing all problems (``error``), or drop the bad
    labelled samples and blank the bad modality of test samples (``skip``)."""
    problems = {s.guid: [p for p in file_problems(s) if p is not None] for s in dataset.samples}
    problems = {guid: found for guid, found in problems.items() if found}
    if problems and on_error == "error":
        listed = [f"{guid} ({'; '.join(found)})" for guid, found in problems.items()]
        shown = ", ".join(listed[:20]) + (f", and {len(listed) - 20} more" if len(listed) > 20 else "")
        raise UserError(
            f"{len(listed)} listed samples cannot be used: {shown}. Replace the files with the originals (the course "
            "archive's, for its data), remove those posts from the label file or table, or set data.on_error: skip in "
            "params.yaml to train without them (unlabelled posts are never dropped)"
        )
    test_problems = {s.guid: file_problems(s) for s in dataset.test if s.guid in problems}
    kept = replace(dataset, labelled=[s for s in dataset.labelled if s.guid not in problems])
    return Screening(
        dataset=kept,
        skipped=[{"guid": s.guid, "reason": "; ".join(problems[s.guid])} for s in dataset.labelled
                 if s.guid in problems],
        blank_text=[guid for guid, (text, _) in test_problems.items() if text is not None],
        blank_image=[s.guid for s in kept.samples if s.image_path is None or (
            s.guid in test_problems and test_problems[s.guid][1] is not None)],
    )


def report_screening(screening: Screening) -> None:
    """One stderr line per dropped labelled sample and per blanked test modality."""
    for item in screening.skipped:
        print(f"skipped labelled sample {item['guid']} (data.on_error: skip): {item['reason']}", file=sys.stderr)
    for guid in screening.blank_text:
        print(f"test sample {guid}: no text; cached as a missing text, predicted from its image", file=sys.stderr)
    has_image = {s.guid for s in screening.dataset.samples if s.image_path is not None}
    for guid in screening.blank_image:
        if guid in has_image:  # a table's post without an image is no problem: it has none
            print(f"test sample {guid}: image unusable; cached as a missing image, predicted from its text",
                  file=sys.stderr)
