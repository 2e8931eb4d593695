"""msc: multimodal sentiment classification of image-text posts, tracked end to end.

The library behind the stage commands in ``src/``. Its subpackages are layers; each imports only
the ones below it (checked by import-linter, ``lint-imports``, and by the default test run); the
pairs analysis/tune and track/train are independent siblings, neither importing the other:

    analysis   ablation, error kinds, report rendering
    tune       the Optuna study, its objective, progress, and registration in steps
    track      MLflow store, logged model, registry decisions and records, locks, loading models
    train      the training loop, evaluation, holdout scores, calibration, metrics
    features   the feature cache: schema, build, read; splits as cache rows
    config     the one typed config (params.yaml)
    model      backbone families, fusion heads, head spec, the pyfunc and its input rules
    data       label files, texts, images, splits, the synthetic sample (no torch)
    core       labels, errors, atomic files, paths, versioned hand-off files

A logged model ships ``msc.model`` and the layers below it, nothing else.
"""
