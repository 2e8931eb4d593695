"""What several test files share and that is no fixture: the repository's paths, the committed params.yaml
pointed at test folders, commands run as a user types them, a snapshot of the repository, PostgreSQL's
address, issue 25's noisy project, which tier folders a mark expression can select. Only tests/ imports
this package; the process and server utilities live in benchmarks/processes.py, which the benchmark uses
too."""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # msc.config imports sklearn and torch: conftest imports this file in xdist's controller too
    from msc.config import Config

TESTS = Path(__file__).resolve().parent  # golden/ and fixtures/ lie here, beside unit/, integration/ and slow/
REPO = TESTS.parent
# The tests' backbone and data: the sample's tiny CLIP on 32 px images, and the sample's story on images a
# quarter of its size (msc/model/tiny.py SHAPES says what that saves). The golden run, the demo and the
# integration tests that write their own backbone keep the sample's 224 px "tiny".
TEST_SHAPE = "tiny-32px"
TEST_IMAGE_SCALE = 0.25

# A tier folder -> the marks its tests may carry besides the tier's own (unit/ has none): slow/ keeps
# `integration` on the slow tests that start processes; postgres and gpu may be on any test
# (test_tests_layout.py keeps the tier marks off the rest).
TIER_MARK_NAMES = ("integration", "slow")
TIER_FOLDERS = {"unit": ("postgres", "gpu"), "integration": ("postgres", "gpu"), "slow": ("integration", "postgres", "gpu")}


def tier_may_be_selected(tier: str, markexpr: str) -> bool:
    """Whether ``-m markexpr`` selects some test that could lie in the tier folder ``tier``.

    pytest deselects after it has imported every test file, and the default run's `-m 'not slow and not
    integration'` used to import (and rewrite the asserts of) the 39 files of integration/ and slow/ in every
    worker for nothing. The expression is pytest's own; an expression it cannot parse here, or one naming a
    mark this table does not know, collects the folder as before."""
    try:
        from _pytest.mark.expression import Expression  # not public API: any failure collects as before

        expression = Expression.compile(markexpr)
        fixed = {tier} & set(TIER_MARK_NAMES)
        optional = TIER_FOLDERS[tier]
        asked: set[str] = set()

        def has_mark(marks: set[str]):
            def matcher(name: str, /, **kwargs) -> bool:
                if kwargs:  # a mark's arguments (-m "gpu(x=1)"): not modelled here, so collect as before
                    raise ValueError(name)
                asked.add(name)
                return name in marks

            return matcher

        selected = any(expression.evaluate(has_mark(fixed | set(chosen)))
                       for size in range(len(optional) + 1) for chosen in itertools.combinations(optional, size))
        return selected or not asked <= set(TIER_MARK_NAMES) | set(optional)
    except Exception:
        return True


def image_side_and_tokens() -> tuple[int, int]:
    """The tests' backbone's image side in pixels and its number of image tokens (CLS + one per patch)."""
    from msc.model.tiny import SHAPES

    side, patch = SHAPES[TEST_SHAPE]["image_size"], SHAPES[TEST_SHAPE]["patch_size"]
    return side, 1 + (side // patch) ** 2


def committed_params_text() -> str:
    """params.yaml as committed: what a user changed in the working copy (the README's `-S` switch, a
    top-layers experiment) must not change what the tests run. The working copy outside a git checkout."""
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True)
    return committed.stdout if committed.returncode == 0 else (REPO / "params.yaml").read_text()


