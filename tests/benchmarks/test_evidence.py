"""benchmarks/evidence.py: each head's default loss is mmdet's own, GHM the published recipe and nothing else
differs; every setting trains a step; its counting of positive entries by hand; a finished run is never
trained again, a stopped one resumes; and (slow) its quick mode end to end and the regime's measured fraction."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import ghm_mmdet.datasets  # noqa: F401  (the demo configs' dataset)
from benchmarks import evidence
from ghm_mmdet.models.losses import GHMC, GHMR

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'benchmarks' / 'evidence.py'
MMDET_CONFIGS = Path(__import__('mmdet').__file__).parent / '.mim' / 'configs'

ALL_SETTINGS = [(study, setting) for study, spec in evidence.STUDIES.items() for setting in spec.settings]
IDS = [setting.name for _, setting in ALL_SETTINGS]

#: Each default-loss setting, its loss entries, and the mmdet config whose losses they must equal.
MMDET_DEFAULTS = {
    'atss_focal': ('atss/atss_r50_fpn_1x_coco.py', ('bbox_head.loss_cls', 'bbox_head.loss_bbox',
                                                    'bbox_head.loss_centerness')),
    'fcos_focal': ('fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', ('bbox_head.loss_cls', 'bbox_head.loss_bbox',
                                                                  'bbox_head.loss_centerness')),
    'faster-rcnn_ce_l1': ('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', (
        'rpn_head.loss_cls', 'rpn_head.loss_bbox', 'roi_head.bbox_head.loss_cls', 'roi_head.bbox_head.loss_bbox')),
    'rtmdet-tiny_qfl': ('rtmdet/rtmdet_tiny_8xb32-300e_coco.py', ('bbox_head.loss_cls', 'bbox_head.loss_bbox')),
    'sparse_focal_l1': ('retinanet/retinanet_r50_fpn_1x_coco.py', ('bbox_head.loss_cls', 'bbox_head.loss_bbox')),
    'retinanet_focal_l1': ('retinanet/retinanet_r50_fpn_1x_coco.py', ('bbox_head.loss_cls', 'bbox_head.loss_bbox')),
}
GHMC_RECIPE = dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)
GHMR_RECIPE = dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)


def _get(root, dotted):
    for key in dotted.split('.'):
        root = root[key]
    return root


def _plain(value):
    """``value`` as plain dicts and lists, without the ``_scope_`` keys of configs inherited by ``mmdet::``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@pytest.fixture(scope='module')
def configs():
    return {setting.name: evidence.build_config(setting, seed=5) for _, setting in ALL_SETTINGS}


# ------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize('name', sorted(MMDET_DEFAULTS))
def test_default_losses_are_mmdets_own(configs, name):
    mmdet_config, paths = MMDET_DEFAULTS[name]
    mmdet_model = Config.fromfile(str(MMDET_CONFIGS / mmdet_config)).model
    for path in paths:
        ours = _plain(_get(configs[name].model, path).to_dict())
        assert ours == _plain(_get(mmdet_model, path).to_dict()), path


def test_ghm_settings_use_the_published_recipe(configs):
    head = configs['atss_ghmc'].model.bbox_head
    assert _plain(head.loss_cls.to_dict()) == GHMC_RECIPE
    assert _plain(configs['fcos_ghmc'].model.bbox_head.loss_cls.to_dict()) == GHMC_RECIPE
    assert _plain(configs['fcos_ghmc_lw3'].model.bbox_head.loss_cls.to_dict()) == dict(GHMC_RECIPE, loss_weight=3.0)
    # RTMDetHead divides by the sum of its assignment metrics itself (README's head table).
    assert _plain(configs['rtmdet-tiny_ghmc'].model.bbox_head.loss_cls.to_dict()) == dict(GHMC_RECIPE, reduction='sum')
    faster = configs['faster-rcnn_ghm'].model
    assert _plain(faster.rpn_head.loss_cls.to_dict()) == GHMC_RECIPE
    assert _plain(faster.rpn_head.loss_bbox.to_dict()) == GHMR_RECIPE
    assert _plain(faster.roi_head.bbox_head.loss_cls.to_dict()) == dict(GHMC_RECIPE, use_sigmoid=False)
    assert _plain(faster.roi_head.bbox_head.loss_bbox.to_dict()) == GHMR_RECIPE
    faster_r1 = configs['faster-rcnn_ghm_r1'].model
    assert _plain(faster_r1.rpn_head.loss_bbox.to_dict()) == dict(GHMR_RECIPE, loss_weight=1.0)
    assert _plain(faster_r1.roi_head.bbox_head.loss_bbox.to_dict()) == dict(GHMR_RECIPE, loss_weight=1.0)
    assert _plain(faster_r1.roi_head.bbox_head.loss_cls.to_dict()) == dict(GHMC_RECIPE, use_sigmoid=False)
    faster_l1 = configs['faster-rcnn_ghmc_l1'].model
    assert _plain(faster_l1.rpn_head.loss_cls.to_dict()) == GHMC_RECIPE
    assert _plain(faster_l1.roi_head.bbox_head.loss_cls.to_dict()) == dict(GHMC_RECIPE, use_sigmoid=False)
    assert _plain(faster_l1.rpn_head.loss_bbox.to_dict()) == dict(type='L1Loss', loss_weight=1.0)
    assert _plain(faster_l1.roi_head.bbox_head.loss_bbox.to_dict()) == dict(type='L1Loss', loss_weight=1.0)
    sparse = configs['sparse_ghmc_ghmr'].model.bbox_head
    assert _plain(sparse.loss_cls.to_dict()) == GHMC_RECIPE and _plain(sparse.loss_bbox.to_dict()) == GHMR_RECIPE
    assert _plain(configs['sparse_ghmc_l1'].model.bbox_head.loss_bbox.to_dict()) == dict(type='L1Loss', loss_weight=1.0)


