"""An output path that cannot be written is a sentence and exit status 2, checked before the work
(issue 33, kind 3): a folder where the file goes, a file among its parents, a read-only place."""

from __future__ import annotations

import errno
import os

import pytest

from msc.core.errors import UserError
from msc.core.files import atomic_write_text, check_output_file, check_output_folder
from src import predict


def test_a_folder_a_file_parent_and_a_read_only_place_are_refused(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("not a folder")
    (tmp_path / "existing").mkdir()
    with pytest.raises(UserError, match=r"--out .*existing cannot be written: it is a folder; name a file in it"):
        check_output_file(tmp_path / "existing", "--out")
    with pytest.raises(UserError, match=r"--out .*README.md/pred.csv cannot be written: .*README.md is a file, not a folder"):
        check_output_file(tmp_path / "README.md" / "pred.csv", "--out")
    with pytest.raises(UserError, match=r"--out-dir .*README.md cannot be written: it is a file"):
        check_output_folder(tmp_path / "README.md", "--out-dir")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as access(2) answers on a read-only mount
    with pytest.raises(UserError, match=r"read-only or not writable"):
        check_output_file(tmp_path / "new" / "pred.csv", "--out")


def test_a_failed_atomic_write_names_the_path(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(UserError, match=r"pred.csv cannot be written: the file system is read-only"):
        atomic_write_text(tmp_path / "pred.csv", "x")
    monkeypatch.undo()
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserError, match=r"taken cannot be written: it is a folder"):
        atomic_write_text(tmp_path / "taken", "x")  # os.replace onto a folder


@pytest.mark.parametrize("out", ["existing-folder", "README.md/pred.csv"])
def test_src_predict_refuses_an_unwritable_out_before_loading_the_model(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing-folder").mkdir()
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "params.yaml").write_text("data:\n  root: data\n")
    assert predict.main(["--model-uri", "models:/nothing@production", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out} cannot be written") and err.count("\n") == 1


@pytest.mark.parametrize("command, argv", [
    ("sample", ["--out", "README.md/data"]),
    ("sample", ["--no-data", "--backbone-out", "README.md"]),
    ("report", ["--results", "README.md"]),
    ("tune", []),
    ("ablation", ["--out-dir", "README.md/results"]),
    ("split", []),
])
def test_every_stage_refuses_an_unwritable_output_with_a_sentence(tmp_path, monkeypatch, capsys, command, argv):
    import importlib

    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "params.yaml").write_text("data:\n  root: data\n  splits_dir: README.md/splits\npaths:\n  results: README.md\n")
    stage = importlib.import_module(f"src.{command}")
    assert stage.main(["--params", "params.yaml", *argv] if command not in ("sample",) else argv) == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and "README.md" in err and err.count("\n") == 1
