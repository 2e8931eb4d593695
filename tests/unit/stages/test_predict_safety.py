"""Prediction is safe to kill and loads nothing but the model it is told to, without unpickling."""

import ast

from tests.helpers import REPO


def test_the_source_never_unpickles():
    """No pickle import; torch.load only with weights_only=True; np.load never with allow_pickle=True."""
    for path in sorted((REPO / "src").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "cloudpickle", "joblib", "dill"} & set(names), f"{path.name}: imports {names}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                keywords = {k.arg: k.value for k in node.keywords}
                call = f"{getattr(node.func.value, 'id', '?')}.{node.func.attr}"
                if call == "torch.load":
                    weights_only = keywords.get("weights_only")
                    assert isinstance(weights_only, ast.Constant) and weights_only.value is True, path.name
                if call == "np.load" and "allow_pickle" in keywords:
                    assert keywords["allow_pickle"].value is False, path.name