def _without(cfg: dict, paths):
    cfg = _plain(cfg)
    for path in paths:
        *parents, last = path.split('.')
        _get(cfg['model'], '.'.join(parents)).pop(last) if parents else cfg['model'].pop(last)
    return cfg


@pytest.mark.parametrize('study', sorted(evidence.STUDIES))
def test_within_a_head_only_the_losses_differ(configs, study):
    """Same data, schedule, lr, clipping, seed and model, but for the loss entries the settings replace."""
    by_config = {}
    for setting in evidence.STUDIES[study].settings:
        by_config.setdefault(setting.config, []).append(setting)
    for settings in by_config.values():
        assert len(settings) >= 2
        replaced = sorted({path for setting in settings for path in setting.changes})
        bodies = [_without(configs[setting.name].to_dict(), replaced) for setting in settings]
        assert all(body == bodies[0] for body in bodies[1:]), [setting.name for setting in settings]


def test_the_studies_cover_the_issue():
    heads = {setting.config for setting in evidence.STUDIES['heads'].settings}
    assert heads == {'atss_ghm_demo.py', 'fcos_ghm_demo.py', 'faster-rcnn_ghm_demo.py', 'rtmdet-tiny_ghm_demo.py',
                     'retinanet_ghm_demo.py'}
    assert [c[:2] for c in evidence.STUDIES['heads'].comparisons] == [
        ('atss_ghmc', 'atss_focal'), ('fcos_ghmc', 'fcos_focal'), ('fcos_ghmc_lw3', 'fcos_focal'),
        ('faster-rcnn_ghm', 'faster-rcnn_ce_l1'), ('faster-rcnn_ghm_r1', 'faster-rcnn_ce_l1'),
        ('faster-rcnn_ghmc_l1', 'faster-rcnn_ce_l1'),
        ('rtmdet-tiny_ghmc', 'rtmdet-tiny_qfl'), ('rtmdet-tiny_ghmc_lw', 'rtmdet-tiny_qfl'),
        ('rtmdet-tiny_ghmc_sn', 'rtmdet-tiny_qfl'), ('rtmdet-tiny_ghmc_mean', 'rtmdet-tiny_qfl'),
        ('retinanet_ghmc_ghmr', 'retinanet_focal_l1')]
    regime = evidence.STUDIES['regime']
    assert {'sparse_bce_l1', 'sparse_focal_l1', 'sparse_ghmc_l1'} <= {s.name for s in regime.settings}
    assert 0 not in regime.seeds and len(regime.seeds) == 3  # fresh seeds: 0 is the pilots'


