"""benchmarks/compare_losses.py: the settings it trains, how it reads mmengine's logs and summarises them, and
(slow) its quick mode end to end; plus the whole-batch configs it compares."""
import json
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from benchmarks import compare_losses

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'benchmarks' / 'compare_losses.py'
CONFIGS = REPO / 'configs'


SETTINGS = compare_losses.SETTINGS


def _scopeless(cfg_dict):
    return {key: value for key, value in cfg_dict.items() if key != '_scope_'}


@pytest.fixture(scope='module')
def demo_cfg():
    return Config.fromfile(str(CONFIGS / 'retinanet_ghm_demo.py'))


@pytest.fixture(scope='module')
def setting_cfgs():
    return {name: compare_losses.build_config(setting, seed=7) for name, setting in SETTINGS.items()}


# ------------------------------------------------------------------------------------------------ settings


def test_settings_are_the_six_table_rows():
    assert list(SETTINGS) == ['bce_l1', 'focal_l1', 'ghmc_l1', 'ghmc_ghmr', 'mmdet_ghmc_ghmr',
                              'wholebatch_ghmc_ghmr']


@pytest.mark.parametrize('name, loss_cls, loss_bbox', [
    ('bce_l1', dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
     dict(type='L1Loss', loss_weight=1.0)),
    ('focal_l1', dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
     dict(type='L1Loss', loss_weight=1.0)),
    ('ghmc_l1', dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
     dict(type='L1Loss', loss_weight=1.0)),
    ('ghmc_ghmr', dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
     dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)),
    ('mmdet_ghmc_ghmr', dict(type='MMDetGHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
     dict(type='MMDetGHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)),
    # Weights times the demo's 3 FPN levels (configs/retinanet_ghm-wholebatch_demo.py).
    ('wholebatch_ghmc_ghmr', dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=3.0),
     dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=30.0)),
])
def test_each_setting_replaces_the_losses_whole(setting_cfgs, name, loss_cls, loss_bbox):
    head = setting_cfgs[name].model.bbox_head
    # Exact equality: no key of the demo's GHM losses (bins, momentum, mu) leaks into a replacement.
    assert _scopeless(head.loss_cls) == loss_cls
    assert _scopeless(head.loss_bbox) == loss_bbox
    assert head.type == ('GHMRetinaHead' if name == 'wholebatch_ghmc_ghmr' else 'RetinaHead')


def test_settings_differ_from_the_demo_only_in_losses_head_type_and_seed(setting_cfgs, demo_cfg):
    def comparable(cfg):
        cfg_dict = cfg.to_dict()
        head = cfg_dict['model']['bbox_head']
        for key in ('loss_cls', 'loss_bbox', 'type'):
            head.pop(key)
        cfg_dict['randomness'].pop('seed')
        cfg_dict.pop('num_fpn_levels', None)  # the whole-batch config's helper variable
        return cfg_dict

    expected = comparable(demo_cfg)
    for name, cfg in setting_cfgs.items():
        assert cfg.randomness.seed == 7, name
        assert comparable(cfg) == expected, name
        # What the comparison must hold fixed, spelled out.
        assert cfg.optim_wrapper == demo_cfg.optim_wrapper, name
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=35, norm_type=2), name
        assert cfg.param_scheduler == demo_cfg.param_scheduler, name
        assert cfg.train_cfg == demo_cfg.train_cfg, name


