
import pytest
import yaml

from msc.config import Config, flatten, load_config, with_overrides
from msc.core.errors import UserError
from tests.helpers import REPO, committed_params_text


def test_repository_params_load_with_the_documented_defaults():
    # The committed params.yaml, not the working copy: the README's first command switches
    # model.backbone there with `dvc exp run -S`, and the tests must still pass afterwards.
    defaults = yaml.safe_load(committed_params_text())
    assert defaults["tune"]["trials"] == 30 and defaults["features"]["augment_views"] == 4
    assert defaults["model"]["backbone"] == "openai/clip-vit-base-patch32"
    config = load_config(REPO / "params.yaml")  # the working copy, whatever -S switched, loads
    assert "train.lr" in config.tune.search_space


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  lrr: 0.1\n", "unknown key 'train.lrr'"),
        ("trian:\n  lr: 0.1\n", "unknown key 'trian'"),
        ("train:\n  lr: 1e-3x\n", "key 'train.lr' must be of type float, got '1e-3x'"),
        ("tune:\n  search_space:\n    train: 0.1\n", "search_space.train must map parameter names to specs"),
        ("train:\n  epochs: ten\n", "key 'train.epochs' must be of type int"),
        ("train:\n  fusion: concat\n", "key 'train.fusion' is 'concat'; it must be one of"),
        ("tune:\n  search_space:\n    train.foo: {type: float, low: 0, high: 1}\n", "'train.foo' is not a train key"),
        ("tune:\n  search_space:\n    train.lr: {type: float, low: 0}\n", "a float needs high, low"),
        ("train:\n  epochs: 0\n", "key 'train.epochs' is 0; it must be at least 1"),
        ("train:\n  hidden_dim: 130\n", "key 'train.hidden_dim' is 130; it must be a positive multiple of 4"),
        ("train:\n  select_metric: val_loss\n", "key 'train.select_metric' is 'val_loss'; it must be one of"),
        ("data:\n  holdout_fraction: 0.6\n  val_fraction: 0.5\n", "val_fraction' is 1.1; it must be below 1"),
        ("tune:\n  search_space:\n    train.hidden_dim: {type: categorical, choices: [128, 130]}\n",
         "search_space.train.hidden_dim: the value 130 is not allowed .*multiple of 4"),
        ("tune:\n  search_space:\n    train.dropout: {type: float, low: 0.0, high: 1.5}\n",
         "search_space.train.dropout: the value 1.5 is not allowed"),
        ("tune:\n  trials: 0\n", "key 'tune.trials' is 0; it must be at least 1"),
        ("train:\n  weight_decay: inf\n", "key 'train.weight_decay' is inf; it must be a finite number"),
        ("train:\n  lr: .nan\n", "key 'train.lr' is nan; it must be a finite number"),
        ("ablation:\n  zero_shot_prompts: {1: [a]}\n", "key 'ablation.zero_shot_prompts'"),
    ],
)
def test_bad_params_name_the_key(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_config(path)


def test_overrides_are_type_checked_and_flatten_names_every_key():
    config = with_overrides(Config(), {"train.lr": 0.01, "train.epochs": 2})
    assert config.train.lr == 0.01 and config.train.epochs == 2
    with pytest.raises(UserError, match="unknown config key 'train.nope'"):
        with_overrides(config, {"train.nope": 1})
    flat = flatten(config)
    assert flat["train.lr"] == 0.01 and flat["model.backbone"] and "tune.search_space" not in flat


def test_a_named_params_file_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no params file .*nowhere.yaml.*--params"):
        load_config(tmp_path / "nowhere.yaml")


@pytest.mark.parametrize("spelling", ["1e-05", "1E-5", "3e-4", ".5", "+5E-1", "0.00001"])
def test_every_float_spelling_reads_where_a_float_is_expected(tmp_path, spelling):
    """PyYAML (YAML 1.1) reads 1e-05, which `dvc exp run -S train.weight_decay=0.00001` writes, as a string."""
    path = tmp_path / "params.yaml"
    path.write_text(f"train:\n  weight_decay: {spelling}\n  dropout: {spelling}\ntune:\n  search_space:\n"
                    f"    train:\n      lr: {{type: float, low: {spelling}, high: 1E+0}}\n")
    config = load_config(path)
    assert config.train.weight_decay == config.train.dropout == float(spelling)
    assert config.tune.search_space["train.lr"] == {"type": "float", "low": float(spelling), "high": 1.0}


def test_the_nested_search_space_and_the_old_dotted_one_read_the_same(tmp_path):
    """-S splits keys at dots, so the nested shape is what it can address; the dotted shape still reads."""
    nested, dotted = tmp_path / "nested.yaml", tmp_path / "dotted.yaml"
    nested.write_text("tune:\n  search_space:\n    train:\n      lr: {type: float, low: 1e-4, high: 1e-2}\n"
                      "      hidden_dim: {type: categorical, choices: [128, 256]}\n")
    dotted.write_text("tune:\n  search_space:\n    train.lr: {type: float, low: 0.0001, high: 0.01}\n"
                      "    train.hidden_dim: {type: categorical, choices: [128, 256]}\n")
    assert load_config(nested).tune.search_space == load_config(dotted).tune.search_space == {
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2},
        "train.hidden_dim": {"type": "categorical", "choices": [128, 256]}}


def test_what_dvc_exp_run_set_param_writes_loads(tmp_path):
    """`dvc exp run -S` edits params.yaml with DVC's own apply_overrides: it writes 0.00001 as 1e-05, and
    reaches a search-space bound only through the nested shape."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    apply_overrides(str(path), ["train.weight_decay=0.00001", "tune.search_space.train.lr.high=0.05"])
    assert "weight_decay: 1e-05" in path.read_text()
    config = load_config(path)
    assert config.train.weight_decay == 1e-05 and config.tune.search_space["train.lr"]["high"] == 0.05


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"# only a comment\n\n", "is empty"),
    ("data:\n  root: caf\u00e9\n".encode("latin-1"), r"is not UTF-8 text \(byte 17 is 0xe9\)"),
])
def test_an_empty_or_non_utf8_params_file_is_a_sentence(tmp_path, capsys, content, message):
    from src import split

    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_config(path)
    assert split.main(["--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
