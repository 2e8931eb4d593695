"""The library's shape: its layers import only downward, and its modules and functions stay small."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

MSC = REPO / "src" / "msc"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def test_the_import_contracts_hold():
    """import-linter's contracts in pyproject.toml: the layer order, and no torch below msc.model."""
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_modules_and_functions_stay_small():
    """Over the limit only where the docstring says why (it then mentions 'long because')."""
    too_long = []
    for path in sorted(MSC.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES and "long because" not in (ast.get_docstring(ast.parse(text)) or ""):
            too_long.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and "long because" not in (ast.get_docstring(node) or ""):
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, too_long
