"""`mlflow models serve` faces untrusted clients: every hostile request gets a 4xx and a sentence,
no request makes the server read its own files, memory stays bounded, and it keeps serving."""

import base64
import io
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmarks.processes import free_port, serve_model, tree_memory
from msc.config import with_overrides
from msc.model.inputs import MAX_IMAGE_BASE64_CHARS, MAX_ROWS, MAX_TEXT_CHARS
from msc.tune.runner import tune


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def split_body(rows, columns=("text", "image"), params: dict | None = None) -> bytes:
    return json.dumps({"dataframe_split": {"columns": list(columns), "data": rows},
                       **({"params": params} if params is not None else {})}).encode()


def post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture()
def server(trained_project, config):
    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 2}))
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{trained_project / 'mlflow.db'}"}
    with serve_model("models:/msc/Production", trained_project, env, port) as process:
        yield process, port


def hostile_requests(image: str, sample_file: str) -> dict[str, bytes]:
    """Name -> request body (or (body, content type)). Each must get a 4xx."""
    bomb = png(Image.new("1", (40000, 40000)))  # about 200 KB, 1.6 gigapixels once decoded
    just_too_big = png(Image.new("1", (8000, 6000)))  # 48 megapixels
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(jpeg, format="JPEG")
    rows = {
        "absolute path of a server file": [["hi", "/etc/passwd"]],
        "absolute path that does not exist": [["hi", "/etc/passwx"]],
        "relative path": [["hi", "../../../../etc/hostname"]],
        "path of a real image": [["hi", sample_file]],
        "file URL": [["hi", f"file://{sample_file}"]],
        "image null": [["hi", None]],
        "text a number": [[5, image]],
        "text a boolean": [[True, image]],
        "image a number": [["hi", 12345]],
        "image a list": [["hi", [1, 2, 3]]],
        "image an object": [["hi", {"path": "/etc/passwd"}]],
        "image empty": [["hi", ""]],
        "undecodable base64": [["hi", "!!!! not base64 ????"]],
        "base64 of text": [["hi", b64(b"just some text, no image")]],
        "base64 of an SVG": [["hi", b64(b"<svg xmlns='http://www.w3.org/2000/svg'/>")]],
        "truncated JPEG": [["hi", b64(jpeg.getvalue()[:200])]],
        "decompression bomb": [["hi", b64(bomb)]],
        "48 megapixels": [["hi", b64(just_too_big)]],
        "data URL of garbage": [["hi", "data:image/png;base64,AAAA"]],
        "base64 over the limit": [["hi", "A" * (MAX_IMAGE_BASE64_CHARS + 4)]],
        "text over the limit": [["x" * (MAX_TEXT_CHARS + 1), image]],
        "too many rows": [["hi", image]] * (MAX_ROWS + 1),
        "a bad row after a good one": [["hi", image], ["hi", "/etc/passwd"]],
    }
    bodies = {name: (split_body(r), "application/json") for name, r in rows.items()}
    bodies.update({
        "missing image column": (split_body([["hi"]], ("text",)), "application/json"),
        "missing text column": (split_body([[image]], ("image",)), "application/json"),
        "renamed columns": (split_body([["hi", image]], ("caption", "picture")), "application/json"),
        "not JSON": (b"{this is not json", "application/json"),
        "empty JSON object": (b"{}", "application/json"),
        "ragged rows": (split_body([["hi", image, "extra"]]), "application/json"),
        "wrong content type": (b"text,image\nhi,x", "application/xml"),
        "explain not a boolean": (split_body([["hi", image]], params={"explain": "perhaps"}), "application/json"),
        "explain a list": (split_body([["hi", image]], params={"explain": [True]}), "application/json"),
        "negative driver margin": (split_body([["hi", image]], params={"explain": True, "driver_margin": -1.0}),
                                   "application/json"),
    })
    return bodies


