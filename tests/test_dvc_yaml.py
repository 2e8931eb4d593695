"""dvc.yaml against the code: every stage depends on every src/ module it runs, and its params exist."""

import ast

import pytest
import yaml

from src.config import load_config
from tests.conftest import REPO

SRC = REPO / "src"
# Modules a stage runs without importing them: the registered pyfunc's entry point and its code,
# which tune logs and predict loads through MLflow.
RUN_BY_NAME = {"tune": {"pyfunc_model"}, "predict": {"pyfunc_model", "serving"}}


def imported_modules(module: str) -> set[str]:
    """The src modules ``module`` imports, at any depth of its code (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse((SRC / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "src":
            found.add("__init__")
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names if (SRC / f"{a.name}.py").is_file()}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("src.")}
    return found


def closure(modules: set[str]) -> set[str]:
    seen, todo = set(modules), list(modules)
    while todo:
        for found in imported_modules(todo.pop()) - seen:
            seen.add(found)
            todo.append(found)
    return seen | {"__init__"}


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(name):
    stage = STAGES[name]
    module = stage["cmd"].split("python -m src.")[1].split()[0]
    deps = {d for d in stage["deps"] if isinstance(d, str)}
    if "src" in deps or "src/" in deps:
        return
    needed = closure({module} | RUN_BY_NAME.get(name, set()))
    missing = sorted(f"src/{m}.py" for m in needed if f"src/{m}.py" not in deps)
    assert not missing, f"dvc.yaml stage {name} runs {missing} but does not depend on them"
    stale = sorted(d for d in deps if d.startswith("src/") and not (REPO / d).is_file())
    assert not stale, f"dvc.yaml stage {name} depends on files that do not exist: {stale}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_are_config_keys(name):
    config = load_config(REPO / "params.yaml")
    for key in STAGES[name].get("params", []):
        value = config
        for part in key.split("."):
            assert hasattr(value, part), f"dvc.yaml stage {name} names param {key}, which params.yaml lacks"
            value = getattr(value, part)


def test_the_closure_sees_lazy_imports():
    assert "sample" in closure({"ablation"}), "ablation imports src.sample inside a function"
    assert "featurize" not in closure({"tune"}), "tune reads the cache; it never runs featurize"
