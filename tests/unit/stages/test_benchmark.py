"""The benchmark's sections run (their speed is measured by hand, never asserted)."""

from argparse import Namespace

from benchmarks.predict import bench_predict


def test_the_predict_section_runs_on_the_sample(sample_root, tiny_clip, tmp_path):
    out = bench_predict(Namespace(data_root=sample_root, backbone=str(tiny_clip)), tmp_path)
    assert out["samples"] > 0 and out["predict_per_s"] > 0 and out["forward_per_s"] > 0