def test_hostile_requests_get_4xx_and_the_server_stays_up_and_bounded(server, sample_root):
    process, port = server
    image = b64((sample_root / "data" / "1.jpg").read_bytes())
    good = split_body([["so happy love great", image], ["sad hate awful", "data:image/jpeg;base64," + image]])
    status, text = post(port, good)
    assert status == 200, text
    baseline = tree_memory(process.pid)
    bodies = hostile_requests(image, str(sample_root / "data" / "2.jpg"))
    assert len(bodies) == 33  # the README says how many
    answers = {}
    for name, (body, content_type) in bodies.items():
        status, text = post(port, body, content_type)
        answers[name] = text
        assert 400 <= status < 500, f"{name}: HTTP {status}: {text[:300]}"
        assert process.poll() is None, f"the server died on: {name}"
    peak = tree_memory(process.pid)
    assert peak < baseline + 1024**3, f"memory grew from {baseline / 2**20:.0f} to {peak / 2**20:.0f} MiB"
    # The sentences name the row and the problem.
    assert "row 0: image is not valid base64" in answers["absolute path of a server file"]
    assert "row 1:" in answers["a bad row after a good one"]
    assert "more than 40,000,000" in answers["decompression bomb"] and "8000x6000" in answers["48 megapixels"]
    assert "is not an image file" in answers["base64 of text"]
    assert "missing inputs ['image']" in answers["missing image column"]  # MLflow's schema check, before the model
    assert f"more than {MAX_ROWS}" in answers["too many rows"]
    assert "explain" in answers["explain not a boolean"] and "driver_margin" in answers["negative driver margin"]
    # A client cannot tell whether a path exists on the server.
    assert answers["absolute path of a server file"].replace("/etc/passwd", "PATH") ==\
        answers["absolute path that does not exist"].replace("/etc/passwx", "PATH")
    # ... and a good request is still served.
    status, text = post(port, good)
    assert status == 200, text
    predictions = pd.DataFrame(json.loads(text)["predictions"])
    assert list(predictions.columns) == ["label", "p_positive", "p_neutral", "p_negative", "used", "input_note"]
    assert predictions["used"].tolist() == ["text+image"] * 2 and predictions["input_note"].tolist() == ["", ""]
    assert len(predictions) == 2 and set(predictions["label"]) <= {"positive", "neutral", "negative"}
    np.testing.assert_allclose(predictions[["p_positive", "p_neutral", "p_negative"]].sum(1), 1.0, atol=1e-5)
    # Without the switch, or with it off, the answer is today's, byte for byte; with it, the attributions.
    rows = [["so happy love great", image], ["sad hate awful", image]]
    assert post(port, split_body(rows, params={"explain": False})) == post(port, split_body(rows))
    status, text = post(port, split_body(rows, params={"explain": True}))
    assert status == 200, text
    explained = pd.DataFrame(json.loads(text)["predictions"])
    assert list(explained.columns) == ["label", "p_positive", "p_neutral", "p_negative", "attr_text", "attr_image",
                                       "driver", "used", "input_note"]
    assert set(explained["driver"]) <= {"text", "image", "both"}
    # The registered version's label sets through the same signature: coverage 0 (the default) adds nothing.
    assert post(port, split_body(rows, params={"coverage": 0.0})) == post(port, split_body(rows))
    status, text = post(port, split_body(rows, params={"coverage": 0.9, "class_conditional": True}))
    assert status == 200, text
    with_sets = pd.DataFrame(json.loads(text)["predictions"])
    assert list(with_sets.columns) == ["label", "p_positive", "p_neutral", "p_negative", "label_set", "used", "input_note"]
    assert all(set(s.split("|")) <= {"positive", "neutral", "negative"} for s in with_sets["label_set"] if s)
    for bad in (1.5, "most"):
        status, text = post(port, split_body(rows, params={"coverage": bad}))
        assert status == 400 and "coverage" in text, text
    # MIME base64 (a CRLF every 76 characters, as Spark's base64() writes it) and a data URL of it: the same image.
    mime = "\r\n".join(image[start : start + 76] for start in range(0, len(image), 76))
    status, text = post(port, split_body([["so happy", image], ["so happy", mime],
                                          ["so happy", "data:image/jpeg;base64,\n" + mime]]))
    assert status == 200, text
    same = pd.DataFrame(json.loads(text)["predictions"])[["p_positive", "p_neutral", "p_negative"]].to_numpy()
    np.testing.assert_allclose(same[1:], same[[0, 0]], atol=1e-6)
