"""Ctrl-C or SIGTERM during a study (issue 23, item 12): one sentence, the running trial failed, the
parent run KILLED, and reopened when the study resumes."""

import signal

import mlflow
import optuna
import pytest

from tests.integration.test_tune import (  # noqa: F401
    FINISHED,
    no_tuner_outlives_its_test,
    only_study,
    start_tuner,
    wait_for_trials,
    write_params,
)


def parent_run(project):
    """The study's one MLflow parent run."""
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
              if r.info.run_name.startswith("study-")]
    return run


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_study_says_one_sentence_and_ends_its_parent_run_killed(trained_project, config, signum):
    # Long enough to be caught mid-trial on a fast machine; the signal ends it within an epoch.
    write_params(trained_project, config, **{"tune.trials": 1, "train.epochs": 60, "train.patience": 60})
    storage = f"sqlite:///{trained_project / 'optuna.db'}"
    tuner = start_tuner(trained_project)

    def mid_trial(trials) -> bool:
        return any(t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values for t in trials)

    running = wait_for_trials(storage, mid_trial, timeout=240)
    if running:
        tuner.send_signal(signum)
    output, _ = tuner.communicate(timeout=120)
    assert running, "the tuner never had a running trial to interrupt"
    assert tuner.returncode == 130, output
    assert "Traceback" not in output and output.count("\n") <= 3, output
    assert "interrupted: study msc-" in output and "parent run KILLED; run the same command again" in output
    trials = only_study(storage).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL]
    assert parent_run(trained_project).info.status == "KILLED"
    if signum == signal.SIGTERM:
        return  # the resume below is the same after either signal
    resumed = start_tuner(trained_project)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert sum(t.state in FINISHED for t in only_study(storage).get_trials()) == 1
    assert parent_run(trained_project).info.status == "FINISHED"
