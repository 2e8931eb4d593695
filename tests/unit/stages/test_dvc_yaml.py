"""dvc.yaml against the code: every stage depends on its entry module and on every layer of the msc
library it runs, on nothing else of src/, and its params exist."""

import ast

import grimp
import pytest
import yaml

from msc.config import load_config
from tests.helpers import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
GRAPH = grimp.build_graph("msc")


def layers_run_by(entry: str) -> set[str]:
    """The msc layers (``core``, ``data``, ..., ``config``) that ``src/<entry>.py`` imports, at any depth
    and lazy imports included, as dvc.yaml paths (``src/msc/core``, ``src/msc/config``)."""
    tree = ast.parse((REPO / "src" / f"{entry}.py").read_text())
    roots = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
             and node.module.split(".")[0] == "msc"}
    modules = set(roots).union(*(GRAPH.find_upstream_modules(root) for root in roots))
    reached: dict[str, set[str]] = {}
    for module in modules:
        if module.count("."):
            reached.setdefault(module.split(".")[1], set()).add(module)
    return {layer_dep(layer, names) for layer, names in reached.items()}


def layer_dep(layer: str, modules: set[str]) -> str:
    """A layer's dvc.yaml path; only its ``config.py`` where a stage reaches nothing else of it (msc.config
    composes every layer's section, and a change to the training loop must not re-run the split)."""
    if (REPO / "src" / "msc" / f"{layer}.py").is_file():
        return f"src/msc/{layer}.py"
    return f"src/msc/{layer}/config.py" if modules == {f"msc.{layer}.config"} else f"src/msc/{layer}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_the_code_it_runs(name):
    stage = STAGES[name]
    entry = stage["cmd"].split("python -m src.")[1].split()[0]
    deps = {d for d in stage["deps"] if isinstance(d, str) and d.startswith("src/")}
    needed = {f"src/{entry}.py", "src/msc/__init__.py"} | layers_run_by(entry)
    assert not needed - deps, f"dvc.yaml stage {name} runs {sorted(needed - deps)} but does not depend on them"
    assert not deps - needed, f"dvc.yaml stage {name} depends on {sorted(deps - needed)}, which it never runs"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_are_config_keys(name):
    config = load_config(REPO / "params.yaml")
    for key in STAGES[name].get("params", []):
        value = config
        for part in key.split("."):
            assert hasattr(value, part), f"dvc.yaml stage {name} names param {key}, which params.yaml lacks"
            value = getattr(value, part)


def test_the_closure_follows_imports_through_the_layers():
    assert "src/msc/features" not in layers_run_by("predict"), "predict loads a logged model; it reads no cache"
    assert "src/msc/features" in layers_run_by("tune") and "src/msc/analysis" not in layers_run_by("tune")
    assert layers_run_by("split") == {"src/msc/core", "src/msc/data", "src/msc/model", "src/msc/config",
                                      "src/msc/features/config.py", "src/msc/train/config.py"}
