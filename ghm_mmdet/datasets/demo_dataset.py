"""MMDetection glue for the synthetic demo set: a COCO dataset that writes its data on first use."""
from typing import Optional

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from .synthetic import CLASSES, PALETTE, SceneStyle, class_table, generate_coco_demo


@DATASETS.register_module()
class GHMDemoDataset(CocoDataset):
    """:class:`~mmdet.datasets.CocoDataset` over :func:`ghm_mmdet.datasets.synthetic.generate_coco_demo`.

    Before loading ``ann_file`` it generates the whole set (both splits) under ``data_root`` if no complete
    set is there, so a config needs no download step. Ranks that build it at once are safe (the generator
    writes atomically), and a set already on disk that was made with other ``generator_cfg`` is an error.

    mmengine's ``ValLoop``/``TestLoop`` build their dataloader before their evaluator, so a ``CocoMetric``
    pointed at ``data_root/annotations/val.json`` finds the file when it is constructed.

    Args:
        data_root: directory of the set; required.
        generator_cfg: keyword arguments of ``generate_coco_demo`` other than ``root`` (``num_train``,
            ``num_val``, ``image_size``, ``seed``, and ``style`` as a dict of
            :class:`~ghm_mmdet.datasets.synthetic.SceneStyle` fields). Defaults are the generator's. With a
            ``style`` of other than 8 classes, and no ``metainfo`` given, the classes and palette are
            ``class_table(num_classes)``'s.
        *args, **kwargs: as for ``CocoDataset`` (``ann_file``, ``data_prefix``, ``pipeline``, ...).
    """

    METAINFO = dict(classes=CLASSES, palette=list(PALETTE))

    def __init__(self, *args, data_root: str = '', generator_cfg: Optional[dict] = None, **kwargs):
        if not data_root:
            raise ValueError('GHMDemoDataset needs data_root: the directory to generate the demo set in')
        generator_cfg = dict(generator_cfg or {})
        if 'root' in generator_cfg:
            raise ValueError('generator_cfg must not set root; the set is generated under data_root')
        if isinstance(generator_cfg.get('style'), dict):
            generator_cfg['style'] = SceneStyle.from_dict(generator_cfg['style'])
        generate_coco_demo(data_root, **generator_cfg)
        style = generator_cfg.get('style') or SceneStyle()
        if style.num_classes != len(CLASSES) and kwargs.get('metainfo') is None:
            names, colours, _ = class_table(style.num_classes)
            kwargs['metainfo'] = dict(classes=names, palette=[tuple(c) for c in colours])
        super().__init__(*args, data_root=data_root, **kwargs)