def test_every_setting_builds_the_losses_it_names(setting_cfgs):
    from mmdet.models.losses import ghm_loss as mmdet_ghm
    from mmdet.registry import MODELS

    import ghm_mmdet  # noqa: F401  (registers GHMC/GHMR, MMDetGHMC/MMDetGHMR, GHMRetinaHead)
    from ghm_mmdet.models import GHMRetinaHead
    from ghm_mmdet.models.losses import GHMC, GHMR
    heads = {name: MODELS.build(cfg.model).bbox_head for name, cfg in setting_cfgs.items()}
    assert type(heads['ghmc_ghmr'].loss_cls) is GHMC and type(heads['ghmc_ghmr'].loss_bbox) is GHMR
    assert type(heads['mmdet_ghmc_ghmr'].loss_cls) is mmdet_ghm.GHMC
    assert type(heads['mmdet_ghmc_ghmr'].loss_bbox) is mmdet_ghm.GHMR
    assert type(heads['wholebatch_ghmc_ghmr']) is GHMRetinaHead
    assert type(heads['focal_l1'].loss_cls).__name__ == 'FocalLoss'
    assert type(heads['bce_l1'].loss_cls).__name__ == 'CrossEntropyLoss'


def test_a_shorter_schedule_keeps_its_shape(demo_cfg):
    cfg = compare_losses.build_config(SETTINGS['focal_l1'], seed=0, iters=300)
    assert demo_cfg.train_cfg.max_iters == 1500
    assert cfg.train_cfg.max_iters == cfg.train_cfg.val_interval == cfg.max_iters == 300
    assert cfg.default_hooks.checkpoint.interval == 300
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.begin, warmup.end) == ('LinearLR', 0, 20)  # demo: 100 of 1500
    assert (cosine.type, cosine.begin, cosine.end) == ('CosineAnnealingLR', 20, 300)
    assert cfg.default_hooks.logger.interval == demo_cfg.default_hooks.logger.interval


def test_a_very_short_schedule_still_logs_and_warms_up():
    cfg = compare_losses.build_config(SETTINGS['focal_l1'], seed=0, iters=10)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 2)  # 100 / 1500 of 10 rounds to 1: too short to warm up
    assert (cosine.begin, cosine.end) == (2, 10)
    assert cfg.default_hooks.logger.interval == cfg.log_processor.window_size == 2


