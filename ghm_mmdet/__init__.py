"""ghm-mmdet: Gradient Harmonizing Mechanism (GHM-C, GHM-R) for MMDetection 3.x.

``import ghm_mmdet`` registers the losses, ``GHMRetinaHead`` and ``GHMStatsHook`` in mmdet's registries when
mmdet is installed, and loads nothing else. The demo's dataset registers when its config imports
:mod:`ghm_mmdet.datasets`. The framework-free core, :mod:`ghm_mmdet.core`, needs only PyTorch.
"""
from importlib.util import find_spec

from .version import __version__

if find_spec('mmdet') is not None:
    # Registration side effects: the losses and GHMRetinaHead in mmdet's MODELS, GHMStatsHook in its HOOKS.
    from . import engine, models  # noqa: F401

__all__ = ['__version__']
