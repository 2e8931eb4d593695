"""The Optuna study: its identity, objective, progress output and summary."""
