"""``GHMStatsHook``: the gradient density of every GHM loss during training, and warnings before divergence.

Switched on from a config::

    custom_hooks = [dict(type='GHMStatsHook', interval=50)]

The losses keep what their last call measured (``last_stats``, detached tensors made without a host sync);
this hook copies it to the host once every ``interval`` iterations, one sync per loss, and writes:

* scalars, through the runner's ``MessageHub`` (``train/<label>/<module path>/<name>``), so that the
  ``LoggerHook`` puts them in the text log, ``scalars.json`` and every visualizer backend;
* histograms per unit region (counts, density, beta), straight to TensorBoard when the visualizer has a
  ``TensorboardVisBackend``.

The label is the loss's ``stats_label`` (``ghm_c`` or ``ghm_r``) and the module path its name in the
model, e.g. ``ghm_c/bbox_head.loss_cls``. A head that calls a loss several times per iteration (mmdet's
``RetinaHead``, once per FPN level) is reported by its last call.
"""
import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapperDict
from torch import nn

from ghm_mmdet.core.checks import GHMArgumentError, GHMArgumentTypeError
from ghm_mmdet.models.losses.ghm_loss import _GHMLoss

#: The largest finite float16 value: a beta above it cannot be held in half precision.
FP16_MAX = 65504.0

# The upstream GHM authors' remedies for non-convergence (libuyu/GHM_Detection issues; in #6, momentum 0.9
# gave a NaN loss with bins=10 where 0.75 trained), appended to every warning.
_ADVICE = ('What the GHM authors suggest when GHM does not converge: a learning-rate warm-up (e.g. '
           "param_scheduler LinearLR over the first 500 iterations), a lower learning rate, a moving average "
           'of the density (momentum, e.g. 0.75; 0.9 diverged upstream), more bins, and gradient clipping '
           '(optim_wrapper.clip_grad=dict(max_norm=35, norm_type=2)).')


def find_ghm_losses(model: nn.Module) -> List[Tuple[str, _GHMLoss]]:
    """Every GHM loss module of ``model`` (a DDP or other mmengine model wrapper is unwrapped).

    Returns:
        list of ``(module path, module)``, in ``named_modules`` order, e.g.
        ``[('bbox_head.loss_cls', GHMC(...)), ('bbox_head.loss_bbox', GHMR(...))]``.
    """
    if is_model_wrapper(model):
        model = model.module
    return [(path, module) for path, module in model.named_modules() if isinstance(module, _GHMLoss)]


def stats_tag(path: str, module: _GHMLoss) -> str:
    """``'<stats_label>/<module path>'``, e.g. ``'ghm_c/bbox_head.loss_cls'``: the prefix of its records."""
    return f'{module.stats_label}/{path}'


@dataclass(frozen=True)
class GHMSnapshot:
    """One GHM loss call's statistics on the host (from the loss's ``last_stats``).

    Attributes:
        counts: number of valid entries in each of the ``bins`` unit regions (the gradient-norm
            histogram of that call; summed over ranks with ``sync_stats``).
        num_valid: ``N``, the number of valid entries.
        density: the gradient density beta was computed from, per region: the moving average ``acc_sum``,
            or ``counts`` with ``momentum=0``.
        beta: the harmonizing parameter per region (Eq. 6), 0 for empty regions.
        loss: the loss that call returned.
        acc_sum: the loss's moving-average buffer after the call, or None without one.
        loss_sum, loss_easy, loss_outlier: GHM-C only, when loss shares were recorded: the sums of
            ``beta_i * loss_i`` over all counted entries, over those with ``g < 0.1`` and ``g > 0.9``.
    """
    counts: Tuple[float, ...]
    num_valid: float
    density: Tuple[float, ...]
    beta: Tuple[float, ...]
    loss: float
    acc_sum: Optional[Tuple[float, ...]] = None
    loss_sum: Optional[float] = None
    loss_easy: Optional[float] = None
    loss_outlier: Optional[float] = None

    @property
    def non_empty_regions(self) -> int:
        return sum(1 for count in self.counts if count > 0)

    @property
    def largest_region_share(self) -> float:
        """Fraction of the valid entries in the fullest region (0 when there are none)."""
        return max(self.counts) / self.num_valid if self.num_valid > 0 else 0.0

    @property
    def max_beta(self) -> float:
        return max(self.beta)

    def loss_shares(self) -> Optional[Tuple[float, float]]:
        """``(easy, outlier)`` shares of the harmonized loss, or None when they were not recorded."""
        if self.loss_sum is None:
            return None
        if self.loss_sum == 0:
            return 0.0, 0.0
        return self.loss_easy / self.loss_sum, self.loss_outlier / self.loss_sum

    def scalars(self) -> Dict[str, float]:
        """The values that go to the text log, ``scalars.json`` and every visualizer backend."""
        values = dict(num_valid=self.num_valid, non_empty_regions=float(self.non_empty_regions),
                      largest_region_share=self.largest_region_share, max_beta=self.max_beta,
                      loss=self.loss)
        shares = self.loss_shares()
        if shares is not None:
            values['easy_loss_share'], values['outlier_loss_share'] = shares
        return values


