"""MLflow: the tracking store, the logged model, registry decisions, locks and loading models."""