def _learning_rates(cfg):
    """The lr of each iteration under ``cfg``'s schedulers, stepped as mmengine's ParamSchedulerHook does."""
    import torch
    from mmengine.registry import PARAM_SCHEDULERS
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = [PARAM_SCHEDULERS.build(dict(scheduler, optimizer=optimizer))
                  for scheduler in cfg.param_scheduler]
    rates = []
    for _ in range(cfg.train_cfg.max_iters):
        rates.append(optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    return rates


def test_a_rescaled_schedule_follows_the_demos_learning_rate(demo_cfg):
    demo = _learning_rates(demo_cfg)
    rates = _learning_rates(compare_losses.build_config(SETTINGS['focal_l1'], seed=0, iters=300))
    base_lr = demo_cfg.optim_wrapper.optimizer.lr
    assert rates[0] == demo[0] == pytest.approx(0.01 * base_lr)
    assert max(rates) == pytest.approx(max(demo)) == pytest.approx(base_lr)
    for fraction in (0.02, 0.1, 0.5, 0.75, 0.95):
        assert rates[int(fraction * 300)] == pytest.approx(demo[int(fraction * 1500)], rel=0.05), fraction


def test_a_very_short_schedule_warms_up_to_the_full_lr_then_decays(demo_cfg):
    rates = _learning_rates(compare_losses.build_config(SETTINGS['focal_l1'], seed=0, iters=10))
    base_lr = demo_cfg.optim_wrapper.optimizer.lr
    # A 1-iteration warm-up (100 / 1500 of 10, rounded) would leave the lr at 1% of base for the whole run.
    assert rates[1] == pytest.approx(base_lr)
    assert all(later < earlier for earlier, later in zip(rates[2:], rates[3:]))
    assert rates[-1] < 0.1 * base_lr


def test_the_written_config_file_reads_back_as_the_same_config(setting_cfgs, tmp_path):
    # Each run trains the file main() writes from Config.pretty_text, not the Config object.
    for name, cfg in setting_cfgs.items():
        path = tmp_path / f'{name}.py'
        path.write_text(cfg.pretty_text)
        assert Config.fromfile(str(path)).to_dict() == cfg.to_dict(), name


def test_the_quick_data_set_is_small_and_used_by_every_split_and_evaluator(demo_cfg):
    cfg = compare_losses.build_config(SETTINGS['ghmc_ghmr'], seed=0, small_data=True)
    root = compare_losses.SMALL_DATA_ROOT
    assert root != demo_cfg.data_root  # a set generated with other sizes is refused at the demo's root
    generator_cfg = dict(demo_cfg.generator_cfg, num_train=64, num_val=32)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.data_root == root and loader.dataset.generator_cfg == generator_cfg
    assert cfg.val_evaluator.ann_file == cfg.test_evaluator.ann_file == root + 'annotations/val.json'
    assert cfg.val_dataloader.dataset.ann_file == 'annotations/val.json'
    assert cfg.train_dataloader.dataset.ann_file == 'annotations/train.json'


def test_iters_below_one_is_refused():
    cfg = compare_losses.build_config(SETTINGS['focal_l1'], seed=0)
    with pytest.raises(ValueError, match='iters must be >= 1, got 0'):
        compare_losses.set_schedule_length(cfg, 0)


def test_command_line_defaults_and_quick_mode():
    full = compare_losses.parse_args([])
    assert full.settings == list(SETTINGS) and full.seeds == [0, 1, 2] and full.iters is None
    assert full.out_dir == Path('work_dirs/compare_losses')
    quick = compare_losses.parse_args(['--quick'])
    assert (quick.settings, quick.seeds, quick.iters) == (['focal_l1', 'ghmc_ghmr'], [0], 10)
    assert quick.out_dir == Path('work_dirs/compare_losses_quick')
    # Named settings come back in table order.
    named = compare_losses.parse_args(['--settings', 'ghmc_ghmr', 'bce_l1'])
    assert named.settings == ['bce_l1', 'ghmc_ghmr']


# ----------------------------------------------------------------------------------- whole-batch configs


def test_wholebatch_demo_config_scales_the_weights_by_its_fpn_levels(demo_cfg):
    cfg = Config.fromfile(str(CONFIGS / 'retinanet_ghm-wholebatch_demo.py'))
    head, demo_head = cfg.model.bbox_head, demo_cfg.model.bbox_head
    assert len(head.anchor_generator.strides) == cfg.num_fpn_levels == 3
    assert head.type == 'GHMRetinaHead'
    assert head.loss_cls.loss_weight == 3.0 * demo_head.loss_cls.loss_weight
    assert head.loss_bbox.loss_weight == 3.0 * demo_head.loss_bbox.loss_weight


def test_wholebatch_coco_config_scales_the_weights_by_its_fpn_levels():
    cfg = Config.fromfile(str(CONFIGS / 'retinanet_ghm-wholebatch_r50_fpn_1x_coco.py'))
    recipe = Config.fromfile(str(CONFIGS / 'retinanet_ghm_r50_fpn_1x_coco.py'))
    head = cfg.model.bbox_head
    assert cfg.num_fpn_levels == 5 == len(head.anchor_generator.strides)
    assert head.type == 'GHMRetinaHead'
    assert _scopeless(head.loss_cls) == dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True,
                                             loss_weight=5.0)
    assert _scopeless(head.loss_bbox) == dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=50.0)
    # Nothing else differs from the per-level recipe.
    cfg_dict, recipe_dict = cfg.to_dict(), recipe.to_dict()
    cfg_dict.pop('num_fpn_levels')
    for cfg_head in (cfg_dict['model']['bbox_head'], recipe_dict['model']['bbox_head']):
        for key in ('type', 'loss_cls', 'loss_bbox'):
            cfg_head.pop(key)
    assert cfg_dict == recipe_dict


# ----------------------------------------------------------------------------------- reading the logs

