"""msc: multimodal sentiment classification of image-text posts, tracked end to end.

The library behind the stage commands in ``src/``. Its subpackages are layers; each imports only
the ones below it (checked by import-linter, ``lint-imports``, and by the default test run); the
pairs analysis/tune and track/train are independent siblings, neither importing the other:

    analysis   ablation, error kinds, report rendering
    tune       the Optuna study, its objective, progress, and registration in steps
    config     params.yaml: composes the layers' sections, loads, overrides, flattens; the stage sections
    track      MLflow store, logged model, registry decisions and records, locks, loading models
    train      the training loop, evaluation, holdout scores, calibration, metrics; its settings (train.config)
    features   the feature cache: schema, build, read; splits as cache rows; its settings (features.config)
    model      backbone families, fusion heads, head spec, the pyfunc and its input rules; its settings
    data       label files, texts, images, splits, the synthetic sample (no torch); its settings
    core       labels, errors, atomic files, paths, versioned hand-off files, the typed settings loader

Each layer declares its own section of params.yaml in ``<layer>/config.py`` and takes that section,
never the whole ``msc.config.Config``. The stage commands in ``src/`` are the layer above all of these.

A logged model ships ``msc.model`` and the layers below it, nothing else.
"""
