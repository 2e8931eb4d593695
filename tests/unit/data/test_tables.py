"""A table of posts as the dataset (data.format: table), label sets from the data, and predictions for
any table (issue 22). The end-to-end runs of a binary and a five-class table are integration tests."""

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from msc.core.errors import UserError
from msc.core.labels import COURSE_LABELS
from msc.data.dataset import load_dataset
from msc.data.posts import DataSource
from msc.data.table import table_posts
from msc.track.inference import predict_table, predict_test_set
from src import split as split_stage

HEADER = "id,text,image_path,label\n"


def write_table(folder: Path, body: str, name: str = "posts.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(HEADER + body, encoding="utf-8")
    return folder / name


def write_params(folder: Path, data: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"root": str(folder / "data"), "format": "table", "table": "posts.csv",
                                             "splits_dir": str(folder / "splits"), **data}}))
    return path


def balanced_rows(labels: tuple[str, ...], per_label: int) -> str:
    return "".join(f"{label}{i},a post about {label},,{label}\n" for label in labels for i in range(per_label))


@pytest.mark.parametrize("body, data, message", [
    ("1,hi,,yes\n", {"columns": {"id": "post_id"}},
     "posts.csv has no column 'post_id' (data.columns maps id to it); its columns are id, text, image_path, label"),
    ("1,hi,,yes\n2,ho,,no\n1,again,,no\n", {}, "posts.csv, row 3, column 'id': id '1' repeats row 1"),
    ("1,hi,,yes\n2,ho,,maybe\n", {"labels": ["yes", "no"]},
     "posts.csv, row 2, column 'label' is 'maybe', which is not in the label set (yes, no)"),
    ("1,hi,../secret.jpg,yes\n", {}, "posts.csv, row 1, column 'image_path' is '../secret.jpg', which is outside"),
    ("1,hi,/etc/passwd,yes\n", {}, "column 'image_path' is '/etc/passwd', which is outside the table's folder"),
    ("", {}, "posts.csv has no rows"),
    ("1,hi,,yes\n2,ho,,yes\n", {}, "1 label (yes); a classifier needs at least two labels"),
])
def test_a_bad_table_is_one_sentence_and_exit_2(tmp_path, capsys, body, data, message):
    write_table(tmp_path / "data", body)
    assert split_stage.main(["--params", str(write_params(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_text_path_outside_the_folder_and_a_partly_filled_split_are_refused(tmp_path):
    table = tmp_path / "posts.csv"
    table.write_text("id,text_path,label\n1,../../etc/hostname,yes\n")
    with pytest.raises(UserError, match="row 1, column 'text_path' is '../../etc/hostname', which is outside"):
        table_posts(table, {}, None)
    table.write_text("id,text,label,split\n1,a,yes,train\n2,b,no,\n")
    with pytest.raises(UserError, match="row 2, column 'split' is empty, but the column fixes the split"):
        table_posts(table, {}, None)
    table.write_text("id,text,label,split\n1,a,yes,test\n")
    with pytest.raises(UserError, match="row 1, column 'split' is 'test'; use one of train, val, holdout"):
        table_posts(table, {}, None)


def test_no_path_leaves_the_tables_folder_also_from_the_working_directory_or_through_links(tmp_path, monkeypatch):
    """A table in the working directory (`predict --input posts.csv`) has the folder "."; a link inside the
    folder may point out of it. Neither lets a cell name a file elsewhere."""
    (tmp_path / "outside.jpg").write_bytes(b"x")
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path)
    monkeypatch.chdir(folder)
    for cell in ("../outside.jpg", "./../outside.jpg", "images/../../outside.jpg", "link/outside.jpg",
                 "..\\outside.jpg", "C:/outside.jpg", "/etc/passwd"):
        Path("posts.csv").write_text(HEADER + f"1,hi,{cell},yes\n")
        with pytest.raises(UserError, match="column 'image_path' is .*, which is outside the table's folder"):
            table_posts(Path("posts.csv"), {}, None)
    Path("posts.csv").write_text(HEADER + f"1,hi,{'a' * 300}.jpg,yes\n")
    with pytest.raises(UserError, match="row 1, column 'image_path' is a path of 304 characters"):
        table_posts(Path("posts.csv"), {}, None)
    Path("posts.csv").write_text(HEADER + "1,hi,images/1.jpg,yes\n")
    assert table_posts(Path("posts.csv"), {}, None)[0].image_path == folder / "images" / "1.jpg"


@pytest.mark.parametrize("label, message", [
    ("null", "a name tables read as a missing value"), ("NaN", "a name tables read as a missing value"),
    ("a/b", "not a usable label name")])
def test_a_label_that_cannot_name_a_class_is_refused_at_its_row(tmp_path, label, message):
    from msc.config import DataConfig

    table = write_table(tmp_path, f"1,hi,,yes\n2,ho,,{label}\n")
    with pytest.raises(UserError, match=f"posts.csv, row 2, column 'label' is '{label}': {message}"):
        table_posts(table, {}, None)
    with pytest.raises(UserError, match=f"key 'data.labels': label '{label}': {message}"):  # the same name in params
        DataConfig(labels=["yes", label])


def test_repeated_columns_and_cells_that_are_no_single_value_are_refused(tmp_path):
    from msc.config import DataConfig

    (tmp_path / "posts.csv").write_text("id,text,id\n1,hi,2\n")
    with pytest.raises(UserError, match="posts.csv has the column 'id' twice"):
        table_posts(tmp_path / "posts.csv", {}, None)
    (tmp_path / "posts.jsonl").write_text('{"id": "1", "text": ["a", "b"]}\n')
    with pytest.raises(UserError, match="posts.jsonl, row 1, column 'text' holds a list, not a single value"):
        table_posts(tmp_path / "posts.jsonl", {}, None)
    with pytest.raises(UserError, match="data.columns.*maps two of our columns to one of yours"):
        DataConfig(columns={"text": "body", "text_path": "body"})


def test_missing_parquet_values_are_empty_cells_not_text(tmp_path):
    frame = pd.DataFrame({"id": pd.array([1, 2, None], dtype="Int64"), "text": ["a", "b", "c"],
                          "label": pd.array(["x", None, "y"], dtype="string")})
    frame.to_parquet(tmp_path / "posts.parquet")
    with pytest.raises(UserError, match="row 3, column 'id' is empty"):
        table_posts(tmp_path / "posts.parquet", {}, None)
    frame.iloc[:2].to_parquet(tmp_path / "posts.parquet")
    assert [(p.guid, p.label) for p in table_posts(tmp_path / "posts.parquet", {}, None)] == [("1", "x"), ("2", None)]


def test_an_evidence_figure_is_named_so_that_no_id_leaves_the_figures_folder():
    from msc.analysis.report_attribution import evidence_file

    assert evidence_file("1234") == "evidence_1234.png"
    for guid in ("../../x", "a/b", "x" * 100, "é:?"):
        name = evidence_file(guid)
        assert "/" not in name and ".." not in name and len(name) < 40


def test_a_tuned_neutral_boost_is_left_out_for_labels_without_neutral(config):
    from msc.tune.labels import for_labels

    assert "train.neutral_boost" in config.tune.search_space
    same, warning = for_labels(config, COURSE_LABELS)
    assert same is config and warning is None
    binary, warning = for_labels(config, ("benign", "hateful"))
    assert "train.neutral_boost" not in binary.tune.search_space and "leaves out" in warning
    assert set(binary.tune.search_space) == set(config.tune.search_space) - {"train.neutral_boost"}


def test_predict_will_not_write_over_its_input(tmp_path, capsys):
    from src import predict

    table = write_table(tmp_path, "1,hi,,\n")
    (tmp_path / "params.yaml").write_text("data:\n  root: .\n")
    assert predict.main(["--params", str(tmp_path / "params.yaml"), "--model-uri", str(tmp_path / "no-model"),
                         "--input", str(table), "--out", str(table)]) == 2
    assert "is the --input table itself" in capsys.readouterr().err and table.read_text() == HEADER + "1,hi,,\n"


def test_non_utf8_and_broken_jsonl_tables_are_sentences(tmp_path):
    latin = tmp_path / "posts.csv"
    latin.write_bytes(HEADER.encode() + "1,café,,yes\n".encode("latin-1"))
    with pytest.raises(UserError, match="posts.csv:2: not UTF-8 text \\(byte 0xe9\\)"):
        table_posts(latin, {}, None)
    lines = tmp_path / "posts.jsonl"
    lines.write_text('{"id": 1, "text": "a", "label": "yes"}\n[1, 2]\n')
    with pytest.raises(UserError, match="posts.jsonl:2: a list, not a JSON object"):
        table_posts(lines, {}, None)


def test_csv_jsonl_and_parquet_with_renamed_columns_read_the_same_posts(tmp_path):
    frame = pd.DataFrame({"post": [7, 8, 9], "caption": ["sunny day", "", "rain again"],
                          "picture": ["images/7.jpg", None, "images/9.jpg"], "y": ["pos", "neg", None]})
    frame.to_csv(tmp_path / "posts.csv", index=False)
    frame.to_json(tmp_path / "posts.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "posts.parquet")
    mapping = {"id": "post", "text": "caption", "image_path": "picture", "label": "y"}
    read = [table_posts(tmp_path / name, mapping, None) for name in ("posts.csv", "posts.jsonl", "posts.parquet")]
    assert read[0] == read[1] == read[2]
    posts = read[0]
    assert [p.guid for p in posts] == ["7", "8", "9"] and [p.label for p in posts] == ["pos", "neg", None]
    assert posts[0].image_path == tmp_path / "images" / "7.jpg" and posts[1].image_path is None
    assert posts[0].text == "sunny day" and posts[0].text_path is None


def test_the_label_set_is_the_datas_sorted_or_data_labels_in_its_order(tmp_path):
    write_table(tmp_path / "data", balanced_rows(("cat", "ant", "bee"), 12) + "q1,unlabelled post,,\n")
    for data, expected in (({}, ("ant", "bee", "cat")), ({"labels": ["cat", "bee", "ant"]}, ("cat", "bee", "ant"))):
        assert split_stage.main(["--params", str(write_params(tmp_path, data))]) == 0
        assert tuple(json.loads((tmp_path / "splits" / "split.json").read_text())["labels"]) == expected
    dataset = load_dataset(DataSource(tmp_path / "data", "table", "posts.csv"), require_test_files=False)
    assert dataset.labels == ("ant", "bee", "cat") and [s.guid for s in dataset.test] == ["q1"]


def test_a_filled_split_column_fixes_the_split(tmp_path):
    rows = [f"{i},post {i},,{'ab'[i % 2]},{('train', 'train', 'val', 'holdout')[i % 4]}\n" for i in range(16)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "posts.csv").write_text("id,text,image_path,label,split\n" + "".join(rows))
    assert split_stage.main(["--params", str(write_params(tmp_path, {}))]) == 0
    written = pd.read_csv(tmp_path / "splits" / "splits.csv", dtype=str)
    assert written["split"].tolist() == [("train", "train", "val", "holdout")[i % 4] for i in range(16)]


class FixedLabelModel:
    """Stands in for a loaded pyfunc that predicts ``labels``; predicting is never reached here."""

    def __init__(self, labels):
        self.labels = labels

    def unwrap_python_model(self):
        return SimpleNamespace(labels=self.labels)

    def predict(self, frame, params=None):
        raise AssertionError("a label-set mismatch must be refused before the model runs")


def test_a_model_of_another_label_set_is_refused(sample_root, tmp_path):
    with pytest.raises(UserError, match="the model predicts the labels yes, no, but the data in .* has the labels "
                                        "positive, neutral, negative"):
        predict_test_set(FixedLabelModel(("yes", "no")), DataSource(sample_root))
    table = write_table(tmp_path, "1,hi,,positive\n2,ho,,\n")
    with pytest.raises(UserError, match="the model predicts the labels yes, no, but the label column of .* has "
                                        "the labels positive"):
        predict_table(FixedLabelModel(("yes", "no")), table, {})
    with pytest.raises(AssertionError, match="refused before"):  # the course's model takes the course's labels
        predict_table(FixedLabelModel(COURSE_LABELS), table, {})








