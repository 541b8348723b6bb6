"""The head matrix of ``test_head_matrix.py``: which config puts GHM into which head, and the helpers that
build each model small enough for the CPU and run it on a fixed two-image batch.

Only what makes a model runnable on a CPU without downloads changes here (the backbone's ImageNet
``init_cfg``, and the score threshold when predicting): the architecture and the losses are the configs'.
"""
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import mmdet
import torch
from mmdet.models.losses.ghm_loss import GHMC as MMDetGHMC
from mmdet.models.losses.ghm_loss import GHMR as MMDetGHMR
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine import Config
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import ghm_mmdet  # noqa: F401  (registers GHMC/GHMR)

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'

# The published RetinaNet-GHM settings (mmdet's configs/ghm), and softmax GHM-C for the RoI head.
GHMC_RECIPE = dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)
GHMR_RECIPE = dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)
SOFTMAX_GHMC = dict(type='GHMC', use_sigmoid=False, bins=30, momentum=0.75, loss_weight=1.0)
GHM_CLIP_GRAD = dict(max_norm=35, norm_type=2)

# mmdet's own GHMC/GHMR under names of their own (ghm_mmdet takes over 'GHMC'/'GHMR').
BUILTIN_NAMES = {'GHMC': 'MMDetGHMC', 'GHMR': 'MMDetGHMR'}


@dataclass(frozen=True)
class Entry:
    """One head of the matrix.

    config: file under ``configs/``, or ``None`` for a family tested on ``base`` with ``losses`` (and the
    model paths of ``other_changes``) set by the test. base: the mmdet config it inherits. losses:
    model-relative dotted path of each loss the config replaces -> its loss dict. other_changes:
    config-relative dotted path -> value, for whatever else the config changes. layers: model-relative
    names of the head layers whose weights must get a gradient. builtin_failure: where mmdet's built-in
    GHM loss cannot run on this head, the exception it raises and a pattern of its message. epoch: the
    epoch mmengine's message hub reports (TOODHead uses its initial_loss_cls until its initial_epoch).
    no_reference: why no mmdet loss computes the same numbers, where none does. scale: how many times larger
    than ``IMAGE_SHAPES`` the images (and their boxes) are, for heads that need more positions than the
    matrix's small images give.
    """
    config: Optional[str]
    base: str
    losses: Dict[str, dict]
    layers: Tuple[str, ...]
    other_changes: Dict[str, object] = field(default_factory=dict)
    builtin_failure: Optional[Tuple[type, str]] = None
    epoch: int = 0
    no_reference: Optional[str] = None
    scale: int = 1

    @property
    def two_stage(self) -> bool:
        return any(path.startswith('roi_head.') for path in self.losses)

    @property
    def heads(self) -> Tuple[str, ...]:
        """Model-relative names of the heads that hold a GHM loss."""
        return tuple(sorted({path.rsplit('.', 1)[0] for path in self.losses}))


TWO_STAGE_GHM = {'rpn_head.loss_cls': GHMC_RECIPE, 'rpn_head.loss_bbox': GHMR_RECIPE,
                 'roi_head.bbox_head.loss_bbox': GHMR_RECIPE}
TWO_STAGE_LAYERS = ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls',
                    'roi_head.bbox_head.fc_reg')