_SHARE_KEYS = ('loss_sum', 'loss_easy', 'loss_outlier')


def read_snapshot(module: _GHMLoss) -> Optional[GHMSnapshot]:
    """Copy ``module.last_stats`` (and its ``acc_sum``) to the host in one transfer.

    Returns:
        :class:`GHMSnapshot`, or None when the loss has not been called since ``last_stats`` was reset.
    """
    stats = module.last_stats
    if stats is None:
        return None
    bins = module.bins
    vectors = [stats['counts'], stats['density'], stats['beta']]
    acc_sum = getattr(module, 'acc_sum', None)
    if acc_sum is not None:
        vectors.append(acc_sum)
    shares = [stats[key] for key in _SHARE_KEYS if key in stats]
    # 'loss' is a scalar except with reduction='none'; its sum is then the 'sum' reduction's value.
    scalars = [stats['num_valid'], stats['loss'].sum(), *shares]
    values = torch.cat([t.detach().reshape(-1).double() for t in (*vectors, *scalars)]).tolist()
    per_region = [tuple(values[i * bins:(i + 1) * bins]) for i in range(len(vectors))]
    num_valid, loss, *share_values = values[len(vectors) * bins:]
    return GHMSnapshot(
        counts=per_region[0], num_valid=num_valid, density=per_region[1], beta=per_region[2], loss=loss,
        acc_sum=per_region[3] if acc_sum is not None else None,
        **dict(zip(_SHARE_KEYS, share_values)))


def _uses_amp(optim_wrapper) -> bool:
    if isinstance(optim_wrapper, OptimWrapperDict):
        return any(isinstance(wrapper, AmpOptimWrapper) for wrapper in optim_wrapper.values())
    return isinstance(optim_wrapper, AmpOptimWrapper)


