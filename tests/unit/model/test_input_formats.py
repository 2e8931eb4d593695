"""Issue 30, item 1: an image in any form a caller sends is read as the same image, or the output says it
was not (``used``, ``input_note``), and a batch whose images mostly could not be used stops."""

import base64
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from msc.core.labels import COURSE_LABELS
from msc.model.inputs import MAX_IMAGE_BYTES, base64_bytes, decode_base64, read_trusted_image
from src import predict

LABELS = COURSE_LABELS  # the session model_folder's (tests/conftest.py)
PROBABILITIES = [f"p_{label}" for label in LABELS]


def mime(raw: bytes) -> str:
    """RFC 2045 base64: a CRLF after every 76 characters, as Spark's base64() and email write it."""
    encoded = base64.b64encode(raw).decode()
    return "\r\n".join(encoded[start : start + 76] for start in range(0, len(encoded), 76))


def images(sample_root: Path, n: int) -> list[Path]:
    return sorted((sample_root / "data").glob("*.jpg"))[:n]


def test_bytes_mime_base64_and_a_data_url_give_the_probabilities_of_the_file(model_folder, sample_root):
    model = mlflow.pyfunc.load_model(str(model_folder), model_config={"trusted_input": True})
    path = images(sample_root, 1)[0]
    raw = path.read_bytes()
    assert len(mime(raw).splitlines()) > 2  # the line breaks are there
    forms = {"path": str(path), "bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(raw),
             "numpy bytes": np.bytes_(raw), "mime base64": mime(raw), "base64 with LF": mime(raw).replace("\r", ""),
             "data url": "data:image/jpeg;base64," + base64.b64encode(raw).decode(),
             "mime data url": "data:image/jpeg;base64,\r\n" + mime(raw), "pathlib path": path}
    frame = pd.DataFrame({"text": ["so happy today"] * (len(forms) + 1), "image": [*forms.values(), None]},
                         index=[*forms, "no image"])
    out = model.predict(frame)
    assert list(out.columns) == ["label", *PROBABILITIES, "used", "input_note"]
    assert out["used"].tolist() == ["text+image"] * len(forms) + ["text"]
    assert out["input_note"].tolist() == [""] * (len(forms) + 1)
    expected = out.loc[["path"] * len(forms), PROBABILITIES].to_numpy()
    np.testing.assert_allclose(out.loc[list(forms), PROBABILITIES].to_numpy(), expected, atol=1e-6)
    assert np.abs(out.loc["no image", PROBABILITIES].to_numpy() - expected[0]).max() > 1e-4, "the image is used"


def test_a_text_sent_as_bytes_is_the_same_text(model_folder, sample_root):
    model = mlflow.pyfunc.load_model(str(model_folder), model_config={"trusted_input": True})
    image = str(images(sample_root, 1)[0])
    out = model.predict(pd.DataFrame({"text": ["Très déçu 😞", "Très déçu 😞".encode(), "b'Tr\\xc3\\xa8s'"],
                                      "image": [image] * 3}))
    np.testing.assert_allclose(out.loc[1, PROBABILITIES].to_numpy(float), out.loc[0, PROBABILITIES].to_numpy(float),
                               atol=1e-6)
    assert np.abs(out.loc[2, PROBABILITIES].to_numpy(float) - out.loc[0, PROBABILITIES].to_numpy(float)).max() > 1e-5


def test_an_unusable_image_is_named_in_the_output_and_most_unusable_stops_the_batch(model_folder, sample_root):
    model = mlflow.pyfunc.load_model(str(model_folder), model_config={"trusted_input": True})
    good = [str(p) for p in images(sample_root, 2)]
    frame = pd.DataFrame({"text": ["a", "b", None, "d"], "image": [*good, b"\xff\xd8 not a jpeg", None]},
                         index=["g1", "g2", "bad", "none"])
    out = model.predict(frame)
    assert out["used"].tolist() == ["text+image", "text+image", "none", "text"]
    assert out.loc["bad", "input_note"] == "image unusable: the raw image (13 bytes) is not an image file"
    assert out.loc[["g1", "g2", "none"], "input_note"].tolist() == ["", "", ""]
    mostly_bad = pd.DataFrame({"text": ["a", "b", "c"], "image": [good[0], "missing/photo.jpg", b"garbage"]},
                              index=["ok", "gone", "junk"])
    with pytest.raises(MlflowException) as stopped:
        model.predict(mostly_bad)
    message = stopped.value.message
    assert message.startswith("2 of the 3 images sent could not be used (67%, more than the 50%")
    assert "row gone: image unusable: 'missing/photo.jpg' is neither an existing file" in message
    assert "row junk: image unusable: the raw image (7 bytes) is not an image file" in message
    assert stopped.value.get_http_status_code() == 400
    lenient = mlflow.pyfunc.load_model(str(model_folder), model_config={"trusted_input": True,
                                                                         "max_unusable_image_share": 0.7})
    assert lenient.predict(mostly_bad)["used"].tolist() == ["text+image", "text", "text"]