ENTRIES = {
    'retinanet-9anchors': Entry(
        config='retinanet_ghm_r50_fpn_1x_coco.py',
        base='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE, 'bbox_head.loss_bbox': GHMR_RECIPE},
        other_changes={'optim_wrapper.clip_grad': GHM_CLIP_GRAD},
        layers=('bbox_head.retina_cls', 'bbox_head.retina_reg')),
    'retinanet-1anchor': Entry(
        config='retinanet_ghm_r50_fpn_1-anchor_1x_coco.py',
        base='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
        # At batch 1 with one anchor, AnchorHead hands GHM-C a non-contiguous (H * W, C) view of the
        # scores of each level (its permute + reshape needs no copy then).
        losses={'bbox_head.loss_cls': GHMC_RECIPE, 'bbox_head.loss_bbox': GHMR_RECIPE},
        other_changes={'optim_wrapper.clip_grad': GHM_CLIP_GRAD,
                       'model.bbox_head.anchor_generator.scales_per_octave': 1,
                       'model.bbox_head.anchor_generator.ratios': [1.0]},
        layers=('bbox_head.retina_cls', 'bbox_head.retina_reg')),
    'atss': Entry(
        config='atss_ghm_r50_fpn_1x_coco.py',
        base='mmdet::atss/atss_r50_fpn_1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.atss_cls',)),
    'fcos': Entry(
        config='fcos_ghm_r50-caffe_fpn_gn-head_1x_coco.py',
        base='mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.conv_cls',),
        # FCOSHead calls loss_cls(scores, labels, avg_factor=...): no label weights, which mmdet's
        # GHMC requires as a positional argument.
        builtin_failure=(TypeError, 'label_weight')),
    'faster-rcnn': Entry(
        config='faster-rcnn_ghm_r50_fpn_1x_coco.py',
        base='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        losses=TWO_STAGE_GHM,
        layers=TWO_STAGE_LAYERS),
    'faster-rcnn-softmax': Entry(
        config='faster-rcnn_ghm-softmax_r50_fpn_1x_coco.py',
        base='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        losses={**TWO_STAGE_GHM, 'roi_head.bbox_head.loss_cls': SOFTMAX_GHMC},
        layers=TWO_STAGE_LAYERS),
    # Quality targets: (labels, scores) for QualityFocalLoss, which mmdet's GHMC cannot take.
    'rtmdet-tiny': Entry(
        config='rtmdet-tiny_ghm_8xb32-300e_coco.py',
        base='mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
        losses={'bbox_head.loss_cls': dict(GHMC_RECIPE, reduction='sum')},
        # Every level's classifier; the stride-8 regressor has no positive among these 30-150 px boxes.
        layers=('bbox_head.rtm_cls.0', 'bbox_head.rtm_cls.1', 'bbox_head.rtm_cls.2', 'bbox_head.rtm_reg.1',
                'bbox_head.rtm_reg.2'),
        builtin_failure=(AttributeError, "'tuple' object has no attribute 'dim'")),
    'gfl': Entry(
        config='gfl_ghm_r50_fpn_1x_coco.py',
        base='mmdet::gfl/gfl_r50_fpn_1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.gfl_cls', 'bbox_head.gfl_reg'),
        # GFLHead passes its label weights as weight=, which mmdet's GHMC does not take.
        builtin_failure=(TypeError, 'label_weight')),
    'tood': Entry(
        config='tood_ghm_r50_fpn_1x_coco.py',
        base='mmdet::tood/tood_r50_fpn_1x_coco.py',
        losses={'bbox_head.loss_cls': dict(GHMC_RECIPE, activated=True, reduction='sum')},
        layers=('bbox_head.tood_cls', 'bbox_head.tood_reg'),
        builtin_failure=(AttributeError, "'tuple' object has no attribute 'dim'"),
        epoch=4),  # its initial_epoch: from here on TOODHead calls loss_cls
    # Broadcast weights: YOLOv3 weighs its (N, A, C) class scores with (N, A, 1).
    'yolov3': Entry(
        config='yolov3_ghm_d53_8xb8-ms-608-273e_coco.py',
        base='mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py',
        losses={'bbox_head.loss_cls': dict(GHMC_RECIPE, reduction='sum')},
        layers=tuple(f'bbox_head.convs_pred.{level}' for level in range(3)),
        builtin_failure=(TypeError, 'label_weight')),
    # The other families users train, on mmdet's own configs with the classification loss replaced (as in the
    # RetinaNet recipe, GHM-C's own N normalises; YOLOX sums, as its cross-entropy, and divides itself).
    'vfnet': Entry(
        config=None, base='mmdet::vfnet/vfnet_r50_fpn_1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},  # soft IoU targets of the scores' shape
        layers=('bbox_head.vfnet_cls', 'bbox_head.vfnet_reg'),
        builtin_failure=(TypeError, 'label_weight')),
    'yolox': Entry(
        config=None, base='mmdet::yolox/yolox_tiny_8xb8-300e_coco.py',
        losses={'bbox_head.loss_cls': dict(GHMC_RECIPE, reduction='sum'),
                'bbox_head.loss_obj': dict(GHMC_RECIPE, reduction='sum')},
        # Its random batch resizing would give ours and the reference other batches.
        other_changes={'model.data_preprocessor.batch_augments': None},
        layers=('bbox_head.multi_level_conv_cls.2', 'bbox_head.multi_level_conv_obj.0'),  # stride 32 holds positives
        builtin_failure=(TypeError, 'label_weight')),
    'yolof': Entry(
        config=None, base='mmdet::yolof/yolof_r50-c5_8xb8-1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.cls_score', 'bbox_head.bbox_pred')),
    'reppoints': Entry(
        config=None, base='mmdet::reppoints/reppoints-moment_r50_fpn_1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.reppoints_cls_out', 'bbox_head.reppoints_pts_refine_out')),
    'foveabox': Entry(
        config=None, base='mmdet::foveabox/fovea_r50_fpn_4xb4-1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.conv_cls', 'bbox_head.conv_reg'),
        builtin_failure=(TypeError, 'label_weight')),
    # The DETR family calls the loss once per decoder layer (d0.loss_cls ...): each call updates the average.
    'paa': Entry(
        config=None, base='mmdet::paa/paa_r50_fpn_1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},  # its Gaussian mixture re-assigns on the loss: scikit-learn
        layers=('bbox_head.atss_cls', 'bbox_head.atss_reg')),
    'ddod': Entry(
        config=None, base='mmdet::ddod/ddod_r50_fpn_1x_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.atss_cls', 'bbox_head.atss_reg'),
        scale=3),  # its deformable 3x3 convolutions need stride 128's map to be at least 3 x 3
    'cascade-rcnn': Entry(
        config=None, base='mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
        # Every loss_cls: the RPN's sigmoid and the three stages' softmax cross-entropy.
        losses={'rpn_head.loss_cls': GHMC_RECIPE, **{f'roi_head.bbox_head.{stage}.loss_cls': SOFTMAX_GHMC
                                                     for stage in range(3)}},
        layers=('rpn_head.rpn_cls', 'rpn_head.rpn_reg',
                *(f'roi_head.bbox_head.{stage}.{layer}' for stage in range(3) for layer in ('fc_cls', 'fc_reg')))),
    'detr': Entry(
        config=None, base='mmdet::detr/detr_r50_8xb2-150e_coco.py',
        losses={'bbox_head.loss_cls': SOFTMAX_GHMC},
        layers=('bbox_head.fc_cls', 'bbox_head.fc_reg'),
        no_reference='mmdet has no softmax GHM-C, and DETR divides its cross-entropy by its own avg_factor '
                     '(positives + 0.1 x negatives), which GHM-C replaces by N'),
    'deformable-detr': Entry(
        config=None, base='mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.cls_branches.0',)),  # shared by the decoder layers (no box refinement)
    'dino': Entry(
        config=None, base='mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
        # Once per decoder layer, for the encoder's proposals, and again for the denoising queries of each layer.
        losses={'bbox_head.loss_cls': GHMC_RECIPE},
        layers=('bbox_head.cls_branches.0', 'bbox_head.cls_branches.5', 'bbox_head.cls_branches.6'),
        scale=2),  # it selects 900 queries from the encoder's positions: 426 at the matrix's size
}
FSAF_BASE = 'mmdet::fsaf/fsaf_r50_fpn_1x_coco.py'

