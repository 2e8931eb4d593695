"""No command replaces a folder it did not write (issue 30, item 0)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO
from tests.unit.stages.test_overwrite import VIT_B_32_LINE, unchanged, users_folders


def test_the_readme_vit_b_32_line_leaves_a_users_data_and_model_alone(tmp_path):
    files = users_folders(tmp_path)
    result = subprocess.run([sys.executable, "-m", "src.sample", *VIT_B_32_LINE], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert unchanged(files)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and "not written by" in result.stderr
    assert "--out 'data'" in result.stderr and "--backbone-out 'models/tiny-clip'" in result.stderr
    assert "--force" in result.stderr
