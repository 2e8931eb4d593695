"""The MLflow UI's view of a study's trials: the objective and the tuned parameters as columns, best
first, and the chart view's parallel coordinates of the tuned parameters against the objective.

A trial run logs every setting (about 60, nearly all the same in every trial), and the UI shows
none of them until columns are picked by hand. MLflow 3.17's UI opens a saved view from the URL:
``#/experiments/<id>/runs?viewStateShareKey=KEY`` reads the experiment tag
``mlflow.sharedViewState.KEY``, a JSON object with the runs page's search facets (``orderByKey``,
``orderByAsc``, ...) and its UI state (``selectedColumns``, ``compareRunCharts``, ...). The URL must
carry no search facet of its own, or the UI ignores the saved view.
"""

from __future__ import annotations

import hashlib
import json
import re

from msc.track.store import ui_link

VIEW_KEY = "msc-trials"  # the start of each study's key
SHARED_VIEW_TAG = "mlflow.sharedViewState."
OBJECTIVE = "objective"  # the metric each trial logs as its Optuna value (msc/tune/objective.py)


def column(kind: str, key: str) -> str:
    """The runs table's column key, as the UI spells it: ``metrics.`objective```."""
    return f"{kind}.`{key}`"


def trials_view(tuned: list[str]) -> dict:
    """The saved view: best objective first; the objective, the kept epoch and the tuned parameters as
    columns; in the chart view, one parallel-coordinates chart of the tuned parameters against the objective."""
    return {
        "orderByKey": column("metrics", OBJECTIVE),
        "orderByAsc": False,
        "selectedColumns": [column("metrics", OBJECTIVE), column("metrics", "best_epoch"),
                            *(column("params", key) for key in tuned)],
        "compareRunSections": [{"uuid": "msc-trials", "name": "Tuned parameters against the objective",
                                "display": True, "isReordered": False, "deleted": False}],
        "compareRunCharts": [
            {"uuid": "msc-parallel", "type": "PARALLEL", "runsCountToCompare": 100, "metricSectionId": "msc-trials",
             "deleted": False, "isGenerated": False, "selectedParams": list(tuned), "selectedMetrics": [OBJECTIVE],
             "showAllRuns": True},
            {"uuid": "msc-objective", "type": "BAR", "runsCountToCompare": 20, "metricSectionId": "msc-trials",
             "deleted": False, "isGenerated": False, "metricKey": OBJECTIVE},
        ],
    }


def view_key(study_name: str) -> str:
    """The study's own view key: studies that share an experiment (with other search spaces, finishing at
    the same moment) neither overwrite each other's view nor race to insert one tag. Characters a URL or a
    tag key would not keep become dashes; the digest keeps ``a b`` and ``a-b`` apart."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", study_name).strip("-")[:40]
    return f"{VIEW_KEY}-{readable}-{hashlib.sha256(study_name.encode()).hexdigest()[:8]}"


def share_trials_view(experiment_id: str, tuned: list[str], study_name: str) -> str:
    """Saves the study's view of the trials on the experiment and returns the link that opens it; the
    description of the study's parent run (tagged ``study_name`` and ``study_identity``; msc/tune/runs.py)
    says how to compare its trials."""
    from mlflow import MlflowClient

    client = MlflowClient()
    key = view_key(study_name)  # the caller holds the study's parent-run lock (src/tune.py): one writer per key
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, json.dumps(trials_view(tuned)))
    link = ui_link(experiment_id, view=key)
    # Filtered here, not in the search: a study name may hold any character, quotes included.
    for run in client.search_runs([experiment_id], "tags.study_identity LIKE '%'", max_results=1000):
        if run.data.tags.get("study_name") == study_name:
            client.set_tag(run.info.run_id, "mlflow.note.content", compare_note(link, tuned))
    return link


def compare_note(link: str, tuned: list[str]) -> str:
    """The parent run's description (Markdown in the run page)."""
    return (f"**Comparing this study's trials.** [This view]({link}) lists the trials best `{OBJECTIVE}` first, "
            f"with `{OBJECTIVE}` (the kept epoch's `train.select_metric`), `best_epoch` and the tuned parameters "
            f"({', '.join(f'`{key}`' for key in tuned)}) as columns; the other settings are the same in every "
            "trial (any trial's Parameters). Its **Chart** view (the toggle above the table, or "
            f"[this link]({link}&compareRunsMode=CHART)) draws the tuned parameters against `{OBJECTIVE}` as parallel "
            f"coordinates, and `{OBJECTIVE}` per trial as bars. To "
            "look at a few trials closely, tick them and press **Compare**. Optuna's own plots of the study are "
            "this run's artifacts (PNG).")
