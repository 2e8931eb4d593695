"""drop_bytecode (msc/model/integrity.py) where several loaders share one model folder: src.serve's workers
and spark_udf's Python workers each run the model's entry, which drops the caches, while the others' Python
writes fresh ones. Removing the emptied cache folders made a walk in another loader fail (FileNotFoundError
on Python 3.11, 12 times in 8 s with two droppers)."""

import subprocess
import sys
import time

from msc.model.integrity import drop_bytecode
from tests.helpers import REPO

DROPPER = """
import importlib.util, time, traceback
from pathlib import Path
spec = importlib.util.spec_from_file_location("integrity", {checker!r})  # by its path, as the entry loads it
integrity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(integrity)
failures, deadline = 0, time.monotonic() + {seconds}
while time.monotonic() < deadline:
    try:
        failures += integrity.drop_bytecode(Path({model!r})) is not None
    except Exception:
        failures += 1
        traceback.print_exc()
print(failures)
"""


def test_loaders_sharing_a_folder_drop_caches_while_others_write_them(tmp_path):
    packages = [tmp_path / "code" / f"package{i}" for i in range(30)]
    for package in packages:
        package.mkdir(parents=True)
        (package / "module.py").write_text("")
    script = DROPPER.format(checker=str(REPO / "src/msc/model/integrity.py"), model=str(tmp_path), seconds=1.0)
    droppers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:  # a third loader: its Python writes fresh caches
        for package in packages:
            try:
                (package / "__pycache__").mkdir(exist_ok=True)
                (package / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"fresh")
            except OSError:  # a dropper removed it meanwhile: Python too would skip writing this cache
                pass
    outputs = [dropper.communicate(timeout=30) for dropper in droppers]
    assert [(out.strip(), err) for out, err in outputs] == [("0", ""), ("0", "")]
    assert drop_bytecode(tmp_path) is None
    assert not [path for path in tmp_path.rglob("*.pyc")]
    # The cache folders stay, every time: removing them is what failed another loader's walk.
    assert all((package / "__pycache__").is_dir() for package in packages)
    assert all((package / "module.py").is_file() for package in packages)  # sources are never touched
