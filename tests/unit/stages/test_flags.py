"""A stage's flag that breaks a rule of the setting it overrides is named as typed (a new user's `--trials 0` was
told about "override: key 'tune.trials'"), checked before the study opens a store."""

import pytest

from src import tune
from tests.helpers import committed_params


@pytest.mark.parametrize(("argv", "key"), [(["--trials", "0"], "tune.trials"), (["--n-jobs", "0"], "tune.n_jobs")])
def test_a_tune_flag_that_breaks_a_rule_names_the_flag(project, capsys, argv, key):
    assert tune.main(["--params", str(committed_params()), *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {' '.join(argv)}: key '{key}' is 0; it must be at least 1\n"
    assert not (project / "mlflow.db").exists() and not (project / "optuna.db").exists()
