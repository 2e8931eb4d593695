"""The MLflow UI's view of a study's trials (issue 36, item 4): the link tune prints opens the runs
with the objective and the tuned parameters as columns, and the chart view's parallel coordinates of
the tuned parameters against the objective; the parent run says how to compare."""

from __future__ import annotations

import json
import re

import mlflow
import pytest

from msc.track.views import SHARED_VIEW_TAG, share_trials_view, view_key

TUNED = ["train.lr", "train.dropout", "train.fusion"]
# The search facets of MLflow 3.17's runs page: any of them in the URL makes the UI ignore a saved view.
SEARCH_FACETS = ("searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter", "modelVersionFilter",
                 "datasetsFilter")


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def test_the_link_opens_the_saved_view_of_the_trials(store):
    experiment = store.create_experiment("msc")
    parent = store.create_run(experiment, tags={"study_name": "it's-a-study", "study_identity": "abc"}).info.run_id
    other = store.create_run(experiment, tags={"study_name": "another", "study_identity": "def"}).info.run_id
    trial = store.create_run(experiment, tags={"study_name": "it's-a-study", "mlflow.parentRunId": parent}).info.run_id
    link = share_trials_view(experiment, TUNED, "it's-a-study")
    key = view_key("it's-a-study")
    assert link.endswith(f"#/experiments/{experiment}/runs?workflowType=machine_learning&viewStateShareKey={key}")
    assert not any(f"{facet}=" in link for facet in SEARCH_FACETS)
    view = json.loads(store.get_experiment(experiment).tags[SHARED_VIEW_TAG + key])
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`objective`", False)
    assert view["selectedColumns"][0] == "metrics.`objective`"
    assert {f"params.`{key}`" for key in TUNED} <= set(view["selectedColumns"])
    parallel = next(chart for chart in view["compareRunCharts"] if chart["type"] == "PARALLEL")
    assert (parallel["selectedParams"], parallel["selectedMetrics"]) == (TUNED, ["objective"])
    assert {chart["metricSectionId"] for chart in view["compareRunCharts"]} == {s["uuid"] for s in view["compareRunSections"]}
    # Only the study's parent run gets the description; a trial and another study's parent keep theirs.
    note = store.get_run(parent).data.tags["mlflow.note.content"]
    assert link in note and "Compare" in note and all(f"`{key}`" in note for key in TUNED)
    assert all("mlflow.note.content" not in store.get_run(run).data.tags for run in (other, trial))


def test_each_study_keeps_its_own_view_of_a_shared_experiment(store):
    """Two studies in one experiment, with other search spaces: the second no longer overwrites the first's
    view (nor inserts the same experiment tag at the same moment, which failed on UNIQUE)."""
    experiment = store.create_experiment("msc")
    first = share_trials_view(experiment, TUNED, "study a")
    second = share_trials_view(experiment, ["train.lr"], "study-a")  # the same name once characters are dashed
    assert first != second
    tags = store.get_experiment(experiment).tags
    for name, tuned in (("study a", TUNED), ("study-a", ["train.lr"])):
        key = view_key(name)
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", key) and key.startswith("msc-trials-study-a-")  # as in a URL
        parallel = next(chart for chart in json.loads(tags[SHARED_VIEW_TAG + key])["compareRunCharts"]
                        if chart["type"] == "PARALLEL")
        assert parallel["selectedParams"] == tuned
