import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from msc.config import with_overrides
from msc.core.errors import UserError
from msc.features.build import featurize
from msc.features.cache import FeatureCache
from tests.helpers import REPO, cache_sections


def test_sigkill_during_featurize_leaves_the_old_cache_or_none(private_config, tmp_path):
    """Killed mid-build: the previous cache stays whole, or there is none; never a half-written one."""
    config = with_overrides(private_config, {"features.augment_views": 6, "features.batch_size": 8})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    folder = Path(config.features.dir)
    staging = folder.with_name(folder.name + ".tmp")

    def kill_mid_build() -> None:
        shutil.rmtree(staging, ignore_errors=True)
        process = subprocess.Popen([sys.executable, "-m", "src.featurize", "--params", str(params), "--force"],
                                   env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and not (staging / "image_pooled.npy").exists():
            time.sleep(0.05)
        assert (staging / "image_pooled.npy").exists(), "the build never started"
        time.sleep(0.5)  # images are being written
        process.send_signal(signal.SIGKILL)
        process.wait()

    old, built = featurize(*cache_sections(config))
    assert built
    old_images = np.array(old.array("image_pooled"))
    kill_mid_build()
    kept = FeatureCache(folder)
    assert kept.fingerprint == old.fingerprint and kept.array("aug_pooled").shape[:2] == (kept.n_labelled, 6)
    shutil.rmtree(folder)
    kill_mid_build()
    with pytest.raises(UserError, match="manifest.json.*python -m src.featurize"):
        FeatureCache(folder)
    cache, built = featurize(*cache_sections(config))
    assert built and not staging.exists()
    assert cache.fingerprint == old.fingerprint and np.array_equal(cache.array("image_pooled"), old_images)
