"""benchmarks/rtmdet_scale.py: the normaliser RTMDetHead divides GHM-C's loss by, and GHM-C's own N."""
from mmengine.config import Config

from benchmarks import rtmdet_scale
from benchmarks.compare_losses import use_small_data_set
from benchmarks.evidence import CONFIGS


def test_measures_s_and_n_on_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the small set is generated under data/
    cfg = Config.fromfile(str(CONFIGS / 'rtmdet-tiny_ghm_demo.py'))
    use_small_data_set(cfg)
    measured = rtmdet_scale.measure(cfg, batches=2)
    # Every point is valid in RTMDetHead: 160 px images give 20² + 10² + 5² = 525 points at strides 8, 16, 32,
    # so a batch of 8 has 525 x 8 x 8 classes = 33,600 entries.
    assert measured['N'] == [33600, 33600]
    # S sums the assignment metrics (IoU^6 x score) of the positives: above 0 and below their number.
    assert all(0 < s < 525 * 8 for s in measured['S'])
