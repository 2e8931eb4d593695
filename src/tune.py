"""Stage ``tune``: an Optuna study over the feature cache, every trial an MLflow child run, then the
registry gate (msc/tune/runner.py)."""

from __future__ import annotations

import argparse
import json
import logging
import shlex

from msc.core.errors import cli

SCORES = "scores.json"  # in paths.results: the numbers `dvc metrics show` and `dvc exp show` compare
HOLDOUT_SCORES = ("weighted_f1", "accuracy", "macro_f1", "ece", "temperature")


def scores(summary) -> dict:
    """The scores a user compares across experiments, numbers only, under short keys no key of
    metrics.json has (DVC then names a column without its file): the Production version's holdout
    scores and the study's best ``objective`` (validation; the MLflow runs' metric). metrics.json holds
    them too, beside intervals, hashes and the registry's sentence, which make DVC's tables unreadable."""
    holdout = summary.registration.holdout
    return {**{key: round(holdout[key], 4) for key in HOLDOUT_SCORES}, "objective": round(summary.best_value, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tune fusion heads with Optuna; log to MLflow; register the best.")
    parser.add_argument("--params", default="params.yaml", help="the configuration file (default: %(default)s)")
    parser.add_argument("--trials", type=int, help="finished trials the study ends with (default: tune.trials)")
    parser.add_argument("--storage", help="Optuna RDB URL (default: tune.storage), e.g. postgresql://host/db")
    parser.add_argument("--study-name", help="a shared study's name, kept as given (default: tune.study_name, "
                        "else msc-<identity of this config>)")
    parser.add_argument("--n-jobs", type=int, help="parallel trials in this process (default: tune.n_jobs)")
    parser.add_argument("--force", action="store_true", help="register the best model without comparing it with "
                        "Production, also when its version was rolled back from (README, 'Using the model')")
    args = parser.parse_args(argv)
    # The library (torch, optuna, mlflow) is imported after the arguments: --help answers at once.
    import optuna

    from msc.config import load_config, with_overrides
    from msc.core.errors import interrupt_on_sigterm, log_crashes_in
    from msc.core.files import atomic_write_text, check_output_folder
    from msc.track.store import setup_mlflow, tracking_uri
    from msc.track.views import share_trials_view
    from msc.tune.progress import QuietInterrupt
    from msc.tune.runner import tune
    from msc.tune.runs import parent_run_lock
    from msc.tune.summary import holdout_line, write_results

    config = load_config(args.params)
    log_crashes_in(config.paths.logs)
    check_output_folder(config.paths.results, "paths.results")  # before the study, not after it
    for key, value in (("trials", args.trials), ("storage", args.storage), ("study_name", args.study_name),
                       ("n_jobs", args.n_jobs)):
        if value is not None:  # one flag at a time: a broken rule names the flag typed, not the config key alone
            config = with_overrides(config, {f"tune.{key}": value}, source=f"--{key.replace('_', '-')} {shlex.quote(str(value))}")
    interrupt_on_sigterm()  # SIGTERM ends the study as Ctrl-C does: trial failed, parent run KILLED
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(QuietInterrupt())
    outcome = tune(config, force=args.force)
    summary, metrics = outcome.summary, write_results(config.paths.results, outcome)
    registration = summary.registration
    atomic_write_text(metrics.with_name(SCORES), json.dumps(scores(summary), indent=2) + "\n")
    print(f"study {summary.study_name}: best trial {summary.best_trial} ({summary.select_metric} "
          f"{summary.best_value:.4f}). {registration.gate[0].upper()}{registration.gate[1:]}. Production "
          f"{'is now' if registration.promoted_now else 'stays'} msc version {registration.version}: "
          f"{holdout_line(registration.holdout)} on {registration.holdout_samples} holdout samples; wrote "
          f"{metrics}")
    uri = tracking_uri()
    with parent_run_lock(config.tune.storage, summary.study_name):  # a note on the parent run, as each tuner writes
        link = share_trials_view(setup_mlflow(), list(config.tune.search_space), summary.study_name)
    print(f"compare the trials in the MLflow UI: {link}"
          + ("" if uri.startswith(("http://", "https://")) else f" (after `mlflow ui --backend-store-uri {uri}`)"))
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
