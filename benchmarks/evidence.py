"""Where GHM helps: each head trained with its default loss and with GHM on the demo data (``--study heads``), and
the paper's comparison of classification losses on a demo variant in its imbalance regime (``--study regime``).

Every run trains one config of ``configs/`` with ``tools/train.py`` (a subprocess), one at a time. Within a head
the settings differ in their losses only (same data, schedule, lr, clipping and seeds); the default-loss
setting is the GHM config with the head's own losses put back. Each finished run's numbers go to a small JSON
in the repository, ``docs/results/STUDY/SETTING-seedN.json`` (COCO box metrics, the loss curve, seconds per
iteration, the config's SHA-256, date, machine, commit and the command that reproduces it), and
``docs/results/STUDY/results.md`` tabulates every JSON of the study: mean ± sd over the seeds and, per
question of :data:`STUDIES`, Welch's t-test.

    python benchmarks/evidence.py --study heads                    # 16 settings x seeds 0 1 2
    python benchmarks/evidence.py --study regime                   # 4 settings x seeds 1 2 3
    python benchmarks/evidence.py --study heads --settings fcos_ghmc --seeds 1    # one run
    python benchmarks/evidence.py --study regime --settings sparse_ghmc_l1 --seeds 0 --out-dir work_dirs/pilot
    python benchmarks/evidence.py --study regime --positive-fraction   # measure the fraction, no training
    python benchmarks/evidence.py --study heads --report           # results.md from the JSONs, no training
    python benchmarks/evidence.py --study heads --quick            # smoke check: 10 iterations, small set

Resumable: a run whose JSON exists for the same config text is never trained again (a JSON of another config
is an error: delete it to retrain); a training stopped part-way resumes from its last checkpoint (every
:data:`CHECKPOINT_INTERVAL` iterations) with mmengine's ``--resume``, and its JSON says from which iteration.
Work dirs and checkpoints stay under ``work_dirs/`` (ignored by git).
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path: the checkout's root, for benchmarks.*

from benchmarks.compare_losses import (  # noqa: E402
    METRIC_HEADERS,
    METRICS,
    RunScalars,
    format_mean_sd,
    parse_scalars,
    set_schedule_length,
    train,
    use_small_data_set,
    welch_difference,
)
from benchmarks.compare_losses import differences_table as _differences_table  # noqa: E402
from benchmarks.timing import machine_description  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'
RESULTS_ROOT = REPO / 'docs' / 'results'
#: A checkpoint every this many iterations, so that a stopped training loses at most this many.
CHECKPOINT_INTERVAL = 500
QUICK_ITERS = 10

FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
SIGMOID_CE = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)
L1 = dict(type='L1Loss', loss_weight=1.0)
GHMC = dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)
GHMR = dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)


@dataclass(frozen=True)
class Setting:
    """One row: a config file and the model entries (dotted paths under ``model``) that replace its own.

    A replaced entry is replaced whole: no key of the config's loss survives (as with ``_delete_=True``).
    """
    name: str
    description: str
    config: str
    changes: Dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """The settings of one table, the questions it answers (setting, against, question), the settings
    ``--quick`` runs, and the default seeds."""
    title: str
    settings: Tuple[Setting, ...]
    comparisons: Tuple[Tuple[str, str, str], ...]
    quick_settings: Tuple[str, ...]
    seeds: Tuple[int, ...] = (0, 1, 2)

    def setting(self, name: str) -> Setting:
        return next(setting for setting in self.settings if setting.name == name)


_FASTER_DEFAULT = {'rpn_head.loss_cls': SIGMOID_CE, 'rpn_head.loss_bbox': L1,
                   'roi_head.bbox_head.loss_cls': dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                   'roi_head.bbox_head.loss_bbox': L1}

STUDIES: Dict[str, Study] = {
    'heads': Study(
        title='Each head with its default loss and with GHM, on the demo data',
        settings=(
            Setting('atss_focal', 'ATSS, Focal Loss (its default) + GIoU + centerness', 'atss_ghm_demo.py',
                    {'bbox_head.loss_cls': FOCAL}),
            Setting('atss_ghmc', 'ATSS, GHM-C + GIoU + centerness', 'atss_ghm_demo.py'),
            Setting('fcos_focal', 'FCOS, Focal Loss (its default) + IoU + centerness', 'fcos_ghm_demo.py',
                    {'bbox_head.loss_cls': FOCAL}),
            Setting('fcos_ghmc', 'FCOS, GHM-C + IoU + centerness', 'fcos_ghm_demo.py'),
            # The fix tried for fcos_ghmc: FCOSHead calls the loss once over its 3 levels, where ATSS and RetinaNet
            # call it once per level and sum, so its GHM-C weighs a third as much (the whole-batch rule).
            Setting('fcos_ghmc_lw3', 'FCOS, GHM-C with loss weight 3 (its one call covers 3 FPN levels)',
                    'fcos_ghm_demo.py', {'bbox_head.loss_cls': dict(GHMC, loss_weight=3.0)}),
            Setting('faster-rcnn_ce_l1', 'Faster R-CNN, cross-entropy + L1 in the RPN and the RoI head (its default)',
                    'faster-rcnn_ghm_demo.py', _FASTER_DEFAULT),
            Setting('faster-rcnn_ghm', 'Faster R-CNN, GHM-C + GHM-R in the RPN, softmax GHM-C + GHM-R in the RoI head',
                    'faster-rcnn_ghm_demo.py'),
            # The fix tried for faster-rcnn_ghm, whose regression terms lead its gradient (benchmarks/ghm_diagnosis.py).
            # GHM-R's loss weight 10 is RetinaNet's; with one bin, weight 1 would be the RoI head's L1 scale (the mean
            # ASL1 over 4 P coordinates against L1's sum over them / R RoIs, P / R = 1/4). With 10 bins it measured a
            # fifth of L1's loss at the end (0.067 against 0.317), and localization stayed poor: see docs/benchmarks.md.
            Setting('faster-rcnn_ghm_r1', "Faster R-CNN, as faster-rcnn_ghm, GHM-R's loss weight 1 (not 10)",
                    'faster-rcnn_ghm_demo.py', {'rpn_head.loss_bbox': dict(GHMR, loss_weight=1.0),
                                                'roi_head.bbox_head.loss_bbox': dict(GHMR, loss_weight=1.0)}),
            # Which of the two losses: GHM-C alone, with the head's own L1 in both stages (weight 1 lost localization
            # as weight 10 did: mAP@75 0.38 and 0.32 against cross-entropy + L1's 0.61).
            Setting('faster-rcnn_ghmc_l1', 'Faster R-CNN, GHM-C in the RPN, softmax GHM-C in the RoI head, L1 in both',
                    'faster-rcnn_ghm_demo.py', {'rpn_head.loss_bbox': L1, 'roi_head.bbox_head.loss_bbox': L1}),
            Setting('rtmdet-tiny_qfl', 'RTMDet-tiny, QualityFocalLoss (its default) + GIoU', 'rtmdet-tiny_ghm_demo.py',
                    {'bbox_head.loss_cls': dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0)}),
            Setting('rtmdet-tiny_ghmc', "RTMDet-tiny, quality-target GHM-C (reduction='sum') + GIoU",
                    'rtmdet-tiny_ghm_demo.py'),
            # Fixes tried for rtmdet-tiny_ghmc. RTMDetHead divides the loss by S, the sum of its assignment metrics,
            # which grows from about 2 per step at initialisation to about 350 trained (measured on the demo), so
            # 'sum' is about N / S times the paper's Eq. 8 (N: the valid entries, 33,600 per batch), and 'mean' 1 / S
            # times it (benchmarks/rtmdet_scale.py). The first weight tried, 0.0026, miscounted N (134k); S / N with
            # the trained S, 360 / 33,600 = 0.0107, brings the trained state to the paper's scale.
            Setting('rtmdet-tiny_ghmc_lw', "RTMDet-tiny, quality-target GHM-C, reduction='sum', loss weight 0.0026",
                    'rtmdet-tiny_ghm_demo.py', {'bbox_head.loss_cls': dict(GHMC, reduction='sum', loss_weight=0.0026)}),
            Setting('rtmdet-tiny_ghmc_sn', "RTMDet-tiny, quality-target GHM-C, reduction='sum', weight S / N = 0.0107",
                    'rtmdet-tiny_ghm_demo.py', {'bbox_head.loss_cls': dict(GHMC, reduction='sum', loss_weight=0.0107)}),
            Setting('rtmdet-tiny_ghmc_mean', "RTMDet-tiny, quality-target GHM-C, reduction='mean'",
                    'rtmdet-tiny_ghm_demo.py', {'bbox_head.loss_cls': dict(GHMC, reduction='mean')}),
            # The demo itself, re-run: compare_losses.py's focal_l1 and ghmc_ghmr (their loss logs were never
            # kept, so its earlier runs cannot be shown to reproduce bit for bit).
            Setting('retinanet_focal_l1', 'RetinaNet, Focal Loss + L1 (its default)', 'retinanet_ghm_demo.py',
                    {'bbox_head.loss_cls': FOCAL, 'bbox_head.loss_bbox': L1}),
            Setting('retinanet_ghmc_ghmr', 'RetinaNet, GHM-C + GHM-R (the demo config)', 'retinanet_ghm_demo.py'),
        ),
        comparisons=(
            ('atss_ghmc', 'atss_focal', 'ATSS: GHM-C against Focal Loss'),
            ('fcos_ghmc', 'fcos_focal', 'FCOS: GHM-C against Focal Loss'),
            ('fcos_ghmc_lw3', 'fcos_focal', 'FCOS: GHM-C with loss weight 3 against Focal Loss'),
            ('faster-rcnn_ghm', 'faster-rcnn_ce_l1', 'Faster R-CNN: GHM against cross-entropy + L1'),
            ('faster-rcnn_ghm_r1', 'faster-rcnn_ce_l1', "Faster R-CNN: GHM, GHM-R weight 1, against CE + L1"),
            ('faster-rcnn_ghmc_l1', 'faster-rcnn_ce_l1', 'Faster R-CNN: GHM-C + L1 against CE + L1'),
            ('rtmdet-tiny_ghmc', 'rtmdet-tiny_qfl', 'RTMDet-tiny: GHM-C against QualityFocalLoss'),
            ('rtmdet-tiny_ghmc_lw', 'rtmdet-tiny_qfl', 'RTMDet-tiny: GHM-C, weight 0.0026, against QualityFocalLoss'),
            ('rtmdet-tiny_ghmc_sn', 'rtmdet-tiny_qfl', 'RTMDet-tiny: GHM-C, weight S / N, against QualityFocalLoss'),
            ('rtmdet-tiny_ghmc_mean', 'rtmdet-tiny_qfl', "RTMDet-tiny: GHM-C, 'mean', against QualityFocalLoss"),
            ('retinanet_ghmc_ghmr', 'retinanet_focal_l1', 'RetinaNet: GHM-C + GHM-R against Focal Loss + L1'),
        ),
        quick_settings=('faster-rcnn_ghm', 'rtmdet-tiny_ghmc')),
    'regime': Study(
        title="The paper's comparison of classification losses in its imbalance regime (the sparse demo)",
        settings=(
            Setting('sparse_bce_l1', 'RetinaNet, sigmoid cross-entropy + L1', 'retinanet_ghm_sparse-demo.py',
                    {'bbox_head.loss_cls': SIGMOID_CE, 'bbox_head.loss_bbox': L1}),
            Setting('sparse_focal_l1', 'RetinaNet, Focal Loss + L1', 'retinanet_ghm_sparse-demo.py',
                    {'bbox_head.loss_cls': FOCAL, 'bbox_head.loss_bbox': L1}),
            Setting('sparse_ghmc_l1', 'RetinaNet, GHM-C + L1', 'retinanet_ghm_sparse-demo.py',
                    {'bbox_head.loss_bbox': L1}),
            Setting('sparse_ghmc_ghmr', 'RetinaNet, GHM-C + GHM-R (the config as it is)',
                    'retinanet_ghm_sparse-demo.py'),
        ),
        comparisons=(
            ('sparse_focal_l1', 'sparse_bce_l1', 'Focal Loss against cross-entropy (paper: +7.0 AP)'),
            ('sparse_ghmc_l1', 'sparse_bce_l1', 'GHM-C against cross-entropy (paper: +7.2 AP)'),
            ('sparse_ghmc_l1', 'sparse_focal_l1', 'GHM-C against Focal Loss (paper: +0.2 AP)'),
            ('sparse_ghmc_ghmr', 'sparse_ghmc_l1', 'GHM-R against L1, both with GHM-C'),
        ),
        quick_settings=('sparse_ghmc_l1',),
        # Fresh seeds: seed 0 is the pilots' (docs/results/regime-pilots/).
        seeds=(1, 2, 3)),
}


# ---------------------------------------------------------------------------------------------- configs


def set_model_entry(model, dotted: str, value: dict) -> None:
    """Replace ``model``'s entry at ``dotted`` (``'bbox_head.loss_cls'``) by ``value``, whole."""
    from mmengine.config import ConfigDict
    *parents, last = dotted.split('.')
    for key in parents:
        model = model[key]
    if last not in model:
        raise KeyError(f'the config has no model.{dotted} to replace')
    model[last] = ConfigDict(value)


