"""The registered pyfunc: same features as training, self-contained, and served over HTTP."""

import os

from msc.config import with_overrides
from msc.tune.runner import tune


def test_head_weights_are_safetensors_and_the_model_has_no_pickle(trained_project, config, tiny_clip):
    import mlflow

    backbone_files = sorted(p.name for p in tiny_clip.iterdir())
    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 1}))
    assert sorted(p.name for p in tiny_clip.iterdir()) == backbone_files, "logging never writes into the backbone"
    local = mlflow.artifacts.download_artifacts("models:/msc@production")
    files = {os.path.relpath(os.path.join(d, f), local) for d, _, fs in os.walk(local) for f in fs}
    assert "artifacts/head.safetensors" in files and "artifacts/head.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))], files
    meta = open(os.path.join(local, "MLmodel")).read()
    assert "model_code_path" in meta, "logged as model from code, not a pickled PythonModel"


def test_every_test_sample_gets_a_label_even_without_a_file(trained_project, config, sample_root, capsys):
    import shutil

    import yaml

    from src import predict

    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 2}))
    data = trained_project / "data"
    shutil.copytree(sample_root, data)
    test_guids = [line.split(",")[0] for line in (data / "test_without_label.txt").read_text().splitlines()[1:]]
    (data / "data" / f"{test_guids[0]}.jpg").unlink()  # missing image
    (data / "data" / f"{test_guids[1]}.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # undecodable image
    (data / "data" / f"{test_guids[2]}.txt").unlink()  # missing text
    params = trained_project / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"root": str(data)}}))
    capsys.readouterr()
    assert predict.main(["--model-uri", "models:/msc@production", "--params", str(params)]) == 0
    lines = (trained_project / "results" / "test_with_label.txt").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == test_guids
    assert all(line.split(",")[1] in {"positive", "neutral", "negative"} for line in lines[1:])
    out, err = capsys.readouterr()
    # The missing and the undecodable image are counted, named and said why (issue 30).
    assert f"2 text only, 1 image only, 0 neither; 2 of the {len(test_guids)} images the posts name could not be used" in out
    assert f"(row {test_guids[0]}: image unusable: " in out and f"; row {test_guids[1]}: image unusable: the file" in out
    assert f"post {test_guids[0]} has no {test_guids[0]}.jpg" in err
    assert f"row {test_guids[1]}: image unusable" in err
    assert f"post {test_guids[2]} has no {test_guids[2]}.txt" in err
