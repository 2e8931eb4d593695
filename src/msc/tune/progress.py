"""What a study shows while it runs: a live table on a terminal, else one line per ended trial."""

from __future__ import annotations

import logging

import optuna
from rich.console import Console
from rich.live import Live
from rich.table import Table

from msc.config import TuneConfig
from msc.core.progress import ProgressLines
from msc.tune.objective import Objective
from msc.tune.study import FINISHED, finished_trials, run_study


class QuietInterrupt(logging.Filter):
    """Drops Optuna's traceback of an interrupted trial (Ctrl-C, SIGTERM): tune says so in one sentence."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        return not (isinstance(error, KeyboardInterrupt) or "KeyboardInterrupt" in message
                    or (message.startswith("Trial ") and message.endswith(" failed with value None.")))


def trials_table(study: optuna.Study, limit: int = 12) -> Table:
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in FINISHED for t in trials)
    table = Table(title=f"study {study.study_name}: {finished} finished of {len(trials)} trials")
    for column in ("#", "state", "fusion", "lr", "dropout", "value"):
        table.add_column(column, justify="right" if column in ("#", "lr", "dropout", "value") else "left")
    for t in trials[-limit:]:
        table.add_row(str(t.number), t.state.name, str(t.params.get("train.fusion", "")),
                      f"{t.params['train.lr']:.2e}" if "train.lr" in t.params else "",
                      f"{t.params['train.dropout']:.2f}" if "train.dropout" in t.params else "",
                      "" if t.value is None else f"{t.value:.4f}")
    return table


def trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """One line per ended trial, for logs where no terminal shows the live table (DVC, CI, nohup)."""
    value = "" if trial.value is None else f" {trial.value:.4f}"
    params = ", ".join(f"{k.removeprefix('train.')}={v:.3g}" if isinstance(v, float) else f"{k.removeprefix('train.')}={v}"
                       for k, v in trial.params.items())
    return (f"trial {trial.number} {trial.state.name.lower()}{value} ({params}); "
            f"{finished_trials(study)} finished in study {study.study_name}")


def run_study_with_progress(study: optuna.Study, objective: Objective, settings: TuneConfig, console: Console) -> None:
    """``run_study`` with a live table on a terminal, else one printed line per ended trial."""
    if console.is_terminal:
        with Live(trials_table(study), console=console, refresh_per_second=2) as live:
            run_study(study, objective, settings.trials, settings.n_jobs, settings.storage,
                      lambda s, _t: live.update(trials_table(s)))
    else:  # a line per ended trial, and done/total with an estimate at least every progress interval
        with ProgressLines() as lines:
            task = lines.add_task(f"study {study.study_name}: finished trials", total=settings.trials,
                                  completed=min(finished_trials(study), settings.trials))

            def report(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
                print(trial_line(s, t), flush=True)
                if t.state in FINISHED:
                    lines.advance(task, 1)

            run_study(study, objective, settings.trials, settings.n_jobs, settings.storage, report)
