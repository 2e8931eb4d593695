"""Stage ``report``: ``<paths.results>/report.md`` from the ablation stage's outputs (msc/analysis/report.py)
and the tune stage's metrics.json and label_issues.csv (the registered model's probabilities, label sets
and label issues: msc/analysis/report_calibration.py), added to the ablation's MLflow parent run."""

from __future__ import annotations

import argparse
from pathlib import Path

from msc.core.errors import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write report.md from the ablation and tune stages' outputs.")
    parser.add_argument("--params", default="params.yaml", help="the configuration file (default: %(default)s)")
    parser.add_argument("--results", type=Path, help="the ablation's and tune's output folder, where report.md and "
                        "figures/ go (default: paths.results)")
    args = parser.parse_args(argv)
    # The library (torch, matplotlib, mlflow) is imported after the arguments: --help answers at once.
    from mlflow import MlflowClient

    from msc.analysis.report import read_ablation, write_report
    from msc.analysis.report_calibration import calibration_section
    from msc.config import load_config
    from msc.core.errors import log_crashes_in
    from msc.core.files import check_output_folder
    from msc.core.handoff import read_handoff
    from msc.track.store import setup_mlflow
    from msc.track.summary import TuneSummary

    config = load_config(args.params)
    log_crashes_in(config.paths.logs)
    folder = args.results or Path(config.paths.results)
    check_output_folder(folder / "figures", "--results")
    results, context, analysed, cases, difference = read_ablation(folder)
    holdout = read_handoff(TuneSummary, folder / "metrics.json").registration.holdout
    registered = calibration_section(holdout, tuple(context.labels), folder / "label_issues.csv", config.data.source,
                                     config.data.text_encoding, folder / "figures")
    report = folder / "report.md"
    figures = write_report(report, folder / "figures", context, results.rows, analysed, cases, difference,
                           results.attribution, registered)
    setup_mlflow()
    client = MlflowClient()
    client.log_artifact(results.mlflow_run_id, str(report))
    client.log_artifacts(results.mlflow_run_id, str(figures), artifact_path="figures")
    print(f"wrote {report} and {figures}/, and added them to MLflow run {results.mlflow_run_id} (ablation)")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
