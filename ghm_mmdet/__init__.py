"""ghm-mmdet: Gradient Harmonizing Mechanism (GHM-C, GHM-R) for MMDetection 3.x.

``import ghm_mmdet`` registers the losses, ``GHMRetinaHead`` and the demo dataset in mmdet's registries
when mmdet is installed. The framework-free core, :mod:`ghm_mmdet.core`, needs only PyTorch.
"""
from importlib.util import find_spec

from .version import __version__

if find_spec('mmdet') is not None:
    from . import datasets, models  # noqa: F401  (registration side effect)
    from . import engine  # noqa: F401  (registers GHMStatsHook in mmdet's HOOKS)

__all__ = ['__version__']
