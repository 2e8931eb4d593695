"""The ablation stage, its error analysis and the report."""
