"""Framework-free GHM core: plain PyTorch functions, no mmdet or mmengine import.

One call per loss, the moving-average state passed in and returned, for MMDetection (through
:mod:`ghm_mmdet.models`), Detectron2 or a hand-written training loop::

    loss_cls, acc_c = ghm_c_loss(logits, labels, valid, acc_c, bins=30, momentum=0.75)
    loss_box, acc_r = ghm_r_loss(deltas, target_deltas, weights, acc_r, mu=0.02, bins=10, momentum=0.7)

The submodules hold the building blocks the modules share; they are not part of the public API.
"""
from .checks import GHMArgumentError, GHMArgumentTypeError
from .density import GHMState
from .losses import ghm_c_loss, ghm_c_softmax_loss, ghm_r_loss
from .warm_start import warm_start_ghm_weights

__all__ = [
    'ghm_c_loss', 'ghm_c_softmax_loss', 'ghm_r_loss', 'warm_start_ghm_weights', 'GHMState',
    'GHMArgumentError', 'GHMArgumentTypeError'
]