def build_config(setting: Setting, seed: int, iters: Optional[int] = None, small_data: bool = False):
    """The mmengine ``Config`` of one run: ``setting``'s config with its changes, seed ``seed``, a checkpoint
    every :data:`CHECKPOINT_INTERVAL` iterations; ``iters`` and ``small_data`` as for ``compare_losses``."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(CONFIGS / setting.config))
    for path, value in setting.changes.items():
        set_model_entry(cfg.model, path, value)
    cfg.randomness.seed = seed
    if iters is not None:
        set_schedule_length(cfg, iters)
    if small_data:
        use_small_data_set(cfg)
    cfg.default_hooks.checkpoint.interval = min(CHECKPOINT_INTERVAL, cfg.train_cfg.max_iters)
    return cfg


# ---------------------------------------------------------------------------------------------- results


def merged_scalars(work_dir: Path) -> RunScalars:
    """The training's records over all its run dirs (a resumed training logs into a new one), oldest first:
    a later record of an iteration replaces an earlier one; the validation is the newest one logged (a
    training stopped after its validation but before its JSON resumes with nothing left to train)."""
    steps: Dict[int, Tuple[float, Optional[float]]] = {}
    validation = RunScalars()
    for scalars_file in sorted(work_dir.glob('*/vis_data/scalars.json'), key=lambda path: path.parts[-3]):
        last = parse_scalars(scalars_file.read_text())
        if last.validated:
            validation = last
        times = dict(zip(last.steps, last.seconds_per_iter)) if len(last.seconds_per_iter) == len(last.steps) \
            else {}
        for step, loss in zip(last.steps, last.loss):
            steps[step] = (loss, times.get(step))
    merged = RunScalars(validated=validation.validated, metrics=validation.metrics)
    for step in sorted(steps):
        loss, seconds = steps[step]
        merged.steps.append(step)
        merged.loss.append(loss)
        if seconds is not None:
            merged.seconds_per_iter.append(seconds)
    return merged


def config_digest(config_text: str) -> str:
    return hashlib.sha256(config_text.encode()).hexdigest()


def git_commit() -> str:
    """HEAD's commit, with ``+dirty`` when tracked files differ from it; ``'unknown'`` outside a checkout."""
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return commit + ('+dirty' if dirty else '')


