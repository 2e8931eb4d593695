"""A plain MLflow load in a fresh process (what spark_udf's workers, Ray's and `mlflow models serve` do) imports
msc from the model's own code/ folder, so a planted bytecode cache there would run instead of the checked
source: the model's entry removes the caches before it imports any of that code."""

import shutil
import sys

from tests.helpers import sh
from tests.unit.track.test_model_integrity import MARKER, plant_bytecode

LOAD = """
import sys, mlflow
mlflow.pyfunc.load_model(sys.argv[1])
import msc.model.pyfunc
print(msc.model.pyfunc.__file__)
"""


def test_a_fresh_process_loading_the_model_runs_no_planted_cache_of_its_code(model_folder, tmp_path):
    model = shutil.copytree(model_folder, tmp_path / "model")
    planted = plant_bytecode(model, "code/msc/model/pyfunc.py")
    result = sh(sys.executable, "-c", LOAD, str(model), cwd=tmp_path)
    assert result.stdout.strip() == str(model / "code/msc/model/pyfunc.py")  # the model's own code ran
    assert not (tmp_path / MARKER).exists(), "the planted cache ran"
    assert not planted.exists()