# Two images of different sizes (the second is padded, so some anchors are invalid), boxes 30-90 px.
IMAGE_SHAPES = ((128, 160), (112, 144))
GT_BOXES = (((10.0, 12.0, 70.0, 80.0), (60.0, 40.0, 150.0, 120.0), (20.0, 88.0, 52.0, 124.0)),
            ((8.0, 8.0, 100.0, 60.0), (50.0, 50.0, 130.0, 108.0)))
GT_LABELS = ((0, 17, 56), (2, 2))


def _key(root, key: str):
    """``key`` as an index where ``root`` is a list (Cascade R-CNN's ``bbox_head``), else as it is."""
    return int(key) if isinstance(root, (list, tuple)) else key


def get_path(root, dotted: str):
    for key in dotted.split('.'):
        root = root[_key(root, key)] if isinstance(root, (dict, list, tuple)) else getattr(root, key)
    return root


def set_path(root: dict, dotted: str, value) -> None:
    *parents, last = dotted.split('.')
    for key in parents:
        root = root[_key(root, key)]
    root[_key(root, last)] = value


def register_builtins() -> None:
    """mmdet's GHMC/GHMR under 'MMDetGHMC'/'MMDetGHMR', unless ghm_mmdet already registered them."""
    for name, module in (('MMDetGHMC', MMDetGHMC), ('MMDetGHMR', MMDetGHMR)):
        if name not in MODELS.module_dict:
            MODELS.register_module(name=name, module=module)


