"""The configuration reference (docs/reference/configuration.md) is generated from the config's
dataclasses: it must be the generator's output for the code as committed, and name every key."""

import dataclasses
from dataclasses import dataclass

import pytest

from msc.config import Config
from msc.config.reference import REFERENCE_PAGE, configuration_reference, field_docs, section_text
from msc.core.errors import UserError
from tests.helpers import REPO as ROOT


def test_the_committed_reference_is_the_generated_one():
    committed = (ROOT / REFERENCE_PAGE).read_text(encoding="utf-8")
    assert committed == configuration_reference(), (
        f"{REFERENCE_PAGE} is stale: run `python -m src.docs_reference` and commit it")


def test_every_key_has_a_row_with_its_type_default_and_comment():
    page = configuration_reference()
    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(section.default_factory):
            (row,) = [line for line in page.splitlines() if line.startswith(f"| `{section.name}.{field.name}` |")]
            key, kind, default, comment = [cell.strip() for cell in row.strip("|").split(" | ")]
            assert kind and default.startswith("`") and comment, row
    assert "| `features.augment_views` | int | `4` | augmented views cached per labelled image; 0 = none |" in page
    # A comment above a field, a Literal's choices, null, and a pipe that must not split the cell:
    assert "| `train.precision` | `auto` or `fp32` or `bf16` or `fp16` | `auto` | Training autocast." in page
    assert "| `tune.study_name` | str or null | `null` |" in page
    assert r"auto (cuda when present) \| cpu \| cuda \| cuda:N |" in page


@dataclass(frozen=True)
class Undocumented:
    documented: int = 1  # has its comment
    # a comment above
    spread: list[str] | None = None
    bare: float = 0.5


def test_a_field_without_a_comment_is_a_sentence_naming_it():
    docs = field_docs(Undocumented)
    assert docs["documented"][1] == "has its comment" and docs["spread"][1] == "a comment above"
    with pytest.raises(UserError, match=r"field Undocumented\.bare has no comment; write what it does"):
        section_text("demo", Undocumented)