def test_the_untrusted_reader_takes_mime_base64_and_data_urls_but_never_a_path(sample_root):
    raw = images(sample_root, 1)[0].read_bytes()
    for form in (mime(raw), mime(raw).replace("\r\n", "\n"), "data:image/jpeg;base64," + base64.b64encode(raw).decode(),
                 "data:image/jpeg;name=a.jpg;base64,\n" + mime(raw), "  " + mime(raw) + "\n"):
        assert base64_bytes(form, 0) == raw
    path = str(images(sample_root, 1)[0])
    with pytest.raises(MlflowException, match="row 0: image is not valid base64"):
        base64_bytes(path, 0)
    assert read_trusted_image(path).size == read_trusted_image(mime(raw)).size  # the trusted reader opens it


def test_the_untrusted_limit_is_on_the_decoded_bytes():
    over = base64.b64encode(b"\0" * (MAX_IMAGE_BYTES + 3)).decode()  # within the string bound, over in bytes
    assert len(decode_base64(over)) > MAX_IMAGE_BYTES
    with pytest.raises(MlflowException, match=f"more than {MAX_IMAGE_BYTES:,}"):
        base64_bytes(over, 7)
    wrapped = mime(b"\0" * MAX_IMAGE_BYTES)  # the limit itself, with its MIME line breaks, passes
    assert len(base64_bytes(wrapped, 0)) == MAX_IMAGE_BYTES


def posts_table(folder: Path, sample_root: Path, bad: int) -> Path:
    """A table of 4 posts whose last ``bad`` images are corrupt."""
    for number, source in enumerate(images(sample_root, 4)):
        (folder / f"{number}.jpg").write_bytes(b"not a jpeg" if number >= 4 - bad else source.read_bytes())
    table = folder / "posts.csv"
    table.write_text("id,text,image_path\n" + "".join(f"p{n},post {n},{n}.jpg\n" for n in range(4)))
    return table


def test_src_predict_prints_the_counts_and_stops_when_most_images_are_unusable(model_folder, sample_root, tmp_path,
                                                                                 monkeypatch, capsys):
    project = tmp_path
    monkeypatch.chdir(project)
    # The predict run is recorded in the store the model was logged to (a new sqlite store costs seconds).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{model_folder.parent / 'mlflow.db'}")
    params = project / "params.yaml"
    params.write_text("predict:\n  max_unusable_image_share: 0.5\n")
    table = posts_table(project, sample_root, bad=1)
    argv = ["--model-uri", str(model_folder), "--params", str(params), "--input", str(table), "--out", "out.csv"]
    assert predict.main(argv) == 0
    out = capsys.readouterr().out
    assert "inputs used: 3 posts text+image, 1 text only, 0 image only, 0 neither; 1 of the 4 images" in out
    assert "(row p3: image unusable: the file" in out
    written = pd.read_csv(project / "out.csv", keep_default_na=False)
    assert written.columns[-2:].tolist() == ["used", "input_note"] and written.loc[3, "used"] == "text"
    posts_table(project, sample_root, bad=3)
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert "error: 3 of the 4 images sent could not be used (75%" in err and "row p1: image unusable" in err
    assert "predict.max_unusable_image_share in params.yaml" in err and "Traceback" not in err
    assert pd.read_csv(project / "out.csv", keep_default_na=False).loc[1, "used"] == "text+image", "not overwritten"


def test_the_threshold_is_a_share_and_an_older_model_is_reported_as_not_counted(config):
    from msc.config import with_overrides
    from msc.core.errors import UserError
    from msc.track.inference import image_usage

    with pytest.raises(UserError, match="key 'predict.max_unusable_image_share' is 1.5; it must be a share from 0 to 1"):
        with_overrides(config, {"predict.max_unusable_image_share": 1.5})
    older = pd.DataFrame({"id": ["a"], "label": ["positive"], "p_positive": [1.0]})  # logged before issue 30
    assert image_usage(older, 0.5) == ({}, "this model was logged before it reported the inputs each prediction used; "
                                           "not counted", None)
    half = pd.DataFrame({"id": ["a", "b"], "used": ["text+image", "text"], "input_note": ["", "image unusable: x"]})
    counts, report, refusal = image_usage(half, 0.5)
    assert counts["images_sent"] == 2 and counts["images_unusable"] == 1 and refusal is None  # half is not most
    assert report == ("inputs used: 1 posts text+image, 1 text only, 0 image only, 0 neither; 1 of the 2 images the "
                      "posts name could not be used (row b: image unusable: x)")
    assert image_usage(half, 0.4)[2].startswith("1 of the 2 images sent could not be used (50%, more than the 40%")


def test_a_lone_surrogate_is_replaced_and_noted_not_a_failed_batch(model_folder, sample_root):
    """Issue 33, kind 2: '\\ud83d' (half an emoji) failed the whole in-process batch with UnicodeEncodeError."""
    model = mlflow.pyfunc.load_model(str(model_folder), model_config={"trusted_input": True})
    image = str(images(sample_root, 1)[0])
    # pandas 3's Arrow strings cannot hold one; an object column (a caller's own frame) can.
    frame = pd.DataFrame({"text": ["so happy", "so happy \ud83d", "so happy \ufffd"], "image": [image] * 3}, dtype=object)
    out = model.predict(frame)
    assert out["used"].tolist() == ["text+image"] * 3
    assert out["input_note"].tolist() == ["", "text changed: 1 unpaired surrogate code point(s) replaced with U+FFFD", ""]
    np.testing.assert_allclose(out.loc[1, PROBABILITIES].to_numpy(float), out.loc[2, PROBABILITIES].to_numpy(float),
                               atol=1e-6)
