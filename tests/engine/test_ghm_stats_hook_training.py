"""GHMStatsHook end to end: a short tools/train.py run of the demo config with TensorBoard, and the
synchronised statistics of two ranks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gloo_ranks import gloo_group, run_ranks

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'tools'))
from tool_runs import DEMO_CONFIG, FAST_OPTIONS, TOOLS, last_lines, run_log, tool_env  # noqa: E402

pytestmark = pytest.mark.compat

CLS = 'ghm_c/bbox_head.loss_cls'
REG = 'ghm_r/bbox_head.loss_bbox'
SCALARS = ('num_valid', 'non_empty_regions', 'largest_region_share', 'max_beta', 'loss')
HOOK_CONFIG = f"""_base_ = {str(DEMO_CONFIG)!r}
custom_hooks = [dict(type='GHMStatsHook', interval=2)]
visualizer = dict(type='DetLocalVisualizer', name='visualizer',
                  vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
"""


@pytest.mark.slow
def test_training_with_the_hook_writes_tensorboard_scalars_histograms_and_log_lines(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tmp_path / 'retinanet_ghm_demo_stats.py'
    config.write_text(HOOK_CONFIG)
    work_dir = tmp_path / 'work'
    command = [sys.executable, str(TOOLS / 'train.py'), str(config), '--work-dir', str(work_dir),
               '--cfg-options', *FAST_OPTIONS, 'train_cfg.max_iters=4', 'default_hooks.checkpoint.interval=4']
    # The demo set is generated under data/ghm_demo of the working directory.
    run = subprocess.run(command, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, last_lines(run.stdout + run.stderr)

    [event_file] = work_dir.glob('*/vis_data/events.out.tfevents.*')
    events = EventAccumulator(str(event_file), size_guidance={'histograms': 0, 'scalars': 0})
    events.Reload()
    histogram_tags = set(events.Tags()['histograms'])
    scalar_tags = set(events.Tags()['scalars'])
    for tag in (CLS, REG):
        assert {f'{tag}/counts', f'{tag}/density', f'{tag}/beta'} <= histogram_tags
        assert {f'{tag}/{name}' for name in SCALARS} <= scalar_tags
    assert {f'{CLS}/easy_loss_share', f'{CLS}/outlier_loss_share'} <= scalar_tags

    recorded_n = {}
    for tag in (CLS, REG):
        counts = {event.step: event.histogram_value for event in events.Histograms(f'{tag}/counts')}
        assert sorted(counts) == [2, 4]  # every interval=2 iterations
        logged_n = {event.step: event.value for event in events.Scalars(f'{tag}/num_valid')}
        for step, histogram in counts.items():
            assert histogram.num == sum(histogram.bucket) > 0
            # The scalar the LoggerHook logged at that step is the recorded N of the histogram.
            assert logged_n[step] == histogram.num
        recorded_n[tag] = counts[4].num
        beta = {event.step: event.histogram_value for event in events.Histograms(f'{tag}/beta')}
        assert max(beta[4].bucket) > 0
        assert all(b == 0 for b, c in zip(beta[4].bucket, counts[4].bucket) if c == 0)

    log = run_log(work_dir)
    for tag in (CLS, REG):
        for name in SCALARS:
            assert f'{tag}/{name}: ' in log, f'{tag}/{name} is missing from the text log'
    assert f'{CLS}/easy_loss_share: ' in log
    records = [json.loads(line) for path in work_dir.glob('*/vis_data/scalars.json')
               for line in path.read_text().splitlines()]
    [at_step_4] = [record for record in records if record.get('step') == 4 and 'loss' in record]
    for tag in (CLS, REG):
        assert at_step_4[f'{tag}/num_valid'] == recorded_n[tag]


def _batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(400, 6, generator=gen) * 3
    labels = torch.randint(0, 7, (400,), generator=gen)
    weight = (torch.rand(400, generator=gen) > 0.1).float()
    return logits, labels, weight


def _rank_snapshot(rank, out_dir):
    from ghm_mmdet.engine import read_snapshot
    from ghm_mmdet.models.losses import GHMC

    with gloo_group(rank, 2, out_dir):
        logits, labels, weight = _batch()
        half = slice(rank * 200, (rank + 1) * 200)
        loss = GHMC(bins=30, sync_stats=True)
        loss(logits[half], labels[half], weight[half])
        snapshot = read_snapshot(loss)
        (Path(out_dir) / f'rank{rank}.json').write_text(json.dumps(
            dict(counts=snapshot.counts, num_valid=snapshot.num_valid, beta=snapshot.beta)))


@pytest.mark.slow
def test_with_sync_stats_every_rank_reports_the_whole_batch(tmp_path):
    from ghm_mmdet.engine import read_snapshot
    from ghm_mmdet.models.losses import GHMC

    run_ranks(_rank_snapshot, args=(str(tmp_path),))
    ranks = [json.loads((tmp_path / f'rank{rank}.json').read_text()) for rank in range(2)]
    single = GHMC(bins=30)
    single(*_batch())
    whole = read_snapshot(single)
    for rank in ranks:
        assert rank['num_valid'] == whole.num_valid == sum(rank['counts'])
        assert tuple(rank['counts']) == whole.counts
        assert rank['beta'] == pytest.approx(whole.beta)
