"""Gradient norms of every GHM loss of a detector over a few training batches, as histograms.

A forward pre-hook on each GHM loss module captures the exact inputs of every call (all FPN levels of a
per-level head, every batch) and passes them to the loss's ``gradient_norm``; only histograms are kept,
so memory does not grow with the number of batches.
"""
import contextlib
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_state_dict
from mmengine.utils import import_modules_from_strings
from torch import Tensor, nn

from ghm_mmdet.apis import load_checkpoint_safely
from ghm_mmdet.core.density import bin_indices, harmonizing_weights_per_bin
from ghm_mmdet.engine import find_ghm_losses

#: Regions of the fine gradient-norm histogram (the paper's Fig. 1), whatever the losses' own ``bins``.
FINE_BINS = 100


@dataclass
class GradientNormHistogram:
    """Gradient norms of one GHM loss module, summed over all its calls.

    Attributes:
        label: ``'ghm_c'`` or ``'ghm_r'`` (the loss's ``stats_label``).
        path: the module's name in the model, e.g. ``'bbox_head.loss_cls'``.
        edges: ``(bins + 1,)`` float64 edges of the loss's unit regions (last one as the loss has it).
        region_counts: ``(bins,)`` float64 number of counted entries per unit region.
        region_norm_sums: ``(bins,)`` float64 sum of the gradient norms ``g`` in each unit region.
        fine_counts: ``(FINE_BINS,)`` float64 counts over ``FINE_BINS`` equal regions of [0, 1].
        calls: number of loss calls recorded.

    Counted entries are the valid ones with a finite ``g`` (the entries the loss itself counts).
    """
    label: str
    path: str
    edges: Tensor
    region_counts: Optional[Tensor] = None
    region_norm_sums: Optional[Tensor] = None
    fine_counts: Tensor = field(default_factory=lambda: torch.zeros(FINE_BINS, dtype=torch.float64))
    calls: int = 0

    def __post_init__(self):
        self.edges = self.edges.detach().double().cpu()
        bins = self.edges.numel() - 1
        if self.region_counts is None:
            self.region_counts = torch.zeros(bins, dtype=torch.float64)
        if self.region_norm_sums is None:
            self.region_norm_sums = torch.zeros(bins, dtype=torch.float64)

    @property
    def bins(self) -> int:
        return self.edges.numel() - 1

    @property
    def num_counted(self) -> float:
        """``N``: the number of counted entries over all calls."""
        return float(self.region_counts.sum())

    def add(self, gradient_norm: Tensor, valid: Tensor) -> None:
        """Add one call's entries.

        Args:
            gradient_norm: ``(M,)`` float gradient norms ``g`` from the loss's ``gradient_norm``.
            valid: ``(M,)`` bool, which entries the loss counts.
        """
        g = gradient_norm.detach().reshape(-1).float()
        counted = valid.reshape(-1) & torch.isfinite(g)
        g = torch.where(counted, g, torch.zeros_like(g))
        index = bin_indices(g, self.edges.to(g.device, torch.float32), counted).long()
        per_region = torch.bincount(index, minlength=self.bins + 1)[:self.bins]
        norm_sums = torch.bincount(index, weights=g.double(), minlength=self.bins + 1)[:self.bins]
        fine_index = (g * FINE_BINS).long().clamp_(0, FINE_BINS - 1)
        fine_index = torch.where(counted, fine_index, torch.full_like(fine_index, FINE_BINS))
        fine = torch.bincount(fine_index, minlength=FINE_BINS + 1)[:FINE_BINS]
        self.region_counts += per_region.double().cpu()
        self.region_norm_sums += norm_sums.cpu()
        self.fine_counts += fine.double().cpu()
        self.calls += 1

    def harmonizing_weights(self) -> Tensor:
        """Beta per unit region from the pooled counts: ``N / (count_k * n)``, ``n`` the number of
        non-empty regions (Eq. 6-8 with no moving average, as the losses compute it with
        ``momentum=0``); 0 for empty regions.

        Returns:
            ``(bins,)`` float64; ``sum_k beta_k * count_k = N``.
        """
        counts = self.region_counts
        return harmonizing_weights_per_bin(counts, counts, counts.sum().clamp(min=1.0))