def config_path(path: str) -> Path:
    """A file under ``configs/``, or ``mmdet::x`` resolved to mmdet's copy of its config ``x`` (read
    directly: mmengine's ``get_config`` parses every metafile of mmdet first, about a second)."""
    if path.startswith('mmdet::'):
        return Path(mmdet.__file__).parent / '.mim' / 'configs' / path[len('mmdet::'):]
    return CONFIG_DIR / path


def cpu_config(path: str) -> Config:
    """The config at ``path`` (see :func:`config_path`), with no ImageNet download."""
    cfg = Config.fromfile(config_path(path))
    cfg.model.backbone.init_cfg = None
    return cfg


def entry_config(entry: Entry) -> Config:
    """The entry's config on the CPU: its file, or its base with its losses and model changes set."""
    if entry.config is not None:
        return cpu_config(entry.config)
    cfg = cpu_config(entry.base)
    for path, loss in entry.losses.items():
        set_path(cfg.model, path, loss)
    for path, value in entry.other_changes.items():
        set_path(cfg, path, value)
    return cfg


def reference_model_cfg(entry: Entry, model_cfg) -> Tuple[dict, dict]:
    """(ours, reference) model configs for the comparison with mmdet: the reference has mmdet's built-in
    GHMC/GHMR in place of ours; softmax GHM-C, which mmdet lacks, becomes one bin with no moving average
    in ours and mmdet's softmax cross-entropy in the reference (the same loss: beta = N / N = 1)."""
    ours = copy.deepcopy(model_cfg)
    reference = copy.deepcopy(model_cfg)
    for path, loss in entry.losses.items():
        if loss.get('use_sigmoid', True):  # mmdet's GHMC has no activated option
            set_path(reference, path, {k: v for k, v in dict(loss, type=BUILTIN_NAMES[loss['type']]).items()
                                       if k != 'activated'})
        else:
            set_path(ours, path, dict(loss, bins=1, momentum=0.0))
            set_path(reference, path, dict(type='CrossEntropyLoss', use_sigmoid=False,
                                           loss_weight=loss['loss_weight']))
    return ours, reference


def build(model_cfg) -> torch.nn.Module:
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def batch(batch_size: int, scale: int = 1) -> dict:
    """The first ``batch_size`` of the two images with their boxes, ``scale`` times larger, as a data loader
    gives them."""
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for shape, boxes, labels in list(zip(IMAGE_SHAPES, GT_BOXES, GT_LABELS))[:batch_size]:
        height, width = (scale * side for side in shape)
        boxes = [[scale * coordinate for coordinate in box] for box in boxes]
        inputs.append(torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes), labels=torch.tensor(labels))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def run_loss(model: torch.nn.Module, batch_size: int, parameter_prefixes: Tuple[str, ...], epoch: int = 0,
             scale: int = 1):
    """Loss mode and backward on :func:`batch` (at ``scale``), at ``epoch`` as the message hub reports it.
    Returns the loss dict (detached) and the gradient of every parameter whose name starts with one of
    ``parameter_prefixes``."""
    MessageHub.get_current_instance().update_info('epoch', epoch)
    model.train()
    model.zero_grad(set_to_none=True)
    data = model.data_preprocessor(batch(batch_size, scale), training=True)
    torch.manual_seed(0)  # the samplers of two-stage heads draw from it
    losses = model.loss(data['inputs'], data['data_samples'])
    total, _ = model.parse_losses(losses)
    total.backward()
    grads = {name: param.grad.detach().clone() for name, param in model.named_parameters()
             if name.startswith(parameter_prefixes) and param.grad is not None}
    model.zero_grad(set_to_none=True)
    detached = {key: [v.detach() for v in value] if isinstance(value, list) else value.detach()
                for key, value in losses.items()}
    return detached, grads


def loss_values(losses: dict):
    """(name, tensor) for every tensor in a loss dict, list entries named ``name[i]``."""
    for key, value in losses.items():
        if isinstance(value, list):
            yield from ((f'{key}[{i}]', v) for i, v in enumerate(value))
        else:
            yield key, value