@pytest.mark.parametrize('study, setting', ALL_SETTINGS, ids=IDS)
def test_every_setting_trains_one_step(configs, study, setting):
    """Loss and backward on two 160 px images: finite losses, and every GHM loss of the config called."""
    cfg = configs[setting.name]
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    called = []
    for module in model.modules():
        if isinstance(module, (GHMC, GHMR)):
            module.register_forward_hook(lambda m, a, o: called.append(m))
    generator = torch.Generator().manual_seed(0)
    num_classes = cfg.num_classes
    inputs, samples = [], []
    for boxes in (((10., 12., 40., 44.), (60., 70., 66., 76.), (90., 20., 130., 62.)), ((30., 30., 70., 60.),)):
        inputs.append(torch.randint(0, 256, (3, 160, 160), generator=generator, dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(160, 160), ori_shape=(160, 160), scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes),
                                           labels=torch.arange(len(boxes)) * 7 % num_classes)
        samples.append(sample)
    model.train()
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total, _ = model.parse_losses(losses)
    total.backward()
    assert torch.isfinite(total)
    ghm_modules = [m for m in model.modules() if isinstance(m, (GHMC, GHMR))]
    assert {id(m) for m in called} == {id(m) for m in ghm_modules}
    assert bool(ghm_modules) == ('ghm' in setting.name)


# ------------------------------------------------------------------------------------------------ fraction


def test_count_entries_by_hand():
    pred = torch.zeros(4, 3)
    labels = torch.tensor([0, 3, 2, 3])  # 3 = background
    # Rows 0, 1 and 3 valid: 9 entries, one positive (row 2's label is ignored with its row).
    assert evidence.count_entries(pred, labels, torch.tensor([1., 1., 0., 1.])) == (1, 9)
    assert evidence.count_entries(pred, labels, torch.tensor([1., 1., 0., 1.])[:, None].expand(4, 3)) == (1, 9)
    assert evidence.count_entries(pred, labels) == (2, 12)
    assert evidence.count_entries(pred, (labels, torch.ones(4))) == (2, 12)  # a quality target's labels


# ------------------------------------------------------------------------------------------------ resuming


def _fake_training(calls, iters_logged=None):
    """A ``train`` that logs like mmengine: records every 2 iterations, then a validation."""
    def train(config_file, work_dir, log_file, resume):
        calls.append(resume)
        cfg = Config.fromfile(str(config_file))
        iters = cfg.train_cfg.max_iters if iters_logged is None else iters_logged
        run_dir = work_dir / f'2026120{len(calls)}_000000' / 'vis_data'
        run_dir.mkdir(parents=True)
        start = 2 * (len(calls) - 1)
        lines = [json.dumps(dict(loss=1.0 / step, time=0.5, step=step)) for step in range(max(start, 2), iters + 1, 2)]
        lines.append(json.dumps({'coco/bbox_mAP': 0.25, 'coco/bbox_mAP_50': 0.5, 'coco/bbox_mAP_s': 0.125,
                                 'time': 0.1, 'step': 0}))
        (run_dir / 'scalars.json').write_text('\n'.join(lines) + '\n')
        return 12.0
    return train


def _args(tmp_path, *extra):
    return evidence.parse_args(['--study', 'heads', '--settings', 'atss_ghmc', '--seeds', '3', '--iters', '6',
                                '--out-dir', str(tmp_path / 'out'), *extra])


