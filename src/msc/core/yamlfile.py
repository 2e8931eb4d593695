"""YAML the project reads itself (params.yaml): safe, and strict about keys written twice.

PyYAML keeps the last of two equal keys of a mapping silently, so a second ``train:`` section
would drop the whole first one. ``load_yaml`` refuses that with one sentence naming both lines.
A merge (``<<: *defaults``) still lets a key written beside it replace the merged one: that is
what a merge is for. libyaml's parser reads the file where PyYAML has it (load_config of params.yaml
went from 17 ms to 7.8 ms here: a stage reads it once, the tests hundreds of times); a file it refuses
is read again by PyYAML's own parser, whose sentence shows the offending line.
"""

from __future__ import annotations

import io
from typing import Any

import yaml

from msc.core.errors import UserError

MERGE_TAG = "tag:yaml.org,2002:merge"


class RefusingKeysTwice:
    """A YAML loader's mixin that raises a UserError on a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:  # the keys as written, before any merge is flattened in
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                earlier = first_line.get(key)
            except TypeError:  # an unhashable key: the base class says what is wrong with it
                break
            if earlier is not None:
                where = f"twice on line {line}" if earlier == line else f"twice, on line {earlier} and on line {line}"
                raise UserError(f"{key_node.start_mark.name}: the key '{key}' is written {where}, and the second would "
                                "silently replace the first (a whole section, for a section); keep one of them")
            first_line[key] = line
        return super().construct_mapping(node, deep)


class StrictLoader(RefusingKeysTwice, yaml.SafeLoader):
    """PyYAML's safe loader, in Python: its errors quote the offending line."""


class FastStrictLoader(RefusingKeysTwice, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The same loader on libyaml's parser, where PyYAML was built with it."""


def load_yaml(text: str, name: str) -> Any:
    """The YAML document ``text`` (from the file ``name``, for sentences), read by ``FastStrictLoader``;
    a document it refuses is read again by ``StrictLoader``, whose error quotes the offending line."""
    stream = io.StringIO(text)
    stream.name = name  # libyaml's marks, and so the sentences, name the file instead of "<file>"
    try:
        return read(FastStrictLoader(stream))
    except yaml.YAMLError:
        loader = StrictLoader(text)  # from the string: PyYAML's marks quote the line only then
        loader.name = name
        return read(loader)


def read(loader: yaml.BaseLoader) -> Any:
    """The one document ``loader`` holds; its parser's resources are freed either way."""
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
