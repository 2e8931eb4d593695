"""Training a head on the cache, evaluating it, calibrating it, and the scores every report uses."""