def test_a_finished_run_is_never_trained_again(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(evidence, 'train', _fake_training(calls))
    args = _args(tmp_path)
    setting = evidence.STUDIES['heads'].setting('atss_ghmc')
    first = evidence.run_one('heads', setting, 3, args, 'tag')
    assert calls == [False]
    result_file = args.results_dir / 'atss_ghmc-seed3.json'
    assert json.loads(result_file.read_text()) == first
    assert first['steps'] == [2, 4, 6] and first['loss'] == [0.5, 0.25, 1 / 6]
    assert first['metrics'] == {'coco/bbox_mAP': 0.25, 'coco/bbox_mAP_50': 0.5, 'coco/bbox_mAP_s': 0.125}
    assert first['command'] == ['python', 'benchmarks/evidence.py', '--study', 'heads', '--settings', 'atss_ghmc',
                                '--seeds', '3', '--iters', '6', '--results-dir', str(args.results_dir)]
    assert args.results_dir == tmp_path / 'out' / 'results' / 'heads'  # --out-dir's, not the default
    assert first['resumed_from_iter'] is None and first['config'] == 'configs/atss_ghm_demo.py'
    assert evidence.run_one('heads', setting, 3, args, 'tag') == first
    assert calls == [False]  # not trained again

    # The JSON of another config (here: another length) is refused, not overwritten.
    other = _args(tmp_path, '--iters', '8')
    other.results_dir = args.results_dir
    with pytest.raises(ValueError, match='atss_ghmc-seed3.json holds a run of another config'):
        evidence.run_one('heads', setting, 3, other, 'tag')
    assert json.loads(result_file.read_text()) == first


def test_the_recorded_command_names_a_results_dir_other_than_the_default():
    """A pilot's command keeps its own folder, so that running it again never adds seed 0 to the study's table;
    a run in the default folder gets none."""
    base = ['python', 'benchmarks/evidence.py', '--study', 'regime', '--settings', 'sparse_ghmc_l1', '--seeds']
    pilot = evidence.reproduce_command('regime', 'sparse_ghmc_l1', 0, 3000, False,
                                       evidence.REPO / 'docs' / 'results' / 'regime-pilots-3000')
    assert pilot == base + ['0', '--iters', '3000', '--results-dir', 'docs/results/regime-pilots-3000']
    fresh = evidence.reproduce_command('regime', 'sparse_ghmc_l1', 1, 3000, False,
                                       evidence.REPO / 'docs' / 'results' / 'regime')
    assert fresh == base + ['1', '--iters', '3000']
    # As parse_args leaves it: the default folder, and --quick's.
    args = evidence.parse_args(['--study', 'regime', '--seeds', '2'])
    assert evidence.reproduce_command('regime', 'sparse_ghmc_l1', 2, None, False, args.results_dir) == base + ['2']
    quick = evidence.parse_args(['--study', 'regime', '--quick'])
    assert evidence.reproduce_command('regime', 'sparse_ghmc_l1', 0, None, True, quick.results_dir) == (
        base + ['0', '--quick'])


def test_a_stopped_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    args = _args(tmp_path)
    setting = evidence.STUDIES['heads'].setting('atss_ghmc')
    # A first attempt that stopped after iteration 4, with its checkpoint.
    calls = []
    monkeypatch.setattr(evidence, 'train', _fake_training(calls, iters_logged=4))
    with pytest.raises(RuntimeError, match='no training record of iteration 6'):
        evidence.run_one('heads', setting, 3, args, 'tag')
    work_dir = args.out_dir / 'heads' / 'atss_ghmc' / 'seed3'
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_4.pth'))
    assert not (args.results_dir / 'atss_ghmc-seed3.json').exists()

    monkeypatch.setattr(evidence, 'train', _fake_training(calls))
    result = evidence.run_one('heads', setting, 3, args, 'tag')
    assert calls == [False, True] and result['resumed_from_iter'] == 4
    assert result['steps'] == [2, 4, 6]  # both run dirs' records


def test_a_training_stopped_after_its_validation_needs_no_more(tmp_path):
    """Resumed at its last iteration, mmengine trains and validates nothing: the earlier run dir's records hold."""
    first = tmp_path / '20261207_010000' / 'vis_data'
    first.mkdir(parents=True)
    first.joinpath('scalars.json').write_text('\n'.join(json.dumps(record) for record in (
        dict(loss=0.5, time=0.2, step=2), dict(loss=0.25, time=0.2, step=4),
        {'coco/bbox_mAP': 0.3, 'coco/bbox_mAP_50': 0.6, 'coco/bbox_mAP_s': 0.2, 'time': 0.1, 'step': 0})) + '\n')
    (tmp_path / '20261207_020000' / 'vis_data').mkdir(parents=True)
    (tmp_path / '20261207_020000' / 'vis_data' / 'scalars.json').write_text('')
    merged = evidence.merged_scalars(tmp_path)
    assert merged.finished(4) and merged.steps == [2, 4] and merged.metrics['coco/bbox_mAP'] == 0.3


def test_leftovers_of_another_config_are_not_resumed(tmp_path, monkeypatch):
    args = _args(tmp_path)
    work_dir = args.out_dir / 'heads' / 'atss_ghmc' / 'seed3'
    work_dir.mkdir(parents=True)
    work_dir.with_suffix('.py').write_text('# another config\n')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_4.pth'))
    calls = []
    monkeypatch.setattr(evidence, 'train', _fake_training(calls))
    result = evidence.run_one('heads', evidence.STUDIES['heads'].setting('atss_ghmc'), 3, args, 'tag')
    assert calls == [False] and result['resumed_from_iter'] is None


def test_command_line(tmp_path):
    args = evidence.parse_args(['--study', 'regime'])
    assert args.seeds == [1, 2, 3] and args.results_dir == evidence.RESULTS_ROOT / 'regime'
    assert args.settings == [s.name for s in evidence.STUDIES['regime'].settings]
    quick = evidence.parse_args(['--study', 'heads', '--quick'])
    assert (quick.settings, quick.seeds, quick.iters) == (['faster-rcnn_ghm', 'rtmdet-tiny_ghmc'], [0], 10)
    assert quick.results_dir == Path('work_dirs/evidence_quick/results/heads')
    with pytest.raises(SystemExit):
        evidence.parse_args(['--study', 'heads', '--settings', 'sparse_bce_l1'])
    with pytest.raises(SystemExit):
        evidence.parse_args(['--study', 'heads', '--seeds', '1', '1'])


# ------------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
    """``--quick`` of both studies (three trainings of 10 iterations on small sets, about two minutes), then
    again, which trains nothing."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for study, names in (('heads', ['faster-rcnn_ghm', 'rtmdet-tiny_ghmc']), ('regime', ['sparse_ghmc_l1'])):
        command = [sys.executable, str(SCRIPT), '--study', study, '--quick', '--out-dir', str(tmp_path / 'out')]
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        results_dir = tmp_path / 'out' / 'results' / study
        for name in names:
            result = json.loads((results_dir / f'{name}-seed0.json').read_text())
            assert result['iters'] == 10 and result['steps'] == [2, 4, 6, 8, 10]
            assert all(0.0 <= result['metrics'][m] <= 1.0 for m in evidence.METRICS)
            assert result['command'][-3:] == ['--quick', '--results-dir', str(results_dir)]
            assert result['median_seconds_per_iter'] > 0
        report = (results_dir / 'results.md').read_text()
        assert all(f'| `{name}`' in report for name in names)
        again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and 'training' not in again.stdout
        assert again.stdout.count('not trained again') == len(names)
    assert (tmp_path / 'data' / 'ghm_demo_sparse_small' / 'annotations' / 'val.json').is_file()


@pytest.mark.slow
def test_the_sparse_demo_is_in_the_papers_regime(tmp_path, monkeypatch):
    """The regime's config has at most 1e-4 of its classification entries positive; the demo about 1e-3 (the
    issue measured 1.1e-3: 54 positive anchors of 6,240 x 8 entries per image)."""
    monkeypatch.chdir(tmp_path)  # the sets are generated under data/
    evidence.main(['--study', 'regime', '--positive-fraction', '--results-dir', str(tmp_path / 'results')])
    measured = json.loads((tmp_path / 'results' / 'positive_fraction.json').read_text())
    assert measured['command'] == ['python', 'benchmarks/evidence.py', '--study', 'regime', '--positive-fraction']
    sparse = measured['configs']['configs/retinanet_ghm_sparse-demo.py']
    demo = measured['configs']['configs/retinanet_ghm_demo.py']
    assert sparse['images'] >= 40 and sparse['fraction'] <= 1e-4
    assert 2 <= sparse['objects_per_image'] <= 4
    assert sparse['valid_entries_per_image'] <= 6300 * 20  # 3 anchors at each of 40² + 20² + 10² positions
    assert 0.8e-3 <= demo['fraction'] <= 1.5e-3


def test_the_report_tabulates_every_json(tmp_path):
    """``--report``: mean ± sd per setting and Welch's t per question, from the JSONs alone (numbers by hand:
    GHM 0.50/0.52/0.54 against Focal 0.40/0.41/0.42 gives +0.110, t = 0.11 / sqrt(4e-4 / 3 + 1e-4 / 3) = 8.52)."""
    for name, values in (('atss_ghmc', (0.50, 0.52, 0.54)), ('atss_focal', (0.40, 0.41, 0.42))):
        for seed, value in enumerate(values):
            result = dict(setting=name, seed=seed, iters=1500, date='2026-12-07', machine='m', wall_seconds=400.0,
                          median_seconds_per_iter=0.25, resumed_from_iter=None,
                          metrics={'coco/bbox_mAP': value, 'coco/bbox_mAP_50': 2 * value, 'coco/bbox_mAP_s': value})
            (tmp_path / f'{name}-seed{seed}.json').write_text(json.dumps(result))
    (tmp_path / 'sparse_bce_l1-seed0.json').write_text(json.dumps(dict(setting='sparse_bce_l1', seed=0)))
    evidence.main(['--study', 'heads', '--report', '--results-dir', str(tmp_path)])
    report = (tmp_path / 'results.md').read_text()
    assert '6 runs of 1500 iterations, 2026-12-07; m.' in report  # the other study's JSON is not counted
    assert '| 0 1 2 | 0.520 ± 0.020 | 1.040 ± 0.040 | 0.520 ± 0.020 | 0.250 |' in report
    assert '| 0 1 2 | 0.410 ± 0.010 | 0.820 ± 0.020 | 0.410 ± 0.010 | 0.250 |' in report
    row = next(line for line in report.splitlines() if line.startswith('| ATSS: GHM-C against Focal Loss'))
    assert '| +0.110 | 8.52 |' in row and 'beyond the seed spread' in row
