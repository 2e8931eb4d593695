"""The local MLflow store's setup."""

import mlflow

from msc.track.store import EXPERIMENT, setup_mlflow


def test_an_experiment_made_elsewhere_gets_the_training_type(project):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    made = mlflow.create_experiment(EXPERIMENT)  # as `mlflow ui` or an older version would
    assert "mlflow.experimentKind" not in mlflow.get_experiment(made).tags
    assert setup_mlflow() == made
    assert mlflow.get_experiment(made).tags["mlflow.experimentKind"] == "custom_model_development"
