"""The multi-seed loss comparison on the demo data: box mAP and iteration time of the demo RetinaNet under
each loss setting.

Every setting trains ``configs/retinanet_ghm_demo.py`` (or, for ``wholebatch_ghmc_ghmr``, its whole-batch
variant) with the demo's data, schedule, learning rate and gradient clipping; only the two losses (and, for
the whole-batch setting, the head) differ. Each run is one ``tools/train.py`` subprocess on a config file
written next to its work dir (``runs/SETTING/seedN.py`` and ``runs/SETTING/seedN/``); runs go one at a
time, seed by seed (every setting for seed 0, then for seed 1, ...), so that slow drift of the machine's
speed falls on all settings alike.

    python benchmarks/compare_losses.py                   # 6 settings x seeds 0 1 2, 1500 iterations each
    python benchmarks/compare_losses.py --resume-existing # continue an interrupted comparison
    python benchmarks/compare_losses.py --quick           # smoke check: 2 settings, 1 seed, 10 iterations

Writes into ``--out-dir``: ``results.md`` (COCO box mAP, mAP@50 and mAP_s as mean ± sample sd over the
seeds, median seconds per iteration and its ratio to ``focal_l1``'s, and for the questions in
:data:`COMPARISONS` the difference in box mAP with Welch's t-test over the seeds), ``loss_curves.png``
(training loss against iteration, mean and range over seeds) and ``results.json`` (every run's numbers).
The demo data set is generated under ``data/ghm_demo/`` relative to the current directory on first use, as
by ``tools/train.py`` (``--quick`` generates and uses a small set of its own, under
``data/ghm_demo_small/``).

The time per training step, which these separate runs cannot resolve, is measured in one process by
``benchmarks/bench_overhead.py``.

Seconds per iteration are mmengine's ``time`` records (data loading, forward, backward, optimizer step and
hooks, averaged over each logging window) from the run's ``vis_data/scalars.json``; a run's figure is their
median, a setting's the median of its runs'. Runs are separate processes, so unlike
``benchmarks/bench_losses.py`` the ratio is exposed to whatever else the machine runs meanwhile.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path: the checkout's root, for benchmarks.*

from benchmarks.timing import machine_description  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRAIN_TOOL = REPO / 'tools' / 'train.py'
DEMO_CONFIG = REPO / 'configs' / 'retinanet_ghm_demo.py'
WHOLEBATCH_CONFIG = REPO / 'configs' / 'retinanet_ghm-wholebatch_demo.py'

#: The validation metrics the table reports, as mmdet's CocoMetric names them in ``scalars.json``.
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_s')
METRIC_HEADERS = ('bbox mAP', 'mAP@50', 'mAP_s')
#: The setting whose seconds per iteration the others are divided by (column "time / focal").
TIME_REFERENCE = 'focal_l1'

DEFAULT_SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
QUICK_SETTINGS = ('focal_l1', 'ghmc_ghmr')
QUICK_ITERS = 10


@dataclass(frozen=True)
class Setting:
    """One row of the table: a config file and the losses that replace its own.

    Attributes:
        name: the row's name.
        description: the losses, in words, for the report.
        config: the config file the run starts from.
        loss_cls, loss_bbox: when given, replace the head's loss dict entirely (no key of the config's
            loss survives, as with ``_delete_=True``).
        loss_types: when given, ``(cls type, bbox type)`` replace only the ``type`` of the config's losses,
            keeping every argument.
    """
    name: str
    description: str
    config: Path = DEMO_CONFIG
    loss_cls: Optional[dict] = None
    loss_bbox: Optional[dict] = None
    loss_types: Optional[Tuple[str, str]] = None


_L1 = dict(type='L1Loss', loss_weight=1.0)

SETTINGS: Dict[str, Setting] = {setting.name: setting for setting in (
    Setting('bce_l1', 'sigmoid cross-entropy + L1',
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0), loss_bbox=_L1),
    Setting('focal_l1', "Focal Loss (gamma 2, alpha 0.25) + L1: mmdet's RetinaNet",
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=_L1),
    Setting('ghmc_l1', 'GHM-C (ghm_mmdet) + L1',
            loss_cls=dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
            loss_bbox=_L1),
    Setting('ghmc_ghmr', 'GHM-C + GHM-R (ghm_mmdet): the published recipe, the demo config as it is'),
    Setting('mmdet_ghmc_ghmr', "GHM-C + GHM-R, mmdet 3.3.0's built-in classes, same arguments",
            loss_types=('MMDetGHMC', 'MMDetGHMR')),
    Setting('wholebatch_ghmc_ghmr', 'GHM-C + GHM-R, one call over all FPN levels and images '
            '(GHMRetinaHead; loss weights x 3 levels): configs/retinanet_ghm-wholebatch_demo.py',
            config=WHOLEBATCH_CONFIG),
)}


# ---------------------------------------------------------------------------------------------- configs


def build_config(setting: Setting, seed: int, iters: Optional[int] = None, small_data: bool = False):
    """The mmengine ``Config`` of one run: ``setting``'s config and losses, seed ``seed``.

    Args:
        setting: what to train.
        seed: ``randomness.seed``.
        iters: when given, the schedule is shortened (or lengthened) to this many iterations: see
            :func:`set_schedule_length`.
        small_data: train and validate on the small generated set of ``--quick``
            (:func:`use_small_data_set`) instead of the demo's.

    Returns:
        mmengine.config.Config: ready to write out (``pretty_text``) and train with ``tools/train.py``.
    """
    from mmengine.config import Config, ConfigDict
    cfg = Config.fromfile(str(setting.config))
    head = cfg.model.bbox_head
    if setting.loss_cls is not None:
        head.loss_cls = ConfigDict(setting.loss_cls)
    if setting.loss_bbox is not None:
        head.loss_bbox = ConfigDict(setting.loss_bbox)
    if setting.loss_types is not None:
        head.loss_cls.type, head.loss_bbox.type = setting.loss_types
    cfg.randomness.seed = seed
    if iters is not None:
        set_schedule_length(cfg, iters)
    if small_data:
        use_small_data_set(cfg)
    return cfg


#: The shortest phase (warm-up, decay) of a rescaled schedule. mmengine's LinearLR reaches end_factor on its
#: last iteration (end - 1), so over one iteration it never leaves start_factor, and the cosine that follows
#: (chained: it scales the lr it finds) would keep the lr at 1% of the base for the whole run.
MIN_SCHEDULER_ITERS = 2


def set_schedule_length(cfg, iters: int) -> None:
    """Make ``cfg``'s iteration-based schedule ``iters`` long, in place, keeping its shape.

    ``train_cfg.max_iters`` and ``val_interval`` (validation once, at the end) and the checkpoint interval
    become ``iters``. Every ``param_scheduler`` boundary (``begin``/``end``) is scaled by
    ``iters / max_iters``, so the warm-up keeps its share of the schedule and the cosine decay still ends at
    the last iteration; a phase that would get fewer than :data:`MIN_SCHEDULER_ITERS` gets that many.
    Logging keeps its interval unless that would give fewer than four records, then logs every
    ``iters // 4``.
    """
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    scale = iters / cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    if 'max_iters' in cfg:  # the demo's top-level variable: keep the written config self-consistent
        cfg.max_iters = iters
    boundaries = sorted({value for scheduler in cfg.param_scheduler
                         for value in (scheduler.get('begin', 0), scheduler.get('end')) if value is not None})
    scaled = {}
    for boundary in boundaries:
        value = round(boundary * scale)
        if scaled:
            value = max(value, max(scaled.values()) + MIN_SCHEDULER_ITERS)
        scaled[boundary] = value
    for scheduler in cfg.param_scheduler:
        scheduler.begin = scaled[scheduler.get('begin', 0)]
        if scheduler.get('end') is not None:
            scheduler.end = scaled[scheduler.end]
    cfg.default_hooks.checkpoint.interval = iters
    interval = cfg.default_hooks.logger.interval
    if iters < 4 * interval:
        interval = max(1, iters // 4)
        cfg.default_hooks.logger.interval = interval
        cfg.log_processor.window_size = interval


#: ``--quick``'s data: a set of its own, so that generating it and validating on it take seconds (the demo's
#: ``data/ghm_demo/`` becomes this; another config's ``data/X/`` becomes ``data/X_small/``).
SMALL_DATA_ROOT = 'data/ghm_demo_small/'
SMALL_DATA_SIZES = dict(num_train=64, num_val=32)


def use_small_data_set(cfg) -> None:
    """Point ``cfg``'s datasets and evaluators at a small generated set (:data:`SMALL_DATA_SIZES` images,
    otherwise the config's generator settings) under its ``data_root`` with ``_small`` appended
    (:data:`SMALL_DATA_ROOT` for the demo's), in place.

    The demo's 800/200 images take longer to generate and validate on than a smoke check's 2 x 10
    iterations take to train; metrics on 32 images after a few iterations mean nothing either way.
    """
    generator_cfg = dict(cfg.generator_cfg, **SMALL_DATA_SIZES)
    root = cfg.data_root.rstrip('/') + '_small/'
    cfg.data_root, cfg.generator_cfg = root, generator_cfg
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = root
        loader.dataset.generator_cfg = dict(generator_cfg)
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = root + 'annotations/' + Path(evaluator.ann_file).name


# ---------------------------------------------------------------------------------- reading the results


@dataclass
class RunScalars:
    """What one training logged in ``vis_data/scalars.json``.

    Attributes:
        steps: the iterations with a training record, ascending.
        loss: the logged total ``loss`` at each of ``steps`` (a mean over the logging window).
        seconds_per_iter: the logged ``time`` at each of ``steps`` (seconds per iteration, window mean).
        validated: whether a validation record follows the training records.
        metrics: the last validation record's ``coco/*`` values; empty when no validation ran, or when it
            found no detection at all (mmdet's ``CocoMetric`` then logs "The testing results of the whole
            dataset is empty." and returns no metric).
    """
    steps: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    seconds_per_iter: List[float] = field(default_factory=list)
    validated: bool = False
    metrics: Dict[str, float] = field(default_factory=dict)

    @property
    def median_seconds_per_iter(self) -> float:
        return statistics.median(self.seconds_per_iter) if self.seconds_per_iter else math.nan

    @property
    def no_detections(self) -> bool:
        return self.validated and not self.metrics

    def finished(self, iters: int) -> bool:
        """Trained to iteration ``iters``, with time records, then validated."""
        return (self.validated and bool(self.steps) and self.steps[-1] == iters
                and bool(self.seconds_per_iter))

    def box_metrics(self) -> Dict[str, float]:
        """The :data:`METRICS`, each 0.0 when validation found no detection (AP is 0 by definition)."""
        if self.no_detections:
            return {metric: 0.0 for metric in METRICS}
        return {metric: self.metrics[metric] for metric in METRICS}


def parse_scalars(text: str) -> RunScalars:
    """Parse the JSON lines of an mmengine ``LocalVisBackend`` ``scalars.json``.

    A training record carries ``loss`` (and ``time``, ``lr``, ...) with ``step`` = its iteration. A
    validation record has no ``loss``; it carries ``coco/bbox_mAP``... and its own ``time`` (that of a
    validation batch, not counted here), and its ``step`` is the epoch (0 in an iteration-based run, with
    ``LoggerHook``'s default ``log_metric_by_epoch=True``), so it is not used. A last line cut short (a run
    killed while writing it) is ignored; a bad line elsewhere is an error.
    """
    result = RunScalars()
    lines = [line for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if index == len(lines) - 1:
                break
            raise
        if 'loss' in record:
            result.steps.append(int(record['step']))
            result.loss.append(float(record['loss']))
            if 'time' in record:
                result.seconds_per_iter.append(float(record['time']))
        elif 'time' in record or any(key.startswith('coco/') for key in record):
            result.validated = True
            result.metrics = {key: float(value) for key, value in record.items() if key.startswith('coco/')}
    return result


def latest_scalars_file(work_dir: Path) -> Optional[Path]:
    """The ``scalars.json`` of the newest run in ``work_dir`` (mmengine names run dirs by timestamp)."""
    files = sorted(work_dir.glob('*/vis_data/scalars.json'), key=lambda path: path.parts[-3])
    return files[-1] if files else None


def finished_run(work_dir: Path, config_file: Path, config_text: str, iters: int) -> Optional[RunScalars]:
    """The scalars of a finished run in ``work_dir`` of exactly this config, or None.

    Finished: the newest run trained to ``iters`` and validated (:meth:`RunScalars.finished`). The config
    file it was trained from, ``config_file``, must hold ``config_text``, so that results of another
    setting, seed, length or data set are never reused.
    """
    scalars_file = latest_scalars_file(work_dir)
    if scalars_file is None or not config_file.is_file() or config_file.read_text() != config_text:
        return None
    scalars = parse_scalars(scalars_file.read_text())
    return scalars if scalars.finished(iters) else None


# ------------------------------------------------------------------------------------------- statistics


def mean_sd(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the sd is NaN for fewer than two values."""
    if not values:
        raise ValueError('mean_sd needs at least one value')
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return mean, sd


def format_mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """``'0.412 ± 0.008'``; a single value without the ``±`` part."""
    mean, sd = mean_sd(values)
    if math.isnan(sd):
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {sd:.{digits}f}'


#: The questions the report answers, as (setting, against, question): bbox mAP of one against the other.
COMPARISONS = (
    ('ghmc_ghmr', 'mmdet_ghmc_ghmr', "ours against mmdet's built-in GHM-C + GHM-R"),
    ('ghmc_ghmr', 'focal_l1', 'GHM-C + GHM-R (published recipe) against Focal Loss + L1'),
    ('ghmc_l1', 'focal_l1', 'GHM-C against Focal Loss, both with L1'),
    ('ghmc_ghmr', 'bce_l1', 'GHM-C + GHM-R against sigmoid cross-entropy + L1'),
    ('ghmc_ghmr', 'ghmc_l1', 'GHM-R against L1, both with GHM-C'),
    ('wholebatch_ghmc_ghmr', 'ghmc_ghmr', 'whole-batch against per-level GHM density'),
)
#: Two-sided p below which a difference is called beyond the seed-to-seed spread.
SIGNIFICANCE = 0.05


@dataclass
class Difference:
    """``setting`` minus ``against`` in one metric over the seeds, with Welch's t-test."""
    setting: str
    against: str
    question: str
    difference: float
    t: Optional[float]
    p: Optional[float]
    verdict: str


def welch_difference(setting: str, against: str, question: str, a: Sequence[float],
                     b: Sequence[float]) -> Difference:
    """Mean of ``a`` minus mean of ``b``, with Welch's unequal-variance t-test (two-sided).

    The verdict is ``'beyond the seed spread'`` for p < :data:`SIGNIFICANCE`, ``'within the seed
    spread'`` otherwise; with fewer than two runs on either side there is no spread to judge by
    (``t`` and ``p`` are None), and runs that are identical within each setting get no test either.
    """
    difference = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(setting, against, question, difference, None, None,
                          'needs two seeds or more on each side')
    if statistics.variance(a) == 0 and statistics.variance(b) == 0:
        verdict = 'identical runs' if difference == 0 else 'no seed spread to judge by'
        return Difference(setting, against, question, difference, None, None, verdict)
    from scipy.stats import ttest_ind
    result = ttest_ind(a, b, equal_var=False)
    p = float(result.pvalue)
    verdict = 'beyond the seed spread' if p < SIGNIFICANCE else 'within the seed spread'
    return Difference(setting, against, question, difference, float(result.statistic), p, verdict)


def differences(records: Sequence[dict], metric: str = METRICS[0]) -> List[Difference]:
    """:data:`COMPARISONS` whose two settings both have runs in ``records``."""
    values = {row.name: row.metrics[metric] for row in summarise(records, list(SETTINGS))}
    return [welch_difference(setting, against, question, values[setting], values[against])
            for setting, against, question in COMPARISONS if setting in values and against in values]


def differences_table(rows: Sequence[Difference]) -> str:
    header = ('question', 'setting - against', 'difference', 'Welch t', 'p', 'verdict')
    lines = ['| ' + ' | '.join(header) + ' |', '|---|---|---:|---:|---:|---|']
    for row in rows:
        t = '' if row.t is None else f'{row.t:.2f}'
        p = '' if row.p is None else f'{row.p:.3f}'
        cells = (row.question, f'`{row.setting}` - `{row.against}`', f'{row.difference:+.3f}', t, p,
                 row.verdict)
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


@dataclass
class SettingSummary:
    """One table row."""
    name: str
    runs: int
    metrics: Dict[str, List[float]]
    median_seconds_per_iter: float
    time_ratio: Optional[float]


def summarise(records: Sequence[dict], setting_names: Sequence[str]) -> List[SettingSummary]:
    """Group per-run records (as in ``results.json``) into one row per setting, in ``setting_names`` order.

    A setting's seconds per iteration is the median of its runs' medians; ``time_ratio`` divides it by
    :data:`TIME_REFERENCE`'s (None when that setting was not run).
    """
    rows = []
    for name in setting_names:
        runs = [record for record in records if record['setting'] == name]
        if not runs:
            continue
        rows.append(SettingSummary(
            name=name, runs=len(runs),
            metrics={metric: [run['metrics'][metric] for run in runs] for metric in METRICS},
            median_seconds_per_iter=statistics.median(run['median_seconds_per_iter'] for run in runs),
            time_ratio=None))
    reference = next((row for row in rows if row.name == TIME_REFERENCE), None)
    if reference is not None:
        for row in rows:
            row.time_ratio = row.median_seconds_per_iter / reference.median_seconds_per_iter
    return rows


def markdown_table(rows: Sequence[SettingSummary]) -> str:
    """The results table: one row per setting."""
    header = ('setting', 'runs', *METRIC_HEADERS, 's / iter', 'time / focal')
    lines = ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]
    for row in rows:
        ratio = '' if row.time_ratio is None else f'{row.time_ratio:.2f}'
        cells = (f'`{row.name}`', str(row.runs), *(format_mean_sd(row.metrics[m]) for m in METRICS),
                 f'{row.median_seconds_per_iter:.3f}', ratio)
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def per_run_table(records: Sequence[dict]) -> str:
    header = ('setting', 'seed', *METRIC_HEADERS, 's / iter', 'wall s')
    lines = ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]
    for record in records:
        wall = '' if record.get('wall_seconds') is None else f'{record["wall_seconds"]:.0f}'
        cells = (f'`{record["setting"]}`', str(record['seed']),
                 *(f'{record["metrics"][m]:.3f}' for m in METRICS),
                 f'{record["median_seconds_per_iter"]:.3f}', wall)
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def loss_curve(runs: Sequence[dict]) -> Tuple[List[int], List[float], List[float], List[float]]:
    """The steps every run of ``runs`` logged, with the mean, lowest and highest ``loss`` over the runs."""
    common = set(runs[0]['steps'])
    for run in runs[1:]:
        common &= set(run['steps'])
    steps = sorted(common)
    by_run = [dict(zip(run['steps'], run['loss'])) for run in runs]
    values = [[losses[step] for losses in by_run] for step in steps]
    return (steps, [statistics.fmean(v) for v in values], [min(v) for v in values],
            [max(v) for v in values])


