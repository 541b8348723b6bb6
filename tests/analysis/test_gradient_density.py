"""ghm_mmdet.analysis and tools/analysis_tools/plot_gradient_density.py: the gradient-norm histograms of
every GHM loss call, the paper's figures of them, and the tool on the demo config."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from ghm_mmdet.analysis import (
    FINE_BINS,
    GradientNormHistogram,
    build_model,
    describe_source,
    plot_gradient_density,
    record_gradient_norms,
)
from ghm_mmdet.models.losses import GHMC, GHMR

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / 'configs' / 'retinanet_ghm_demo.py'
TOOL = REPO / 'tools' / 'analysis_tools' / 'plot_gradient_density.py'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class TinyDetector(nn.Module):
    def __init__(self, loss_cls, loss_bbox):
        super().__init__()
        self.bbox_head = nn.Module()
        self.bbox_head.loss_cls = loss_cls
        self.bbox_head.loss_bbox = loss_bbox


def cls_batch(num, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num, 5, generator=gen) * 3
    labels = torch.randint(0, 6, (num,), generator=gen)
    label_weight = (torch.rand(num, generator=gen) > 0.2).float()
    return logits, labels, label_weight


def test_histograms_gather_every_call_and_bin_as_the_loss_does():
    model = TinyDetector(GHMC(bins=30), GHMR(mu=0.02, bins=10))
    head = model.bbox_head
    per_call_counts = []
    with record_gradient_norms(model) as histograms:
        for seed, num in enumerate((300, 120, 40)):  # three calls of different sizes, as FPN levels
            logits, labels, label_weight = cls_batch(num, seed)
            head.loss_cls(logits, labels, label_weight=label_weight)  # weight as a keyword, too
            per_call_counts.append(head.loss_cls.last_stats['counts'])
        deltas = torch.randn(50, 4) * 0.05
        head.loss_bbox(deltas, torch.zeros_like(deltas), (torch.rand(50, 4) > 0.5).float())
    assert not head.loss_cls._forward_pre_hooks  # removed on exit

    cls = histograms['ghm_c/bbox_head.loss_cls']
    assert (cls.label, cls.path, cls.calls) == ('ghm_c', 'bbox_head.loss_cls', 3)
    # The loss's own histogram of each call (momentum 0), summed: the same binning of the same inputs.
    assert torch.equal(cls.region_counts, sum(per_call_counts).double())
    expected_n = sum(float((cls_batch(n, s)[2] > 0).sum()) * 5 for s, n in enumerate((300, 120, 40)))
    assert cls.num_counted == expected_n == float(cls.fine_counts.sum())
    assert float((cls.harmonizing_weights() * cls.region_counts).sum()) == pytest.approx(expected_n)
    reg = histograms['ghm_r/bbox_head.loss_bbox']
    assert torch.equal(reg.region_counts, head.loss_bbox.last_stats['counts'].double())
    assert 0 < float(reg.region_norm_sums.sum()) < reg.num_counted  # gr < 1


def test_fine_histogram_puts_each_gradient_norm_in_its_hundredth():
    histogram = GradientNormHistogram('ghm_c', 'loss', GHMC(bins=10).edges)
    g = torch.tensor([0.0, 0.004, 0.0101, 0.5, 0.999, 1.0, float('nan'), 0.3])
    valid = torch.tensor([True, True, True, True, True, True, True, False])
    histogram.add(g, valid)
    expected = torch.zeros(FINE_BINS, dtype=torch.float64)
    for index in (0, 0, 1, 50, 99, 99):
        expected[index] += 1
    assert torch.equal(histogram.fine_counts, expected)
    assert histogram.num_counted == 6  # NaN and invalid entries are not counted
    assert histogram.region_counts.tolist() == [3, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert histogram.region_norm_sums[-1] == pytest.approx(1.999)


def synthetic_histograms():
    ghmc = GradientNormHistogram('ghm_c', 'bbox_head.loss_cls', GHMC(bins=30).edges)
    g = torch.cat([torch.rand(5000) * 0.05, torch.rand(200), 0.95 + torch.rand(30) * 0.05])
    ghmc.add(g, torch.ones_like(g, dtype=torch.bool))
    ghmr = GradientNormHistogram('ghm_r', 'bbox_head.loss_bbox', GHMR(bins=10).edges)
    gr = torch.rand(400) ** 0.3
    ghmr.add(gr, torch.ones_like(gr, dtype=torch.bool))
    return {'ghm_c/bbox_head.loss_cls': ghmc, 'ghm_r/bbox_head.loss_bbox': ghmr}


def assert_pngs(paths, count):
    assert len(paths) == count and len(set(paths)) == count
    for path in paths:
        assert Path(path).read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            assert image.width >= 800 and image.height >= 500, (path, image.size)


def test_figures_are_written_as_large_pngs(tmp_path):
    paths = plot_gradient_density(synthetic_histograms(), str(tmp_path / 'figures'),
                                  'demo.py (initialisation)')
    assert sorted(Path(p).name for p in paths) == sorted(
        f'{label}_{name}.png' for label in ('ghm_c', 'ghm_r')
        for name in ('gradient_norm_density', 'gradient_contribution', 'reformulated_gradient_norm'))
    assert_pngs(paths, 6)


def test_titles_name_the_config_and_the_checkpoint():
    assert describe_source('configs/retinanet_ghm_demo.py', None) == 'retinanet_ghm_demo.py (initialisation)'
    assert describe_source('a/b.py', 'work/iter_4.pth') == 'b.py (iter_4.pth)'


def test_checkpoint_weights_are_loaded_weights_only(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(DEMO_CONFIG)
    model = build_model(cfg, device='cpu')
    state_dict = {key: value + 1 if value.is_floating_point() else value
                  for key, value in model.state_dict().items()}
    checkpoint = tmp_path / 'shifted.pth'
    torch.save(dict(state_dict={f'module.{key}': value for key, value in state_dict.items()},
                    meta=dict(note='saved by a DDP run')), checkpoint)
    loaded = build_model(cfg, str(checkpoint), device='cpu')
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state_dict[key]), key
    assert loaded.training

    class Payload:
        def __reduce__(self):
            return (print, ('unpickled',))

    unsafe = tmp_path / 'unsafe.pth'
    torch.save(dict(state_dict={}, meta=Payload()), unsafe)
    from ghm_mmdet.apis import UnsafeCheckpointError
    with pytest.raises(UnsafeCheckpointError, match='builtins.print'):
        build_model(cfg, str(unsafe), device='cpu')


def run_tool(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('GHM_MMDET_TRACEBACK', None)
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_missing_checkpoint_is_a_usage_error_before_any_work(tmp_path):
    run = run_tool(DEMO_CONFIG, '--checkpoint', tmp_path / 'nope.pth', '--out-dir', tmp_path / 'out',
                   cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f'plot_gradient_density.py: error: --checkpoint {tmp_path / "nope.pth"} does not exist (a local '
        'checkpoint file)')
    assert not (tmp_path / 'data').exists()  # stopped before building the demo data set


@pytest.mark.slow
def test_the_tool_plots_the_demo_config_at_initialisation(tmp_path):
    out_dir = tmp_path / 'figures'
    # The demo set is generated under data/ghm_demo of the working directory (a small one here).
    small_set = [f'{loader}.dataset.generator_cfg.{key}={value}'
                 for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
                 for key, value in (('num_train', 8), ('num_val', 2))]
    run = run_tool(DEMO_CONFIG, '--out-dir', out_dir, '--num-batches', 2, '--cfg-options', *small_set,
                   'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                   'train_dataloader.persistent_workers=False', cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    written = [line for line in run.stdout.splitlines() if line.endswith('.png')]
    assert_pngs(written, 6)
    assert {Path(p).parent for p in written} == {out_dir}
