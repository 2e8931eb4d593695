"""A key or a section written twice in params.yaml is refused, never the last one silently (issue 30, item 5)."""

from __future__ import annotations

import pytest

from msc.config import load_config
from msc.core.errors import UserError
from msc.core.yamlfile import load_yaml
from src import split
from tests.helpers import committed_params_text


def numbered(text: str, needle: str) -> int:
    """The 1-based line of ``text`` that starts with ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(needle))


def test_a_second_train_section_is_refused_naming_both_lines(tmp_path, capsys):
    text = committed_params_text() + "train:\n  epochs: 3\n"
    path = tmp_path / "params.yaml"
    path.write_text(text)
    first, second = numbered(text, "train:"), len(text.splitlines()) - 1
    with pytest.raises(UserError, match=f"'train' is written twice, on line {first} and on line {second}"):
        load_config(path)
    assert split.main(["--params", str(path)]) == 2  # a command: one sentence, exit status 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and f"line {first}" in err and "Traceback" not in err


def test_a_key_twice_in_one_section_is_refused(tmp_path):
    text = committed_params_text().replace("  epochs: 10\n", "  epochs: 10\n  epochs: 3\n", 1)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    first = numbered(text, "  epochs: 10")
    with pytest.raises(UserError, match=f"'epochs' is written twice, on line {first} and on line {first + 1}"):
        load_config(path)


def test_a_key_twice_deep_in_the_search_space_and_in_a_flow_mapping_is_refused(tmp_path):
    text = committed_params_text()
    deep = text.replace("      dropout: {", "      lr: {type: float, low: 0.001, high: 0.1}\n      dropout: {", 1)
    path = tmp_path / "params.yaml"
    path.write_text(deep)
    with pytest.raises(UserError, match=f"'lr' is written twice, on line {numbered(deep, '      lr:')} "):
        load_config(path)
    flow = text.replace("dropout: {type: float, low: 0.0,", "dropout: {type: float, low: 0.0, low: 0.1,", 1)
    path.write_text(flow)
    with pytest.raises(UserError, match=f"'low' is written twice on line {numbered(flow, '      dropout:')}"):
        load_config(path)


def test_a_merge_key_may_still_be_overridden_beside_it():
    assert load_yaml("base: &b {lr: 1, epochs: 2}\nrun:\n  <<: *b\n  lr: 3\n", "x.yaml")["run"] == {"lr": 3, "epochs": 2}


def test_a_file_libyaml_refuses_is_said_with_its_offending_line(tmp_path):
    """libyaml's parser reads params.yaml; where it refuses the file, PyYAML's parser reads it again, and its
    sentence quotes the line, which libyaml's does not."""
    path = tmp_path / "params.yaml"
    path.write_text(committed_params_text().replace("  epochs: 10\n", "  epochs: [10\n", 1))
    with pytest.raises(UserError, match=r"is not valid YAML") as refused:
        load_config(path)
    assert str(path) in str(refused.value) and "    epochs: [10" in str(refused.value)
