"""The paper's figures of gradient density (arXiv:1811.05181, Fig. 1-3) from :class:`GradientNormHistogram`s.

Drawn with matplotlib's object-oriented API on the headless Agg canvas: no display and no pyplot state.
"""
import os
import os.path as osp
from typing import Dict, List

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .gradient_statistics import FINE_BINS, GradientNormHistogram

#: Figure size in inches and resolution: 1000 x 600 pixels.
FIGSIZE = (10, 6)
DPI = 100

_NAMES = {'ghm_c': 'GHM-C', 'ghm_r': 'GHM-R'}
_GRADIENT_NORM_AXIS = {
    'ghm_c': 'gradient norm g = |p - p*| (dimensionless)',
    'ghm_r': 'gradient norm gr = |d| / sqrt(d^2 + mu^2) (dimensionless)',
}


def _new_axes(title: str, xlabel: str, ylabel: str):
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xlim(0, 1)
    axes.set_yscale('log')
    axes.grid(True, which='major', alpha=0.3)
    return figure, axes


def _save(figure: Figure, axes, path: str) -> str:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc='best')
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    return path


def _entries(histogram: GradientNormHistogram) -> str:
    return (f'{histogram.path}: N = {histogram.num_counted:,.0f} entries from {histogram.calls} '
            f'call{"s" if histogram.calls != 1 else ""}')


def _region_edges(histogram: GradientNormHistogram) -> torch.Tensor:
    edges = histogram.edges.clone()
    edges[-1] = min(float(edges[-1]), 1.0)  # the last edge sits above 1 only so that g = 1 is counted
    return edges


def _density_figure(label: str, histograms: List[GradientNormHistogram], source: str, path: str) -> str:
    figure, axes = _new_axes(f'{_NAMES[label]} gradient norm density (Fig. 1): {source}',
                             _GRADIENT_NORM_AXIS[label],
                             f'fraction of examples per {1 / FINE_BINS:g} of gradient norm (log)')
    fine_edges = torch.linspace(0, 1, FINE_BINS + 1)
    for histogram in histograms:
        fraction = histogram.fine_counts / max(histogram.num_counted, 1.0)
        axes.stairs(fraction.numpy(), fine_edges.numpy(), label=_entries(histogram))
    return _save(figure, axes, path)


def _contribution_figure(label: str, histograms: List[GradientNormHistogram], source: str,
                         path: str) -> str:
    figure, axes = _new_axes(f'{_NAMES[label]} gradient contribution per unit region (Fig. 2/3): {source}',
                             _GRADIENT_NORM_AXIS[label],
                             'summed gradient norm of the region / N (log)')
    for histogram in histograms:
        total = max(histogram.num_counted, 1.0)
        edges = _region_edges(histogram).numpy()
        before = histogram.region_norm_sums / total
        after = histogram.harmonizing_weights() * histogram.region_norm_sums / total
        line = axes.stairs(before.numpy(), edges, linestyle='--',
                           label=f'before harmonizing, {_entries(histogram)}')
        axes.stairs(after.numpy(), edges, color=line.get_edgecolor(),
                    label=f'after harmonizing (x beta, {histogram.bins} unit regions), {histogram.path}')
    return _save(figure, axes, path)


def _reformulated_figure(label: str, histograms: List[GradientNormHistogram], source: str,
                         path: str) -> str:
    figure, axes = _new_axes(f'{_NAMES[label]} reformulated gradient norm (Fig. 2): {source}',
                             _GRADIENT_NORM_AXIS[label], 'reformulated gradient norm beta(g) * g (log)')
    identity = torch.linspace(1 / FINE_BINS, 1, FINE_BINS)
    axes.plot(identity.numpy(), identity.numpy(), color='grey', linestyle=':',
              label='before harmonizing (beta = 1)')
    for histogram in histograms:
        counts = histogram.region_counts
        non_empty = counts > 0
        mean_norm = histogram.region_norm_sums[non_empty] / counts[non_empty]
        beta = histogram.harmonizing_weights()[non_empty]
        axes.plot(mean_norm.numpy(), (beta * mean_norm).numpy(), marker='o',
                  label=f'beta(g) * g, mean g of each non-empty region, {_entries(histogram)}')
    return _save(figure, axes, path)


def plot_gradient_density(histograms: Dict[str, GradientNormHistogram], out_dir: str,
                          source: str) -> List[str]:
    """Write three PNG figures (1000 x 600 px) per GHM loss type to ``out_dir``.

    Per label (``ghm_c``, ``ghm_r``; every module of that label on the same axes):

    * ``<label>_gradient_norm_density.png``: fraction of examples against the gradient norm, log scale
      (the paper's Fig. 1);
    * ``<label>_gradient_contribution.png``: per unit region, the summed gradient norm before
      harmonizing and after multiplying by beta, divided by ``N``, log scale (Fig. 2/3: harmonizing
      evens out the regions' total contributions);
    * ``<label>_reformulated_gradient_norm.png``: ``beta(g) * g`` against ``g`` (Fig. 2), with the
      un-harmonized ``g`` for reference.

    Beta is that of Eq. 6-8 on the pooled counts (no moving average); see
    :meth:`GradientNormHistogram.harmonizing_weights`.

    Args:
        histograms: from :func:`~ghm_mmdet.analysis.collect_gradient_statistics`.
        out_dir: created if missing.
        source: what the figures show, for the titles (e.g. from :func:`describe_source`).

    Returns:
        The paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    by_label: Dict[str, List[GradientNormHistogram]] = {}
    for histogram in histograms.values():
        by_label.setdefault(histogram.label, []).append(histogram)
    written = []
    for label in sorted(by_label):
        group = by_label[label]
        for name, draw in (('gradient_norm_density', _density_figure),
                           ('gradient_contribution', _contribution_figure),
                           ('reformulated_gradient_norm', _reformulated_figure)):
            written.append(draw(label, group, source, osp.join(out_dir, f'{label}_{name}.png')))
    return written
