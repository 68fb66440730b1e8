"""Progress bars switch themselves off when stderr is not a terminal (a redirected log stays readable)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_no_bars_in_a_redirected_stderr(tmp_path):
    code = ("from lossensemble.data import build_dataset; "
            "build_dataset('glyphs', 'train', image_size=16, num_train_classes=4, num_test_classes=4, "
            "images_per_class=16, progress=True)")
    env = {**os.environ, "LOSSENSEMBLE_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "rendering" not in done.stderr and "%|" not in done.stderr, done.stderr[-500:]
    assert any(tmp_path.rglob("*")), "the glyphs were rendered (into the cache)"
