"""MLflow "model from code" entry: MLflow runs this file to build the model; nothing is unpickled.

It is the first file of a logged model that runs, so it checks the model's files before it imports
anything else of them (msc/model/integrity.py): the checker runs from the bytes whose digest was
checked here, and a changed, missing or added file stops the load with a sentence naming it. It
removes the model's bytecode caches first, so that a process importing the shipped code runs the code
it checked (a process that has imported msc already runs that msc instead). Lines
changed before this check in this very file, and a bytecode cache of this file (which Python runs
instead of it), are beyond its reach; msc's own loader (msc/track/integrity.py) removes every cache
and checks every file, this one included, before MLflow runs any of it.
"""

import hashlib
import json
import types
from pathlib import Path

MODEL = Path(__file__).resolve().parent  # in a logged model, its folder (MLflow copies this file there)


def check_model_files(model: Path) -> None:
    """Raise with a sentence naming the first file of ``model`` that is not as it was logged."""
    checker = model / "code" / "msc" / "model" / "integrity.py"
    record = model / "artifacts" / "digests.json"
    recorded = json.loads(record.read_text(encoding="utf-8"))["files"] if record.is_file() else {}
    source = checker.read_bytes() if checker.is_file() else b""
    if hashlib.sha256(source).hexdigest() != recorded.get("code/msc/model/integrity.py"):
        raise RuntimeError(f"'{checker}' is not the file this model was logged with (or {record} is missing); get "
                           "the model again from its source, or log and register it again")
    # The very bytes just hashed run: an import would run the checker's bytecode cache, if one were planted.
    integrity = types.ModuleType("msc_logged_model_integrity")
    integrity.__file__ = str(checker)
    exec(compile(source, str(checker), "exec"), integrity.__dict__)  # noqa: S102 - the digested source
    if (problem := integrity.drop_bytecode(model) or integrity.model_problem(model)) is not None:
        raise RuntimeError(problem)


if (MODEL / "MLmodel").is_file():  # when logging, MLflow runs this file where it lies in the source tree
    check_model_files(MODEL)

import mlflow  # noqa: E402 - only once the files are checked

from msc.model.pyfunc import MscModel  # noqa: E402

mlflow.models.set_model(MscModel())