def default_results_dir(study: str, quick: bool) -> Path:
    """Where a run's JSON goes when neither ``--out-dir`` nor ``--results-dir`` is given."""
    return Path('work_dirs') / 'evidence_quick' / 'results' / study if quick else RESULTS_ROOT / study


def reproduce_command(study: str, setting: str, seed: int, iters: Optional[int], quick: bool,
                      results_dir: Optional[Path] = None) -> List[str]:
    """The command that trains this run again and writes its JSON where this one's went: ``--results-dir`` is
    named unless it is the default, so that re-running a pilot never lands in a study's own table."""
    command = ['python', 'benchmarks/evidence.py', '--study', study, '--settings', setting, '--seeds', str(seed)]
    if quick:
        command.append('--quick')
    if iters is not None:
        command += ['--iters', str(iters)]
    if results_dir is not None:
        where = Path(os.path.abspath(results_dir))
        if where != Path(os.path.abspath(default_results_dir(study, quick))):
            try:
                where = where.relative_to(REPO)
            except ValueError:  # outside the repository: named in full
                pass
            command += ['--results-dir', str(where)]
    return command


def load_result(path: Path, digest: str) -> Optional[dict]:
    """The result at ``path`` if it is of the config with SHA-256 ``digest``; None if there is none.

    Raises:
        ValueError: ``path`` holds the result of another config (never silently replaced).
    """
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get('config_sha256') != digest:
        raise ValueError(f'{path} holds a run of another config (config_sha256 {result.get("config_sha256")}, '
                         f'this one {digest}): delete it to train this config, or pass another --results-dir')
    return result