@contextlib.contextmanager
def record_gradient_norms(model: nn.Module) -> Iterator[Dict[str, GradientNormHistogram]]:
    """Inside the block, every call of a GHM loss of ``model`` adds its gradient norms to a histogram.

    Yields:
        dict from ``'<label>/<module path>'`` (e.g. ``'ghm_c/bbox_head.loss_cls'``) to
        :class:`GradientNormHistogram`, filled as the losses are called.
    """
    histograms: Dict[str, GradientNormHistogram] = {}
    handles = []
    for path, module in find_ghm_losses(model):
        histogram = GradientNormHistogram(module.stats_label, path, module.edges)
        histograms[f'{module.stats_label}/{path}'] = histogram

        def capture(module, args, kwargs, histogram=histogram):
            with torch.no_grad():
                histogram.add(*module.gradient_norm(*args, **kwargs))

        handles.append(module.register_forward_pre_hook(capture, with_kwargs=True))
    try:
        yield histograms
    finally:
        for handle in handles:
            handle.remove()


def build_model(cfg: Config, checkpoint: Optional[str] = None, device: Optional[str] = None) -> nn.Module:
    """The config's model in train mode, initialised as the Runner does or loaded from ``checkpoint``.

    The checkpoint is read with :func:`ghm_mmdet.apis.load_checkpoint_safely` (weights only).
    """
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    if checkpoint is None:
        model.init_weights()
    else:
        loaded = load_checkpoint_safely(checkpoint, map_location='cpu')
        state_dict = loaded.get('state_dict', loaded) if isinstance(loaded, dict) else loaded
        state_dict = {key[len('module.'):] if key.startswith('module.') else key: value
                      for key, value in state_dict.items()}
        load_state_dict(model, state_dict, strict=False, logger='current')
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    return model.to(device).train()


def collect_gradient_statistics(cfg: Config, checkpoint: Optional[str] = None, num_batches: int = 4,
                                device: Optional[str] = None) -> Dict[str, GradientNormHistogram]:
    """Run ``num_batches`` training batches through the model's losses and histogram their gradient norms.

    The model is built from ``cfg`` (at initialisation, or from ``checkpoint``), the batches come from
    ``cfg.train_dataloader`` (training augmentations included), and the losses are computed in train mode
    without gradients. Nothing is written back: the model and its GHM buffers are discarded.

    Args:
        cfg: a loaded mmdet config whose model has GHM losses.
        checkpoint: optional checkpoint path; None plots the model at initialisation.
        num_batches: how many training batches, int >= 1.
        device: ``'cpu'``, ``'cuda'``...; by default CUDA when available.

    Returns:
        dict from ``'<label>/<module path>'`` to :class:`GradientNormHistogram`.

    Raises:
        ValueError: ``num_batches`` < 1, or the model has no GHM loss.
    """
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f'num_batches must be an int >= 1, got {num_batches!r}')
    if cfg.get('custom_imports', None):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = build_model(cfg, checkpoint, device)
    if not find_ghm_losses(model):
        raise ValueError('the model of this config has no GHM loss (GHMC or GHMR): nothing to plot')
    seed = (cfg.get('randomness', None) or {}).get('seed', None)
    dataloader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    with record_gradient_norms(model) as histograms, torch.no_grad():
        for _, batch in zip(range(num_batches), dataloader):
            data = model.data_preprocessor(batch, training=True)
            model(**data, mode='loss')
    return histograms


def describe_source(config: str, checkpoint: Optional[str]) -> str:
    """``'<config file> (<checkpoint file>)'``, or ``'(initialisation)'`` without a checkpoint."""
    return f'{osp.basename(config)} ({osp.basename(checkpoint) if checkpoint else "initialisation"})'
