"""The demo's dataset, kept out of ``import ghm_mmdet``: configs that train on it list this package in their
``custom_imports``. :mod:`.synthetic` is framework-free; importing this package with mmdet installed also
registers :class:`GHMDemoDataset` in ``mmdet.registry.DATASETS``."""
from importlib.util import find_spec

from .synthetic import CLASSES, PALETTE, SceneStyle, class_table, generate_coco_demo, is_complete, render_scene

__all__ = ['CLASSES', 'PALETTE', 'SceneStyle', 'class_table', 'generate_coco_demo', 'is_complete', 'render_scene']

if find_spec('mmdet') is not None:
    from .demo_dataset import GHMDemoDataset  # noqa: F401  (registration side effect)
    __all__.append('GHMDemoDataset')