# ---------------------------------------------------------------------------------------------- running


def last_checkpoint_iter(work_dir: Path) -> Optional[int]:
    """The iteration of the checkpoint mmengine's ``--resume`` would load from ``work_dir``, if any."""
    pointer = work_dir / 'last_checkpoint'
    if not pointer.is_file():
        return None
    name = Path(pointer.read_text().strip()).name  # iter_500.pth
    if not (name.startswith('iter_') and name.endswith('.pth')):
        return None
    return int(name[len('iter_'):-len('.pth')])


def run_one(study: str, setting: Setting, seed: int, args: argparse.Namespace, tag: str) -> dict:
    """Reuse the run's JSON, or train (resuming a stopped training of the same config) and write it."""
    cfg = build_config(setting, seed, args.iters, small_data=args.quick)
    config_text = cfg.pretty_text
    digest = config_digest(config_text)
    result_file = args.results_dir / f'{setting.name}-seed{seed}.json'
    result = load_result(result_file, digest)
    if result is not None:
        print(f'{tag}: finished earlier ({result_file}), not trained again', flush=True)
        return result

    work_dir = args.out_dir / study / setting.name / f'seed{seed}'
    config_file = work_dir.with_suffix('.py')
    same_config = config_file.is_file() and config_file.read_text() == config_text
    resumed_from = last_checkpoint_iter(work_dir) if same_config else None
    if not same_config and work_dir.exists():
        import shutil
        shutil.rmtree(work_dir)  # another config's leftovers: its checkpoints must not be resumed
    work_dir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(config_text)
    iters = cfg.train_cfg.max_iters
    print(f'{tag}: training {iters} iterations' + (f' from iteration {resumed_from}' if resumed_from else '')
          + f' (log: {work_dir / "train.log"})', flush=True)
    wall = train(config_file, work_dir, work_dir / 'train.log', resume=resumed_from is not None)
    scalars = merged_scalars(work_dir)
    if not scalars.finished(iters):
        raise RuntimeError(f'{tag}: {work_dir} has no training record of iteration {iters} with a time, or no '
                           'validation record after it')
    result = dict(
        study=study, setting=setting.name, description=setting.description, seed=seed, iters=iters,
        config=f'configs/{setting.config}', changes=setting.changes, config_sha256=digest,
        metrics=scalars.box_metrics(), all_metrics=scalars.metrics, no_detections=scalars.no_detections,
        median_seconds_per_iter=scalars.median_seconds_per_iter, wall_seconds=round(wall, 1),
        resumed_from_iter=resumed_from, date=datetime.now().strftime('%Y-%m-%d'), machine=machine_description(),
        commit=git_commit(), command=reproduce_command(study, setting.name, seed, args.iters_given, args.quick,
                                                          args.results_dir),
        steps=scalars.steps, loss=scalars.loss)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=1) + '\n')
    return result


