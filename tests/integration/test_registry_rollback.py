"""A rollback in MLflow 3 moves the alias alone (issue 23, item 3): the alias ``production`` is the
production model, every reader follows it, and a reader that finds the stage elsewhere says so."""

import json
from dataclasses import asdict

import mlflow
import yaml

from msc.config import with_overrides
from msc.track.inference import registry_warning
from msc.track.promotion import follow_alias
from msc.track.registry import disagreement, promote
from msc.tune.runner import tune


def stages(client) -> dict[str, str]:
    return {str(v.version): v.current_stage for v in client.search_model_versions("name='msc'")}


def test_after_a_rollback_the_alias_rules_and_disagreement_is_one_sentence(trained_project, config, capsys):
    from src import predict

    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 2}))
    client = mlflow.MlflowClient()
    promote(client, client.get_model_version("msc", "1").source, {}, {})  # version 2, in both
    assert disagreement(client) is None and stages(client) == {"1": "Archived", "2": "Production"}
    client.set_registered_model_alias("msc", "production", "1")  # the rollback MLflow 3 documents
    sentence = disagreement(client)
    assert sentence.startswith("models:/msc@production is version 1 but models:/msc/Production is version 2")
    assert "models:/msc@production" in registry_warning("models:/msc/Production")
    params = trained_project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    assert predict.main(["--params", str(params)]) == 0  # the default URI is the alias
    err = capsys.readouterr().err
    assert err.count("models:/msc@production is version 1 but models:/msc/Production is version 2") == 1
    run = mlflow.search_runs(filter_string="attributes.run_name = 'predict'", output_format="list",
                             search_all_experiments=True)[0]
    assert run.data.tags["model_uri"] == "models:/msc@production"
    # tune (the registration) moves the stage to the alias's version, saying so.
    assert str(follow_alias(client).version) == "1"
    assert "tune moves the stage" in capsys.readouterr().err
    assert stages(client) == {"1": "Production", "2": "Archived"} and disagreement(client) is None
