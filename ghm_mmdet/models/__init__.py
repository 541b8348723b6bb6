"""MMDetection glue: registers ghm_mmdet's modules in ``mmdet.registry.MODELS``.

mmdet's own losses are imported first and ours are registered with ``force=True``, so ``GHMC``/``GHMR``
build our classes whatever the import order, and mmdet's GHM configs need only ``custom_imports``.
"""
import logging

import mmdet.models.losses  # noqa: F401  (registers mmdet's built-in GHMC/GHMR before we replace them)
from mmdet.models.losses.ghm_loss import GHMC as MMDetGHMC
from mmdet.models.losses.ghm_loss import GHMR as MMDetGHMR
from mmdet.registry import MODELS
from mmengine.logging import print_log

from .dense_heads import GHMRetinaHead, WholeBatchLossMixin
from .losses import GHMC, GHMR

for _module in (GHMC, GHMR, GHMRetinaHead):
    MODELS.register_module(name=_module.__name__, module=_module, force=True)
# mmdet's originals stay reachable under other names, for comparisons (benchmarks/compare_losses.py).
MODELS.register_module(name='MMDetGHMC', module=MMDetGHMC, force=True)
MODELS.register_module(name='MMDetGHMR', module=MMDetGHMR, force=True)
print_log("ghm_mmdet: GHMC and GHMR in mmdet's MODELS registry now build ghm_mmdet.models.losses "
          "(mmdet's built-ins stay available as MMDetGHMC/MMDetGHMR); GHMRetinaHead registered",
          logger='current', level=logging.DEBUG)

__all__ = ['GHMC', 'GHMR', 'GHMRetinaHead', 'WholeBatchLossMixin']