# ---------------------------------------------------------------------------------------------- tables


def read_results(results_dir: Path, study: Study) -> List[dict]:
    """Every result JSON in ``results_dir`` of one of ``study``'s settings, in table order, then by seed."""
    order = {setting.name: index for index, setting in enumerate(study.settings)}
    results = [json.loads(path.read_text()) for path in sorted(results_dir.glob('*-seed*.json'))]
    results = [result for result in results if result.get('setting') in order]
    return sorted(results, key=lambda result: (order[result['setting']], result['seed']))


def summary_table(study: Study, results: Sequence[dict]) -> str:
    header = ('setting', 'seeds', *METRIC_HEADERS, 's / iter')
    lines = ['| ' + ' | '.join(header) + ' |', '|---|---|' + '---:|' * (len(header) - 2)]
    for setting in study.settings:
        runs = [result for result in results if result['setting'] == setting.name]
        if not runs:
            continue
        seconds = statistics.median(run['median_seconds_per_iter'] for run in runs)
        cells = (f'`{setting.name}`: {setting.description}', ' '.join(str(run['seed']) for run in runs),
                 *(format_mean_sd([run['metrics'][metric] for run in runs]) for metric in METRICS),
                 f'{seconds:.3f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def study_differences(study: Study, results: Sequence[dict], metric: str = METRICS[0]):
    values: Dict[str, List[float]] = {}
    for result in results:
        values.setdefault(result['setting'], []).append(result['metrics'][metric])
    return [welch_difference(setting, against, question, values[setting], values[against])
            for setting, against, question in study.comparisons if setting in values and against in values]


def per_run_table(results: Sequence[dict]) -> str:
    header = ('setting', 'seed', *METRIC_HEADERS, 's / iter', 'wall s', 'date', 'resumed from')
    lines = ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]
    for result in results:
        cells = (f'`{result["setting"]}`', str(result['seed']),
                 *(f'{result["metrics"][metric]:.3f}' for metric in METRICS),
                 f'{result["median_seconds_per_iter"]:.3f}', f'{result["wall_seconds"]:.0f}', result['date'],
                 '' if result['resumed_from_iter'] is None else str(result['resumed_from_iter']))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_report(results_dir: Path, name: str, study: Study) -> Path:
    """``results.md`` in ``results_dir``: the study's table over every result JSON there."""
    results = read_results(results_dir, study)
    machines = sorted({result['machine'] for result in results})
    dates = sorted({result['date'] for result in results})
    iters = sorted({result['iters'] for result in results})
    runs = f'{len(results)} run' + ('' if len(results) == 1 else 's')
    report = (f'# {study.title}\n\n`benchmarks/evidence.py --study {name}`: {runs} of '
              f'{", ".join(map(str, iters))} iterations, {", ".join(dates)}; {"; ".join(machines)}. COCO box '
              'metrics on the val split, mean ± sample sd over the seeds; s / iter: median of the runs\' median '
              'logged iteration times.\n\n'
              f'{summary_table(study, results)}\n\n## Differences in bbox mAP\n\n'
              f'{_differences_table(study_differences(study, results))}\n\n## Per run\n\n'
              f'{per_run_table(results)}\n')
    path = results_dir / 'results.md'
    path.write_text(report)
    return path