@HOOKS.register_module()
class GHMStatsHook(Hook):
    """Record the gradient density of every GHM loss every ``interval`` iterations, and warn before
    GHM diverges.

    Per loss, under ``<label>/<module path>/`` (e.g. ``ghm_c/bbox_head.loss_cls/``):

    * scalars ``num_valid`` (``N``), ``non_empty_regions``, ``largest_region_share``, ``max_beta``,
      ``loss`` and, for GHM-C, ``easy_loss_share`` and ``outlier_loss_share``: the shares of the
      harmonized loss ``sum_i beta_i * loss_i`` from entries with gradient norm ``g < 0.1`` and
      ``g > 0.9``. They go to the runner's ``MessageHub`` as ``train/...`` keys, so the ``LoggerHook``
      writes them (at its own interval) to the text log, ``scalars.json`` and TensorBoard.
    * TensorBoard histograms over the unit regions of ``g``: ``counts`` (valid entries per region, which
      sum to ``N``), ``density`` (the moving average ``acc_sum`` beta is computed from) and ``beta``.

    Warnings (``logging.WARNING`` in the runner's logger; each once per condition and loss):

    * the loss, the density or ``acc_sum`` is not finite;
    * one region has held at least ``collapse_share`` of the valid entries in ``collapse_intervals``
      records in a row (the density has collapsed, and beta no longer tells examples apart);
    * beta exceeds the float16 range (65504) while the optimizer wrapper is an ``AmpOptimWrapper``.

    Args:
        interval: record every ``interval`` training iterations, int >= 1.
        collapse_intervals: consecutive records at or above ``collapse_share`` before the collapse warning,
            int >= 1.
        collapse_share: fraction of the valid entries in one region counted as collapsed, in (0, 1]; 1
            means all of them. Early in a healthy RetinaNet run GHM-C's easy negatives alone nearly fill
            the first region (the prior puts them there), so raise it if the warning comes with a loss
            that falls (observations: docs/benchmarks.md).
        log_histograms: write the per-region histograms to TensorBoard (when it is a backend).
    """

    # Before LoggerHook (BELOW_NORMAL), so that an iteration's statistics are in that iteration's log.
    priority = 'NORMAL'

    def __init__(self, interval: int = 50, collapse_intervals: int = 3, collapse_share: float = 0.99,
                 log_histograms: bool = True):
        for name, value in (('interval', interval), ('collapse_intervals', collapse_intervals)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GHMArgumentError(f'{name} must be an int >= 1, got {value!r}')
        if isinstance(collapse_share, bool) or not isinstance(collapse_share, (int, float)) \
                or not 0 < collapse_share <= 1:
            raise GHMArgumentError(f'collapse_share must be a number in (0, 1], got {collapse_share!r}')
        if not isinstance(log_histograms, bool):
            raise GHMArgumentTypeError(f'log_histograms must be a bool, got {log_histograms!r}')
        self.interval = interval
        self.collapse_intervals = collapse_intervals
        self.collapse_share = float(collapse_share)
        self.log_histograms = log_histograms
        self._losses: List[Tuple[str, _GHMLoss]] = []
        self._collapsed_records: Dict[str, int] = {}
        self._warned = set()
        self._logged_keys = set()
        self._edges: Dict[str, List[float]] = {}

    def before_train(self, runner) -> None:
        self._losses = [(stats_tag(path, module), module) for path, module in find_ghm_losses(runner.model)]
        # Fixed for the run: read once, so that a record costs one transfer per loss.
        self._edges = {tag: module.edges.tolist() for tag, module in self._losses}
        if not self._losses:
            print_log('GHMStatsHook: the model has no GHM loss (GHMC or GHMR); nothing will be recorded',
                      logger=runner.logger, level=logging.WARNING)
            return
        names = ', '.join(tag for tag, _ in self._losses)
        print_log(f'GHMStatsHook: recording {names} every {self.interval} iterations',
                  logger=runner.logger)
        logger_hook = next((hook for hook in runner.hooks if isinstance(hook, LoggerHook)), None)
        if logger_hook is not None and logger_hook.interval % self.interval != 0:
            print_log(f'GHMStatsHook: GHM statistics are recorded every {self.interval} iterations and '
                      f'logged every {logger_hook.interval} (default_hooks.logger.interval): a log line '
                      'shows the statistics of the last recorded iteration', logger=runner.logger)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        for _, module in self._losses:
            module.record_loss_shares = True
            # Reset, so that a loss not called in this iteration is not reported with an old call.
            module.last_stats = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        step = runner.iter + 1
        for tag, module in self._losses:
            module.record_loss_shares = False
            snapshot = read_snapshot(module)
            if snapshot is None:
                continue
            self._write(runner, tag, snapshot, step)
            self._check(runner, tag, module, snapshot, step)

    def after_train(self, runner) -> None:
        for _, module in self._losses:
            module.record_loss_shares = False

    # ------------------------------------------------------------------ writing

    def _write(self, runner, tag: str, snapshot: GHMSnapshot, step: int) -> None:
        for name, value in snapshot.scalars().items():
            key = f'{tag}/{name}'
            # resumed=False: a value belongs to one iteration and has no use in a checkpoint.
            runner.message_hub.update_scalar(f'train/{key}', value, resumed=False)
            self._log_as_recorded(runner, key)
        if self.log_histograms and is_main_process():
            writer = self._tensorboard_writer(runner)
            if writer is not None:
                for name, values in (('counts', snapshot.counts), ('density', snapshot.density),
                                     ('beta', snapshot.beta)):
                    write_region_histogram(writer, f'{tag}/{name}', values, self._edges[tag], step)

    def _log_as_recorded(self, runner, key: str) -> None:
        """Have the LogProcessor log ``key``'s latest record, never a mean over records.

        LogProcessor averages every key matching its ``mean_pattern`` (by default anything containing
        'loss', as every GHM module path does) over ``window_size`` updates; for these keys that would be
        ``window_size`` records, ``interval`` iterations apart. A ``custom_cfg`` entry with a window of 1
        overrides that, whatever the pattern.
        """
        if key in self._logged_keys:
            return
        self._logged_keys.add(key)
        processor = runner.log_processor
        custom_cfg = getattr(processor, 'custom_cfg', None)
        if custom_cfg is None:
            return
        if any(cfg.get('data_src') == key or cfg.get('log_name') == key for cfg in custom_cfg):
            return  # the user chose how to log it
        # A new list: a config may give a tuple, and the user's own object stays as it was.
        processor.custom_cfg = [*custom_cfg, dict(data_src=key, method_name='mean', window_size=1)]

    @staticmethod
    def _tensorboard_writer(runner):
        backend = runner.visualizer.get_backend('TensorboardVisBackend')
        return None if backend is None else backend.experiment

    # ------------------------------------------------------------------ warnings

    def _check(self, runner, tag: str, module: _GHMLoss, snapshot: GHMSnapshot, step: int) -> None:
        problems = []
        if not math.isfinite(snapshot.loss):
            problems.append(f'the loss is not finite ({snapshot.loss})')
        for what, values in (('the moving-average density acc_sum', snapshot.acc_sum),
                             ('the density', snapshot.density)):
            if values is not None and not all(map(math.isfinite, values)):
                problems.append(f'{what} is not finite ({", ".join(f"{v:.4g}" for v in values)})')
                break
        if problems:
            self._warn(runner, tag, module, 'non-finite', step, ' and '.join(problems))
        if snapshot.largest_region_share >= self.collapse_share:
            runs = self._collapsed_records.get(tag, 0) + 1
        else:
            runs = 0
        self._collapsed_records[tag] = runs
        if runs >= self.collapse_intervals:
            share = snapshot.largest_region_share
            region = snapshot.counts.index(max(snapshot.counts))
            self._warn(runner, tag, module, 'collapse', step,
                       f'the gradient density has collapsed: one unit region (#{region} of {module.bins}) '
                       f'held at least {self.collapse_share:.1%} of the valid entries ({share:.2%} now) in '
                       f'{runs} records in a row, every {self.interval} iterations, so beta hardly '
                       'distinguishes examples any more')
        if snapshot.max_beta > FP16_MAX and _uses_amp(runner.optim_wrapper):
            self._warn(runner, tag, module, 'fp16-beta', step,
                       f'beta reaches {snapshot.max_beta:.0f}, beyond the float16 range ({FP16_MAX:.0f}), '
                       'while AMP is on: the entries of the sparsest regions get gradients that overflow '
                       'half precision once the loss is scaled')

    def _warn(self, runner, tag: str, module: _GHMLoss, condition: str, step: int, message: str) -> None:
        if (tag, condition) in self._warned:
            return
        self._warned.add((tag, condition))
        settings = f'(this loss: bins={module.bins}, momentum={module.momentum})'
        print_log(f'GHMStatsHook: {tag} at iteration {step}: {message}. {_ADVICE} {settings}',
                  logger=runner.logger, level=logging.WARNING)


def write_region_histogram(writer, tag: str, values, edges, step: int) -> None:
    """One value per unit region as a TensorBoard histogram whose buckets are the regions.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        tag: the histogram's name.
        values: ``bins`` numbers (counts, density or beta per region).
        edges: ``bins + 1`` region edges; the last (above 1 so that ``g = 1`` is counted) is shown as 1.
        step: global step.
    """
    values = [float(value) for value in values]
    edges = [float(edge) for edge in edges]
    edges[-1] = min(edges[-1], 1.0)
    centres = [(low + high) / 2 for low, high in zip(edges[:-1], edges[1:])]
    # TensorBoard draws bucket k from bucket_limit[k-1] (min for the first) to bucket_limit[k] (max for
    # the last), so min and max are the gradient-norm range, and sum / sum_squares use region centres.
    writer.add_histogram_raw(
        tag, min=edges[0], max=edges[-1], num=sum(values),
        sum=sum(v * c for v, c in zip(values, centres)),
        sum_squares=sum(v * c * c for v, c in zip(values, centres)),
        bucket_limits=edges[1:], bucket_counts=values, global_step=step)


__all__ = ['FP16_MAX', 'GHMSnapshot', 'GHMStatsHook', 'find_ghm_losses', 'read_snapshot', 'stats_tag',
           'write_region_histogram']