# What mmengine's LocalVisBackend writes: a record per logged training iteration, then validation's (with a
# `time` of its own, per validation batch, that is not a training iteration's, and the epoch, 0, as its
# step), and here a last line cut short by a killed run.
SCALARS_JSON = '\n'.join([
    '{"lr": 0.0001, "data_time": 0.01, "loss": 4.0, "loss_cls": 3.0, "loss_bbox": 1.0, "time": 0.9, '
    '"iter": 5, "step": 5}',
    '{"lr": 0.0002, "data_time": 0.01, "loss": 3.0, "loss_cls": 2.2, "loss_bbox": 0.8, "time": 0.2, '
    '"iter": 10, "step": 10}',
    '{"lr": 0.0003, "data_time": 0.01, "loss": 2.5, "loss_cls": 2.0, "loss_bbox": 0.5, "time": 0.3, '
    '"iter": 15, "step": 15}',
    '{"coco/bbox_mAP": 0.25, "coco/bbox_mAP_50": 0.5, "coco/bbox_mAP_75": 0.2, "coco/bbox_mAP_s": 0.125, '
    '"coco/bbox_mAP_m": 0.3, "coco/bbox_mAP_l": -1.0, "data_time": 0.002, "time": 5.0, "step": 0}',
    '{"lr": 0.0004, "data_ti',
])


def test_parse_scalars_separates_training_records_from_validation():
    scalars = compare_losses.parse_scalars(SCALARS_JSON)
    assert scalars.steps == [5, 10, 15]
    assert scalars.loss == [4.0, 3.0, 2.5]
    assert scalars.seconds_per_iter == [0.9, 0.2, 0.3]
    assert scalars.median_seconds_per_iter == 0.3  # validation's 5.0 s is not a training iteration
    assert scalars.validated and scalars.finished(15) and not scalars.finished(20)
    assert scalars.metrics['coco/bbox_mAP'] == 0.25 and scalars.metrics['coco/bbox_mAP_s'] == 0.125
    assert 'data_time' not in scalars.metrics
    assert scalars.box_metrics() == {'coco/bbox_mAP': 0.25, 'coco/bbox_mAP_50': 0.5, 'coco/bbox_mAP_s': 0.125}


def test_a_validation_without_any_detection_counts_as_zero_map():
    # mmdet's CocoMetric logs "The testing results of the whole dataset is empty." and returns no metric.
    lines = SCALARS_JSON.splitlines()[:3] + ['{"data_time": 0.05, "time": 0.47, "step": 0}']
    scalars = compare_losses.parse_scalars('\n'.join(lines))
    assert scalars.finished(15) and scalars.no_detections
    assert scalars.box_metrics() == {metric: 0.0 for metric in compare_losses.METRICS}
    unvalidated = compare_losses.parse_scalars('\n'.join(lines[:3]))
    assert not unvalidated.finished(15) and not unvalidated.no_detections


def test_parse_scalars_rejects_a_bad_line_that_is_not_the_last():
    lines = SCALARS_JSON.splitlines()
    with pytest.raises(json.JSONDecodeError):
        compare_losses.parse_scalars('\n'.join([lines[0], lines[-1], lines[1]]))


def _write_run(work_dir, config_file, timestamp, text, config_text='config'):
    vis = work_dir / timestamp / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(text)
    config_file.write_text(config_text)
    # mmengine's Runner copies the config it trains into the work dir, with launcher and work_dir added.
    (work_dir / config_file.name).write_text(config_text + "\nlauncher = 'none'")


