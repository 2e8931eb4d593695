"""Empty or header-only inputs (issue 23, item 7): a sentence, or an empty but valid output."""

import shutil

import pytest

from msc.core.errors import UserError
from msc.track.inference import predict_test_set
from src.predict import distribution_table, write_labels


class NeverCalled:
    def predict(self, frame):
        raise AssertionError("nothing to label: the model must not be called (MLflow's schema check fails on 0 rows)")


@pytest.mark.parametrize("header", ["guid,tag\n", "\ufeffguid,tag\r\n\r\n"])
def test_a_header_only_test_file_gives_a_header_only_output(sample_root, tmp_path, header):
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    (data / "test_without_label.txt").write_text(header, encoding="utf-8")
    labels = predict_test_set(NeverCalled(), str(data))
    assert len(labels) == 0 and list(labels.columns) == ["guid", "tag", "p_positive", "p_neutral", "p_negative"]
    out = tmp_path / "test_with_label.txt"
    write_labels(labels, out)
    assert out.read_text() == "guid,tag\n"
    assert distribution_table(labels)[1] == {"positive": 0, "neutral": 0, "negative": 0}


def test_an_empty_label_file_is_a_sentence(sample_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    (data / "test_without_label.txt").write_text("")
    with pytest.raises(UserError, match="test_without_label.txt is empty; expected the header 'guid,tag'"):
        predict_test_set(NeverCalled(), str(data))