# ---------------------------------------------------------------------------------------------- fraction


def count_entries(pred, target, weight=None) -> Tuple[int, int]:
    """(positive entries, valid entries) of one sigmoid GHM-C call as RetinaHead makes it: ``pred`` ``(N, C)``,
    ``target`` the labels ``(N,)`` (``C`` background), ``weight`` ``(N,)`` or ``(N, C)`` with a row's validity
    in its first column (``None``: all valid). A valid row holds ``C`` entries, one of them positive unless its
    label is the background."""
    import torch
    labels = target[0] if isinstance(target, tuple) else target
    if weight is None:
        valid = torch.ones_like(labels, dtype=torch.bool)
    else:
        valid = weight.reshape(len(labels), -1)[:, 0] > 0
    return int(((labels < pred.shape[-1]) & valid).sum()), int(valid.sum()) * pred.shape[-1]


def positive_fraction(config: Path, num_images: int = 40) -> dict:
    """The share of the classification entries that are positive in ``config``'s training: over its first
    ``num_images`` training images (in the data loader's order, one batch at a time), the positives that the
    head's GHM-C sees divided by its valid entries (valid anchors x classes), from the arguments of every
    GHM-C call of the loss. Untrained weights: RetinaNet's assignment does not depend on them."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from ghm_mmdet.models.losses import GHMC
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    import importlib
    for module in cfg.custom_imports['imports']:
        importlib.import_module(module)
    model = MODELS.build(cfg.model)
    counts = dict(positives=0, valid_entries=0, images=0, objects=0)

    def count(module, inputs):
        positives, valid_entries = count_entries(*inputs[:3])
        counts['positives'] += positives
        counts['valid_entries'] += valid_entries

    hooks = [module.register_forward_pre_hook(count) for module in model.modules() if isinstance(module, GHMC)]
    if not hooks:
        raise ValueError(f'{config} has no GHMC loss to count the entries of')
    loader_cfg = dict(cfg.train_dataloader, num_workers=0, persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    model.train()
    with torch.no_grad():
        for data in loader:
            data = model.data_preprocessor(data, training=True)
            counts['images'] += len(data['data_samples'])
            counts['objects'] += sum(len(sample.gt_instances) for sample in data['data_samples'])
            model.loss(data['inputs'], data['data_samples'])
            if counts['images'] >= num_images:
                break
    for hook in hooks:
        hook.remove()
    return dict(counts, config=str(config), fraction=counts['positives'] / counts['valid_entries'],
                positives_per_image=counts['positives'] / counts['images'],
                objects_per_image=counts['objects'] / counts['images'],
                valid_entries_per_image=counts['valid_entries'] / counts['images'])


# ---------------------------------------------------------------------------------------------- command


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='evidence.py', description=__doc__.splitlines()[0])
    parser.add_argument('--study', choices=list(STUDIES), required=True)
    parser.add_argument('--settings', nargs='+', metavar='SETTING',
                        help="settings to run, in table order (default: all of the study's)")
    parser.add_argument('--seeds', nargs='+', type=int,
                        help="randomness.seed of the runs (default: the study's, 0 1 2 or 1 2 3 for regime)")
    parser.add_argument('--iters', type=int, help="iterations per run (default: the config's); the schedule is "
                        'scaled to it')
    parser.add_argument('--out-dir', type=Path, help='where work dirs and checkpoints go (default: '
                        'work_dirs/evidence, or work_dirs/evidence_quick with --quick)')
    parser.add_argument('--results-dir', type=Path, help='where the run JSONs and results.md go (default: '
                        'docs/results/STUDY, or OUT_DIR/results/STUDY with --quick or --out-dir)')
    parser.add_argument('--quick', action='store_true', help=f"smoke check: the study's quick settings, seed 0, "
                        f'{QUICK_ITERS} iterations, on the small set of compare_losses.py --quick')
    parser.add_argument('--report', action='store_true',
                        help='write RESULTS_DIR/results.md from the JSONs there, and train nothing')
    parser.add_argument('--positive-fraction', action='store_true',
                        help="measure the share of positive classification entries of the study's configs "
                        "(and the demo's) over 40 training images, write it to RESULTS_DIR/positive_fraction.json, "
                        'and train nothing')
    args = parser.parse_args(argv)
    study = STUDIES[args.study]
    names = [setting.name for setting in study.settings]
    if args.settings is not None:
        unknown = [name for name in args.settings if name not in names]
        if unknown:
            parser.error(f'--settings: {", ".join(unknown)} not in study {args.study} (its settings: '
                         f'{", ".join(names)})')
        args.settings = [name for name in names if name in args.settings]
    else:
        args.settings = list(study.quick_settings) if args.quick else names
    if args.seeds is None:
        args.seeds = [0] if args.quick else list(study.seeds)
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f'--seeds must be distinct non-negative ints, got {args.seeds}')
    if args.iters is not None and args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    args.iters_given = args.iters
    if args.iters is None and args.quick:
        args.iters = QUICK_ITERS
    custom_out = args.out_dir is not None
    if args.out_dir is None:
        args.out_dir = Path('work_dirs') / ('evidence_quick' if args.quick else 'evidence')
    if args.results_dir is None:
        args.results_dir = (args.out_dir / 'results' / args.study if custom_out
                            else default_results_dir(args.study, args.quick))
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    study = STUDIES[args.study]
    if args.positive_fraction:
        # The study's configs, and the demo's for reference.
        configs = sorted({setting.config for setting in study.settings} | {'retinanet_ghm_demo.py'})
        measured = dict(date=datetime.now().strftime('%Y-%m-%d'), commit=git_commit(),
                        command=['python', 'benchmarks/evidence.py', '--study', args.study, '--positive-fraction'],
                        configs={f'configs/{config}': positive_fraction(CONFIGS / config) for config in configs})
        for values in measured['configs'].values():
            values.pop('config')
        args.results_dir.mkdir(parents=True, exist_ok=True)
        (args.results_dir / 'positive_fraction.json').write_text(json.dumps(measured, indent=1) + '\n')
        print(json.dumps(measured, indent=1))
        return
    if args.report:
        print(f'evidence: wrote {write_report(args.results_dir, args.study, study)}')
        return
    plan = [(seed, name) for seed in args.seeds for name in args.settings]
    print(f'evidence: {len(plan)} runs of study {args.study} ({", ".join(args.settings)} x seeds {args.seeds}); '
          f'results in {args.results_dir}', flush=True)
    for index, (seed, name) in enumerate(plan, 1):
        tag = f'[{index}/{len(plan)}] {name} seed {seed}'
        result = run_one(args.study, study.setting(name), seed, args, tag)
        metrics = result['metrics']
        print(f'{tag}: mAP {metrics["coco/bbox_mAP"]:.3f}, mAP@50 {metrics["coco/bbox_mAP_50"]:.3f}, '
              f'mAP_s {metrics["coco/bbox_mAP_s"]:.3f}, {result["median_seconds_per_iter"]:.3f} s/iter, '
              f'{result["wall_seconds"]:.0f} s', flush=True)
        write_report(args.results_dir, args.study, study)
    print(f'evidence: wrote {args.results_dir / "results.md"}', flush=True)


if __name__ == '__main__':
    main()
