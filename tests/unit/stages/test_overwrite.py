"""No command replaces a folder it did not write (issue 30, item 0)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from msc.core.errors import UserError
from msc.core.owned import SAMPLE_MARK
from msc.data.split import write_splits
from src import ablation, benchmark, featurize, predict, sample
from tests.helpers import REPO, committed_params, committed_params_text

CLIP_BPE = REPO.parent / "shared" / "clip-bpe"
# The line the issue reproduced: the README's ViT-B/32 command as it was, over the real data in data/.
VIT_B_32_LINE = ["--backbone-shape", "vit-b-32", *(["--tokenizer", str(CLIP_BPE)] if CLIP_BPE.is_dir() else [])]


def users_folders(cwd: Path) -> dict[Path, bytes]:
    """A dataset in data/ and a model in models/tiny-clip/ that a user put there: path -> bytes."""
    files = {cwd / "data" / "train.txt": b"guid,tag\n1,positive\n", cwd / "data" / "data" / "1.txt": b"real tweet",
             cwd / "models" / "tiny-clip" / "model.safetensors": b"someone's checkpoint"}
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def unchanged(files: dict[Path, bytes]) -> bool:
    folders = {path.parent for path in files}
    return all(path.read_bytes() == data for path, data in files.items()) and sum(
        1 for folder in folders for entry in folder.iterdir() if entry.is_file()) == len(files)




def test_sample_refuses_a_users_folders_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    files = users_folders(tmp_path)
    assert sample.main(VIT_B_32_LINE) == 2
    assert unchanged(files)
    assert "were not written by `python -m src.sample`" in capsys.readouterr().err


def test_the_readme_names_no_folder_of_the_first_command_for_vit_b_32():
    """The README's ViT-B/32 line writes a backbone of its own, never data/ or models/tiny-clip."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if "src.sample --" in line and "vit-b-32" in line]
    assert lines
    for line in lines:
        assert "--no-data" in line and "--backbone-out models/vit-b-32" in line, line


def test_no_data_backbone_out_over_a_users_model_is_refused(tmp_path, capsys):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert sample.main(["--no-data", "--backbone-out", str(model)]) == 2
    assert f"--backbone-out '{model}'" in capsys.readouterr().err
    assert [p.name for p in model.iterdir()] == ["config.json"]


def test_a_table_sample_is_rewritten_over_itself_and_replaces_a_users_folder_only_with_force(tmp_path, capsys):
    out, clip = tmp_path / "table", tmp_path / "clip"
    args = ["--out", str(out), "--n", "60", "--format", "table", "--backbone-out", str(clip)]
    assert sample.main(args) == 0
    assert (out / SAMPLE_MARK).is_file() and (clip / SAMPLE_MARK).is_file()
    assert sample.main(args + ["--seed", "1"]) == 0  # its own output: replaced without a flag
    (out / SAMPLE_MARK).unlink()  # now the user's
    (out / "notes.txt").write_text("mine")
    assert sample.main(args) == 2
    assert (out / "notes.txt").is_file() and f"--out '{out}'" in capsys.readouterr().err
    assert sample.main(args + ["--force"]) == 0
    assert not (out / "notes.txt").exists() and (out / SAMPLE_MARK).is_file()


def test_split_refuses_a_users_splits_file(private_config):
    data = private_config.data
    folder = Path(data.splits_dir)
    folder.mkdir(parents=True)
    (folder / "splits.csv").write_text("guid,split\n1,train\n")
    with pytest.raises(UserError, match="data.splits_dir .*splits.csv.* was not written by `python -m src.split`.*--force"):
        write_splits(data.source, folder, data.split_rule)
    assert (folder / "splits.csv").read_text() == "guid,split\n1,train\n"
    write_splits(data.source, folder, data.split_rule, force=True)
    write_splits(data.source, folder, data.split_rule)  # now its own files: replaced without a flag


def test_featurize_refuses_a_features_dir_it_did_not_write(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "embeddings.npy").write_bytes(b"a user's own arrays")
    params = yaml.safe_load(committed_params_text())
    params["features"]["dir"] = str(folder)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert featurize.main(["--params", str(tmp_path / "params.yaml")]) == 2
    assert f"features.dir '{folder}'" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["embeddings.npy"]


def test_ablation_refuses_a_users_csv_in_its_out_dir(tmp_path, capsys):
    (tmp_path / "ablation.csv").write_text("my own table\n")
    (tmp_path / "params.yaml").write_text("data:\n  root: data\n")  # read first: --out-dir defaults from paths
    assert ablation.main(["--out-dir", str(tmp_path), "--params", str(tmp_path / "params.yaml")]) == 2
    assert f"--out-dir '{tmp_path / 'ablation.csv'}' already exists and was not written" in capsys.readouterr().err
    assert (tmp_path / "ablation.csv").read_text() == "my own table\n"



def test_ablation_refuses_a_users_folder_where_its_int8_cache_goes(tmp_path, capsys):
    # The sibling of the CSV above: ablation.int8_row builds a second cache beside features.dir ("features/" too).
    mine = tmp_path / "features-int8"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own\n")
    (tmp_path / "params.yaml").write_text(f"features:\n  dir: {tmp_path / 'features'}/\nablation:\n  int8_row: true\n")
    assert ablation.main(["--out-dir", str(tmp_path / "out"), "--params", str(tmp_path / "params.yaml")]) == 2
    assert f"the int8 cache of ablation.int8_row '{mine}' already exists and was not written" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

def test_benchmark_refuses_a_users_work_dir(tmp_path, capsys):
    work = tmp_path / "results-of-mine"
    work.mkdir()
    (work / "paper.tex").write_text("x")
    assert benchmark.main(["--work-dir", str(work), "--data-root", str(tmp_path), "--only", "trial"]) == 2
    assert "--work-dir" in capsys.readouterr().err and [p.name for p in work.iterdir()] == ["paper.tex"]


def test_predict_refuses_an_out_that_is_the_datasets_own_file(sample_root, capsys):
    """The course layout's sibling of --out being the --input table: the test file predict reads."""
    test_file = sample_root / "test_without_label.txt"
    before = test_file.read_bytes()
    args = ["--params", str(committed_params()), "--data-root", str(sample_root), "--model-uri", "models:/none/1"]
    assert predict.main([*args, "--out", str(test_file)]) == 2
    assert f"--out {test_file} is a file of the dataset" in capsys.readouterr().err
    assert test_file.read_bytes() == before