def plot_loss_curves(records: Sequence[dict], setting_names: Sequence[str], path: Path, title: str) -> None:
    """Write ``path`` (PNG, 1200x700 px): training loss against iteration per setting, the mean over seeds
    as a line and their range as a band."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(12, 7), dpi=100)
    for name in setting_names:
        runs = [record for record in records if record['setting'] == name]
        if not runs:
            continue
        steps, means, lows, highs = loss_curve(runs)
        line, = axes.plot(steps, means, linewidth=2, label=f'{name} (n={len(runs)})')
        if len(runs) > 1:
            axes.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
    # The losses are different functions with different scales and start far above where they settle.
    axes.set_yscale('log')
    axes.set_xlabel('iteration', fontsize=13)
    axes.set_ylabel('training loss (loss_cls + loss_bbox), log scale', fontsize=13)
    axes.set_title(title, fontsize=14)
    axes.tick_params(labelsize=11)
    axes.grid(True, which='both', alpha=0.3)
    axes.legend(fontsize=12)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------- running


def run_paths(out_dir: Path, setting: str, seed: int) -> Tuple[Path, Path]:
    """A run's work dir and the config file it trains, ``runs/SETTING/seedN{/,.py}`` under ``out_dir``.

    The config file stays out of the work dir: mmengine's Runner writes its own copy of the config there,
    under the config file's name and with ``launcher`` and ``work_dir`` added.
    """
    work_dir = out_dir / 'runs' / setting / f'seed{seed}'
    return work_dir, work_dir.with_suffix('.py')


def train(config_file: Path, work_dir: Path, log_file: Path, resume: bool = False) -> float:
    """Run ``tools/train.py`` on ``config_file`` in the current directory (with mmengine's ``--resume`` from
    ``work_dir``'s last checkpoint when ``resume``, appending to ``log_file``); return its wall seconds.

    Raises:
        RuntimeError: the training failed; the message has the tail of its log.
    """
    env = dict(os.environ)
    env['PYTHONPATH'] = str(REPO) + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    command = [sys.executable, str(TRAIN_TOOL), str(config_file), '--work-dir', str(work_dir)]
    start = time.perf_counter()
    with open(log_file, 'a' if resume else 'w') as log:
        returncode = subprocess.call(command + (['--resume'] if resume else []), stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if returncode != 0:
        tail = '\n'.join(log_file.read_text(errors='replace').splitlines()[-30:])
        raise RuntimeError(f'tools/train.py {config_file} exited with {returncode}; the end of {log_file}:\n'
                           f'{tail}')
    return wall


def run_record(setting: str, seed: int, iters: int, work_dir: Path, config_file: Path, scalars: RunScalars,
               wall_seconds: Optional[float], reused: bool) -> dict:
    """One run's entry of ``results.json``: ``metrics`` has :data:`METRICS`, ``all_metrics`` every
    ``coco/*`` value logged (none when the model detected nothing: ``no_detections``)."""
    return dict(
        setting=setting, seed=seed, iters=iters, work_dir=str(work_dir), config=str(config_file),
        metrics=scalars.box_metrics(), all_metrics=scalars.metrics, no_detections=scalars.no_detections,
        median_seconds_per_iter=scalars.median_seconds_per_iter,
        wall_seconds=wall_seconds, reused=reused, steps=scalars.steps, loss=scalars.loss,
        seconds_per_iter=scalars.seconds_per_iter)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='compare_losses.py', description=__doc__.splitlines()[0])
    parser.add_argument('--settings', nargs='+', choices=list(SETTINGS), metavar='SETTING',
                        help=f'settings to run, in table order (default: all of {", ".join(SETTINGS)})')
    parser.add_argument('--seeds', nargs='+', type=int, help='randomness.seed of the runs (default: 0 1 2)')
    parser.add_argument('--iters', type=int,
                        help="iterations per run (default: the demo's 1500); the schedule is scaled to it")
    parser.add_argument('--out-dir', type=Path,
                        help='where runs and results go (default: work_dirs/compare_losses, '
                        'or work_dirs/compare_losses_quick with --quick)')
    parser.add_argument('--quick', action='store_true',
                        help=f'smoke check: settings {" ".join(QUICK_SETTINGS)}, seed {QUICK_SEEDS[0]}, '
                        f'{QUICK_ITERS} iterations (each overridden by the options above), on a small '
                        f'generated set ({SMALL_DATA_SIZES["num_train"]} + {SMALL_DATA_SIZES["num_val"]} '
                        'images)')
    parser.add_argument('--resume-existing', action='store_true',
                        help='reuse runs that already finished in --out-dir with the same config')
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds has a repeated seed: {args.seeds}')
    if args.settings is None:
        args.settings = list(QUICK_SETTINGS if args.quick else SETTINGS)
    else:  # table order, whatever order they were named in
        args.settings = [name for name in SETTINGS if name in args.settings]
    if args.seeds is None:
        args.seeds = list(QUICK_SEEDS if args.quick else DEFAULT_SEEDS)
    if args.iters is None and args.quick:
        args.iters = QUICK_ITERS
    if args.out_dir is None:
        args.out_dir = Path('work_dirs') / ('compare_losses_quick' if args.quick else 'compare_losses')
    return args


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f'{seconds:.0f} s' if minutes < 2 else f'{minutes:.0f} min'


def train_or_reuse(name: str, seed: int, iters: Optional[int], small_data: bool, out_dir: Path,
                   resume_existing: bool, tag: str) -> dict:
    """Train ``name`` with ``seed`` (or, with ``resume_existing``, reuse its finished run); its record.

    Raises:
        RuntimeError: the training failed, or did not log its last iteration and a validation after it.
    """
    work_dir, config_file = run_paths(out_dir, name, seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg = build_config(SETTINGS[name], seed, iters, small_data)
    run_iters = cfg.train_cfg.max_iters
    config_text = cfg.pretty_text
    scalars = finished_run(work_dir, config_file, config_text, run_iters) if resume_existing else None
    if scalars is not None:
        print(f'{tag}: finished earlier, reusing {work_dir}', flush=True)
        return run_record(name, seed, run_iters, work_dir, config_file, scalars, wall_seconds=None,
                          reused=True)
    config_file.write_text(config_text)
    log_file = work_dir / 'train.log'
    print(f'{tag}: training {run_iters} iterations (log: {log_file})', flush=True)
    wall = train(config_file, work_dir, log_file)
    scalars_file = latest_scalars_file(work_dir)
    scalars = parse_scalars(scalars_file.read_text()) if scalars_file else RunScalars()
    if not scalars.finished(run_iters):
        raise RuntimeError(f'{tag}: {scalars_file or work_dir} has no training record of iteration '
                           f'{run_iters} with a time, or no validation record after it')
    return run_record(name, seed, run_iters, work_dir, config_file, scalars, wall_seconds=wall, reused=False)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, 'benchmarks/compare_losses.py', *(sys.argv[1:] if argv is None else argv)]
    plan = [(seed, name) for seed in args.seeds for name in args.settings]
    print(f'compare_losses: {len(plan)} runs ({len(args.settings)} settings x seeds {args.seeds}) into '
          f'{out_dir}', flush=True)

    records, trained_walls = [], []
    for index, (seed, name) in enumerate(plan, 1):
        tag = f'[{index:>{len(str(len(plan)))}}/{len(plan)}] {name} seed {seed}'
        record = train_or_reuse(name, seed, args.iters, args.quick, out_dir, args.resume_existing, tag)
        records.append(record)
        metrics, wall = record['metrics'], record['wall_seconds']
        progress = (f'{tag}: mAP {metrics["coco/bbox_mAP"]:.3f}, mAP@50 {metrics["coco/bbox_mAP_50"]:.3f}, '
                    f'mAP_s {metrics["coco/bbox_mAP_s"]:.3f}, {record["median_seconds_per_iter"]:.3f} s/iter')
        if record['no_detections']:
            progress += ' (no detection above the score threshold: mAP 0)'
        if wall is not None:
            trained_walls.append(wall)
            progress += f', {wall:.0f} s'
        left = len(plan) - index
        if trained_walls and left:
            progress += f'; about {_duration(statistics.fmean(trained_walls) * left)} left'
        print(progress, flush=True)

    write_results(out_dir, records, args, records[0]['iters'], command)


def write_results(out_dir: Path, records: Sequence[dict], args: argparse.Namespace, iters: int,
                  command: Sequence[str]) -> None:
    """Write ``results.md``, ``results.json`` and ``loss_curves.png`` into ``out_dir``."""
    machine = machine_description()
    date = datetime.now().strftime('%Y-%m-%d')
    rows = summarise(records, args.settings)
    seeds = ' '.join(str(seed) for seed in args.seeds)
    if args.quick:
        sizes = SMALL_DATA_SIZES
        data = (f'**the small set of `--quick`** (`{SMALL_DATA_ROOT}`, {sizes["num_train"]} train / '
                f'{sizes["num_val"]} val images): a check that the comparison runs, not a result')
    else:
        data = 'the demo set (800 train / 200 val images)'
    seed_words = f'seeds {seeds}' if len(args.seeds) > 1 else f'seed {seeds}'
    title = f'Demo RetinaNet, {iters} iterations: training loss, mean and range over {seed_words}'
    descriptions = '\n'.join(f'- `{name}`: {SETTINGS[name].description}' for name in args.settings)
    no_detections = [f'`{r["setting"]}` seed {r["seed"]}' for r in records if r['no_detections']]
    notes = (f'\nNo detection above the score threshold (mAP counted as 0): {", ".join(no_detections)}.\n'
             if no_detections else '')
    compared = differences(records)
    report = (
        f'# Loss comparison on the demo data\n\n'
        f'`configs/retinanet_ghm_demo.py` ({iters} iterations per run, {seed_words}) on {data}. COCO box '
        f'metrics on the val split as mean ± sample sd over the seeds; s / iter: median of the runs\' '
        f'median logged iteration times; time / focal: that divided by `{TIME_REFERENCE}`\'s.\n'
        f'Machine: {machine}; {date}.\n\n'
        f'{markdown_table(rows)}\n\n{descriptions}\n{notes}\n'
        f'## Differences in bbox mAP\n\n'
        f'Mean of the first setting minus mean of the second over the seeds; Welch\'s t-test (unequal '
        f'variances, two-sided); "beyond the seed spread" where p < {SIGNIFICANCE}, each question on its own '
        f'(no correction for asking several).\n\n'
        f'{differences_table(compared)}\n\n## Per run\n\n{per_run_table(records)}\n')
    (out_dir / 'results.md').write_text(report)
    summary = dict(date=date, machine=machine, data=data, iters=iters, seeds=list(args.seeds),
                   settings={name: SETTINGS[name].description for name in args.settings},
                   command=list(command), runs=list(records),
                   differences=[vars(row) for row in compared])
    (out_dir / 'results.json').write_text(json.dumps(summary, indent=1) + '\n')
    plot_loss_curves(records, args.settings, out_dir / 'loss_curves.png', title)
    print(f'\n{markdown_table(rows)}\n', flush=True)
    print(f'compare_losses: wrote {out_dir / "results.md"}, {out_dir / "loss_curves.png"}, '
          f'{out_dir / "results.json"}', flush=True)


if __name__ == '__main__':
    main()