def test_a_finished_run_is_reused_only_with_the_same_config_and_length(tmp_path):
    work_dir, config_file = compare_losses.run_paths(tmp_path, 'ghmc_ghmr', 3)
    assert work_dir == tmp_path / 'runs' / 'ghmc_ghmr' / 'seed3'
    assert config_file == tmp_path / 'runs' / 'ghmc_ghmr' / 'seed3.py'  # not where mmengine writes its copy
    complete = '\n'.join(SCALARS_JSON.splitlines()[:-1])
    _write_run(work_dir, config_file, '20261123_100000', complete)
    assert compare_losses.finished_run(work_dir, config_file, 'config', 15).metrics['coco/bbox_mAP'] == 0.25
    assert compare_losses.finished_run(work_dir, config_file, 'another config', 15) is None
    assert compare_losses.finished_run(work_dir, config_file, 'config', 20) is None
    # A newer run of the same work dir that was interrupted before validating: train again.
    _write_run(work_dir, config_file, '20261123_110000', '\n'.join(SCALARS_JSON.splitlines()[:2]))
    assert compare_losses.finished_run(work_dir, config_file, 'config', 15) is None


# ----------------------------------------------------------------------------------------- statistics


def test_mean_sd_uses_the_sample_standard_deviation():
    mean, sd = compare_losses.mean_sd([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and sd == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(compare_losses.mean_sd([0.4])[1])
    with pytest.raises(ValueError):
        compare_losses.mean_sd([])


def test_format_mean_sd():
    assert compare_losses.format_mean_sd([0.1, 0.2, 0.3]) == '0.200 ± 0.100'
    assert compare_losses.format_mean_sd([0.4125]) == '0.412'  # one run: no spread to report
    assert compare_losses.format_mean_sd([1.0, 3.0], digits=1) == '2.0 ± 1.4'


def _record(setting, seed, mAP, seconds, steps=(5, 10), loss=(2.0, 1.0)):
    metrics = {'coco/bbox_mAP': mAP, 'coco/bbox_mAP_50': 2 * mAP, 'coco/bbox_mAP_s': mAP / 2}
    return dict(setting=setting, seed=seed, iters=10, metrics=metrics, median_seconds_per_iter=seconds,
                wall_seconds=12.0, steps=list(steps), loss=list(loss), no_detections=False)


RECORDS = [
    _record('focal_l1', 0, 0.30, 0.20), _record('focal_l1', 1, 0.40, 0.22),
    _record('focal_l1', 2, 0.35, 0.30), _record('ghmc_ghmr', 0, 0.40, 0.25),
    _record('ghmc_ghmr', 1, 0.42, 0.26), _record('ghmc_ghmr', 2, 0.44, 0.60),
]


def test_summary_rows_and_time_relative_to_focal():
    rows = compare_losses.summarise(RECORDS, ['bce_l1', 'focal_l1', 'ghmc_ghmr'])
    assert [row.name for row in rows] == ['focal_l1', 'ghmc_ghmr']  # bce_l1 was not run
    focal, ghm = rows
    assert focal.runs == ghm.runs == 3
    assert focal.median_seconds_per_iter == 0.22 and ghm.median_seconds_per_iter == 0.26
    assert focal.time_ratio == 1.0 and ghm.time_ratio == pytest.approx(0.26 / 0.22)
    assert ghm.metrics['coco/bbox_mAP'] == [0.40, 0.42, 0.44]
    table = compare_losses.markdown_table(rows).splitlines()
    assert table[0] == '| setting | runs | bbox mAP | mAP@50 | mAP_s | s / iter | time / focal |'
    assert table[3] == '| `ghmc_ghmr` | 3 | 0.420 ± 0.020 | 0.840 ± 0.040 | 0.210 ± 0.010 | 0.260 | 1.18 |'


def test_without_focal_there_is_no_time_ratio():
    rows = compare_losses.summarise([r for r in RECORDS if r['setting'] != 'focal_l1'], ['ghmc_ghmr'])
    assert rows[0].time_ratio is None
    assert compare_losses.markdown_table(rows).splitlines()[2].endswith('| 0.260 |  |')


def test_loss_curve_averages_the_steps_every_run_logged():
    runs = [dict(steps=[5, 10, 15], loss=[3.0, 2.0, 1.0]), dict(steps=[5, 10], loss=[5.0, 4.0])]
    steps, means, lows, highs = compare_losses.loss_curve(runs)
    assert steps == [5, 10] and means == [4.0, 3.0]
    assert lows == [3.0, 2.0] and highs == [5.0, 4.0]


def student_t4_two_sided_p(t):
    """Two-sided p of Student's t with 4 degrees of freedom, in closed form:
    F(t) = 1/2 + 3/8 * t / sqrt(1 + t^2/4) * (1 - t^2 / (12 (1 + t^2/4)))."""
    t = abs(t)
    u = 1 + t * t / 4
    cdf = 0.5 + 3 / 8 * t / math.sqrt(u) * (1 - t * t / (12 * u))
    return 2 * (1 - cdf)


def test_welch_difference_is_the_hand_derived_t_test():
    # Means 5 and 2, both sample variances 1: t = 3 / sqrt(1/3 + 1/3) = 3.674; Welch's df = 4 exactly.
    row = compare_losses.welch_difference('ghmc_ghmr', 'focal_l1', 'q', [4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert row.difference == 3.0
    assert row.t == pytest.approx(3 / math.sqrt(2 / 3), rel=1e-9)
    assert row.p == pytest.approx(student_t4_two_sided_p(3 / math.sqrt(2 / 3)), rel=1e-6)  # 0.0213
    assert row.verdict == 'beyond the seed spread'


def test_differences_answer_the_questions_whose_settings_ran():
    rows = compare_losses.differences(RECORDS)
    assert [(row.setting, row.against) for row in rows] == [('ghmc_ghmr', 'focal_l1')]  # nothing else ran
    row = rows[0]
    # 0.42 - 0.35; sample variances 0.0004 and 0.0025: t = 0.07 / sqrt(0.0029 / 3) = 2.251, which with
    # Welch's 2.6 degrees of freedom is below even the 3-df critical value 3.18 for p = 0.05.
    assert row.difference == pytest.approx(0.07)
    assert row.t == pytest.approx(0.07 / math.sqrt(0.0029 / 3), rel=1e-6)
    assert row.p > 0.05 and row.verdict == 'within the seed spread'
    table = compare_losses.differences_table(rows).splitlines()
    assert table[0] == '| question | setting - against | difference | Welch t | p | verdict |'
    assert table[2].startswith('| GHM-C + GHM-R (published recipe) against Focal Loss + L1 | '
                               '`ghmc_ghmr` - `focal_l1` | +0.070 | 2.25 | ')
    assert table[2].endswith(' | within the seed spread |')


@pytest.mark.parametrize('a, b, verdict', [
    ([0.4], [0.3, 0.35], 'needs two seeds or more on each side'),
    ([0.4, 0.4], [0.4, 0.4], 'identical runs'),
    ([0.4, 0.4], [0.3, 0.3], 'no seed spread to judge by'),
])
def test_differences_without_a_spread_get_no_test(a, b, verdict):
    row = compare_losses.welch_difference('ghmc_ghmr', 'focal_l1', 'q', a, b)
    assert row.t is None and row.p is None and row.verdict == verdict
    assert row.difference == pytest.approx(sum(a) / len(a) - sum(b) / len(b))


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    return struct.unpack('>II', data[16:24])


def test_loss_plot_is_a_legible_png(tmp_path):
    path = tmp_path / 'curves.png'
    compare_losses.plot_loss_curves(RECORDS, ['focal_l1', 'ghmc_ghmr'], path, 'title')
    width, height = _png_size(path)
    assert width >= 800 and height >= 500


def test_write_results_writes_the_table_the_records_and_the_plot(tmp_path):
    args = compare_losses.parse_args(['--settings', 'focal_l1', 'ghmc_ghmr', '--out-dir', str(tmp_path)])
    compare_losses.write_results(tmp_path, RECORDS, args, iters=10, command=['compare_losses.py'])
    report = (tmp_path / 'results.md').read_text()
    assert '| `ghmc_ghmr` | 3 | 0.420 ± 0.020 | 0.840 ± 0.040 | 0.210 ± 0.010 | 0.260 | 1.18 |' in report
    assert '| `ghmc_ghmr` | 2 | 0.440 | 0.880 | 0.220 | 0.600 | 12 |' in report  # the per-run table
    assert 'seeds 0 1 2' in report and '800 train / 200 val' in report
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['runs'] == RECORDS and results['seeds'] == [0, 1, 2] and results['iters'] == 10
    assert '## Differences in bbox mAP' in report and '| `ghmc_ghmr` - `focal_l1` | +0.070 | 2.25 |' in report
    assert [(row['setting'], row['against'], row['verdict']) for row in results['differences']] == [
        ('ghmc_ghmr', 'focal_l1', 'within the seed spread')]
    width, height = _png_size(tmp_path / 'loss_curves.png')
    assert width >= 800 and height >= 500


# -------------------------------------------------------------------------------------------- end to end


MEAN_SD = re.compile(r'^\d+\.\d{3}( ± \d+\.\d{3})?$')


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
    """``--quick``: two settings, one seed, 10 iterations each on the small set with validation at the end
    (about a minute on two CPU cores); then again with ``--resume-existing``, which trains nothing."""
    out_dir = tmp_path / 'out'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    command = [sys.executable, str(SCRIPT), '--quick', '--out-dir', str(out_dir)]
    # The demo data set is generated under data/ghm_demo of the working directory.
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '[1/2] focal_l1 seed 0: training 10 iterations' in run.stdout
    assert '[2/2] ghmc_ghmr seed 0: training 10 iterations' in run.stdout
    assert (tmp_path / 'data' / 'ghm_demo_small' / 'annotations' / 'val.json').is_file()

    table = [line for line in (out_dir / 'results.md').read_text().splitlines() if line.startswith('| `')]
    rows = {cells[0].strip('`'): cells[1:] for cells in
            ([cell.strip() for cell in line.strip('|').split('|')] for line in table[:2])}
    assert list(rows) == ['focal_l1', 'ghmc_ghmr']
    for name, (runs, mAP, mAP_50, mAP_s, seconds, ratio) in rows.items():
        assert runs == '1', name
        for cell in (mAP, mAP_50, mAP_s):
            assert MEAN_SD.match(cell) and 0.0 <= float(cell) <= 1.0, (name, cell)
        assert float(seconds) > 0 and float(ratio) > 0, (name, seconds, ratio)
    assert rows['focal_l1'][5] == '1.00'

    width, height = _png_size(out_dir / 'loss_curves.png')
    assert width >= 800 and height >= 500

    results = json.loads((out_dir / 'results.json').read_text())
    assert results['iters'] == 10 and results['seeds'] == [0] and '--quick' in results['data']
    assert [(r['setting'], r['seed']) for r in results['runs']] == [('focal_l1', 0), ('ghmc_ghmr', 0)]
    for record in results['runs']:
        assert record['steps'] == [2, 4, 6, 8, 10]  # logged every 2 iterations
        assert len(record['loss']) == 5 and all(math.isfinite(loss) for loss in record['loss'])
        assert set(compare_losses.METRICS) <= set(record['metrics'])
        assert record['median_seconds_per_iter'] > 0 and not record['reused']
        assert Path(record['config']).is_file() and Path(record['work_dir']).is_dir()

    again = subprocess.run(command + ['--resume-existing'], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert 'training' not in again.stdout and again.stdout.count('finished earlier, reusing') == 2
    rerun = json.loads((out_dir / 'results.json').read_text())['runs']
    assert [r['metrics'] for r in rerun] == [r['metrics'] for r in results['runs']]
    assert all(r['reused'] for r in rerun)