@functools.lru_cache(maxsize=1)
def committed_params() -> Path:
    """A file holding ``committed_params_text()``, written once per test process and removed at its exit
    (it lies outside pytest's basetemp: the helpers have no fixture to ask for it)."""
    folder = tempfile.mkdtemp(prefix="msc-params-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = Path(folder) / "params.yaml"
    path.write_text(committed_params_text())
    return path


def make_config(data_root: Path, backbone: Path, features_dir: Path, overrides: dict | None = None) -> Config:
    """The repository's committed params.yaml pointed at test folders, with dotted-key overrides."""
    from msc.config import load_config, with_overrides

    return with_overrides(
        load_config(committed_params()),
        {
            "data.root": str(data_root),
            "data.splits_dir": str(features_dir.parent / "splits"),
            "model.backbone": str(backbone),
            "model.device": "cpu",
            "features.dir": str(features_dir),
            "features.augment_views": 2,
            "features.num_workers": 0,
            "features.batch_size": 32,
            "train.epochs": 3,
            **(overrides or {}),
        },
    )


def cache_sections(config: Config, device: bool = False) -> tuple:
    """The sections of ``config`` that ``featurize`` takes (data, model, features), and train.device
    after them for ``open_cache`` when ``device``."""
    return (config.data, config.model, config.features) + ((config.train.device,) if device else ())


def sh(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command in ``cwd`` as a user types it there: this venv's tools, the folder's own ``src``,
    no MLflow tracking URI unless ``env`` sets one."""
    environment = {**os.environ, "PYTHONPATH": "", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    environment.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(list(args), cwd=cwd, env={**environment, **(env or {})}, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result



def logged_model_folder(root: Path, backbone: Path, labels: tuple[str, ...]) -> Path:
    """A logged model (a random late-fusion head on ``backbone``) in a store under ``root``, downloaded to
    ``root/model`` so that each test loads it with the model_config it needs."""
    import mlflow
    import pytest

    from msc.model.heads import build_head
    from msc.track.logged_model import log_trial_model
    from msc.train.config import TrainConfig

    # From root: MLflow fixes a store's default artifact root (<cwd>/mlruns) when it first opens it, and a
    # test that runs src.predict on this store later creates its experiment there (it was the repository's).
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        try:
            experiment = mlflow.create_experiment("logged", artifact_location=str(root / "mlruns"))
            with mlflow.start_run(experiment_id=experiment):
                info = log_trial_model(build_head("late", 128, 8, 0.0, len(labels)), TrainConfig(hidden_dim=8), 128,
                                       str(backbone), "main", 77, labels)
            return Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(root / "model")))
        finally:
            mlflow.set_tracking_uri(None)

GIT_USER = ("-c", "user.email=t@t", "-c", "user.name=t")


def snapshot_repository(root: Path) -> Path:
    """The working tree's tracked and unignored files, committed into a fresh git repository at ``root``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "params.yaml").write_text(committed_params_text())  # not a user's edits of the working copy
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", *GIT_USER, "add", "-A", cwd=root)
    sh("git", *GIT_USER, "commit", "-qm", "snapshot", cwd=root)
    return root


POSTGRES_URL = os.environ.get("MSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(POSTGRES_URL).connect():
            return True
    except Exception:  # noqa: BLE001
        return False


def write_noisy_sample(out: Path, labelled: int, test: int, seed: int, text_noise: float = 0.25,
                       image_noise: float = 0.30) -> dict:
    """The offline sample's generator (msc/data/synthetic.py) with other cue noises and test share:
    ``labelled`` rows in train.txt, ``test`` in test_without_label.txt, the text showing the true label
    with probability 1 - ``text_noise`` and the image with 1 - ``image_noise`` (issue 25's set: 1000, 300,
    0.25, 0.30); bayes.json holds the Bayes rule of these noises."""
    from msc.data import synthetic

    n = labelled + test
    summary = synthetic.write_dataset(out, n, seed, text_noise=text_noise, image_noise=image_noise,
                                      test_fraction=test / n)
    assert sum(1 for _ in (out / "test_without_label.txt").open()) - 1 == test
    return summary


def run_noisy_project(work: Path, labelled: int, test: int, seed: int, trials: int = 6) -> str:
    """Issue 25's recipe in the empty folder ``work``: ``write_noisy_sample``, the tiny random CLIP, then
    split, featurize, ``tune --trials`` and ``predict --true-labels`` as a user types them, on the CPU
    with the committed params.yaml, in fp32 (bf16 autocast, where a CPU has it, rounds differently and would
    make the chosen trial depend on the machine); returns what predict printed."""
    import yaml

    params = yaml.safe_load(committed_params_text())
    params["model"].update(backbone="models/tiny-clip", device="cpu")
    params["features"].update(num_workers=0)
    params["train"].update(device="cpu", precision="fp32")
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_noisy_sample(work / "data", labelled, test, seed)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = ""
    for args in (["src.sample", "--no-data", "--backbone-out", "models/tiny-clip"], ["src.split"], ["src.featurize"],
                 ["src.tune", "--trials", str(trials)],
                 ["src.predict", "--model-uri", "models:/msc/Production", "--true-labels", "data/cues.csv"]):
        result = subprocess.run([sys.executable, "-m", *args], cwd=work, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        out = result.stdout
    return out


def run_rules_project(work: Path, labels: tuple[str, ...], labelled: int, test: int, seed: int, weighted: bool,
                      trials: int = 3, features: dict | None = None, fusions: list[str] | None = None) -> str:
    """Issue 32's recipe in the empty folder ``work``: a generated set of ``labels`` (msc/data/synthetic.py:
    the course's prior for its three, else geometric; issue 25's cue noises), the tiny random CLIP, then split,
    featurize, ``tune --trials`` and ``predict --true-labels data/cues.csv --coverage 0.9`` as a user types
    them, on the CPU in fp32. ``weighted``: every trial trains with class_weight_power 0.9 and the rarest
    class boosted by 2 (what moves probability mass towards it); else unweighted (power 0, no boost). Neither
    is searched. ``features`` overrides that section, ``fusions`` the heads searched. Returns what predict
    printed."""
    import yaml

    from msc.data import synthetic

    params = yaml.safe_load(committed_params_text())
    params["data"]["labels"] = list(labels)
    params["model"].update(backbone="models/tiny-clip", device="cpu")
    params["features"].update(num_workers=0, **(features or {}))
    prior = synthetic.label_prior(labels)
    rarest = min(prior, key=prior.get)
    params["train"].update(device="cpu", precision="fp32", class_weight_power=0.9 if weighted else 0.0,
                           neutral_boost=1.0, class_boost={rarest: 2.0} if weighted else {})
    for key in ("class_weight_power", "neutral_boost"):
        params["tune"]["search_space"]["train"].pop(key)
    if fusions is not None:
        params["tune"]["search_space"]["train"]["fusion"]["choices"] = fusions
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    synthetic.write_dataset(work / "data", labelled + test, seed, labels=labels, text_noise=0.25, image_noise=0.30,
                            test_fraction=test / (labelled + test))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = ""
    for args in (["src.sample", "--no-data", "--backbone-out", "models/tiny-clip"], ["src.split"], ["src.featurize"],
                 ["src.tune", "--trials", str(trials)],
                 ["src.predict", "--model-uri", "models:/msc/Production", "--true-labels", "data/cues.csv",
                  "--coverage", "0.9"]):
        result = subprocess.run([sys.executable, "-m", *args], cwd=work, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        out = result.stdout
    return out
