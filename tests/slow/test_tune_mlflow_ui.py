"""The study, its MLflow runs, the registry and predict, on the sample, in a temporary project."""

import os
import signal
import subprocess
import sys

import pytest

from benchmarks.processes import free_port
from tests.integration.test_tune import no_tuner_outlives_its_test, start_tuner, write_params  # noqa: F401


# Integration as well as slow (the folder's mark): a server and a tuner in subprocesses. About 75 s per attempt
# on 2 cores: the UI's workers and the tuner start together.
@pytest.mark.integration
def test_the_tuner_finishes_when_the_mlflow_ui_opens_a_fresh_store_at_the_same_moment(tmp_path, config, cache, splits):
    """Both processes create MLflow's schema in a new SQLite file; the tuner must survive the race."""
    for attempt in range(3):
        project = tmp_path / f"project-{attempt}"
        project.mkdir()
        write_params(project, config, **{"tune.trials": 2, "train.epochs": 2})
        port = free_port()
        ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                               f"sqlite:///{project / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its own process group: the server and its workers
        try:
            tuner = start_tuner(project)
            output, _ = tuner.communicate(timeout=300)
        finally:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=30)
        assert tuner.returncode == 0, f"attempt {attempt}: {output[-3000:]}"
        assert "Traceback" not in output
