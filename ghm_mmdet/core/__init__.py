"""Framework-free GHM core: plain PyTorch functions, no mmdet or mmengine import.

Usable from MMDetection (through :mod:`ghm_mmdet.models`), Detectron2 or a hand-written training loop.
"""
from .checks import REDUCTIONS
from .density import (GHMC_LAST_EDGE, GHMR_LAST_EDGE, bin_counts, bin_indices, ema_density,
                      gather_weights, harmonizing_weights_per_bin, unit_region_edges,
                      warm_start_density, warm_start_weights_per_bin)
from .gradient_norm import asl1_gradient_norm, asl1_loss, sigmoid_gradient_norm
from .harmonize import HarmonizedWeights, harmonizing_weights
from .label_bce import harmonized_label_bce, label_bin_indices, weighted_label_bce
from .warm_start import WarmStartState, warm_start_ghm_weights

__all__ = [
    'REDUCTIONS', 'GHMC_LAST_EDGE', 'GHMR_LAST_EDGE', 'bin_counts', 'bin_indices', 'ema_density',
    'gather_weights', 'harmonizing_weights_per_bin', 'unit_region_edges', 'warm_start_density',
    'warm_start_weights_per_bin', 'asl1_gradient_norm', 'asl1_loss', 'sigmoid_gradient_norm',
    'HarmonizedWeights', 'harmonizing_weights', 'harmonized_label_bce', 'label_bin_indices',
    'weighted_label_bce', 'WarmStartState', 'warm_start_ghm_weights'
]
