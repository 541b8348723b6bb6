# GHM RetinaNet on the generated demo set, trained from scratch on a CPU (time and mAP: docs/benchmarks.md).
# The GHM losses, their published settings and the clipping come unchanged from the R-50 COCO config; only
# what makes it small changes.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

# The base's import, plus the package of the demo's dataset (not loaded by `import ghm_mmdet`).
custom_imports = dict(imports=['ghm_mmdet', 'ghm_mmdet.datasets'], allow_failed_imports=False)

image_size = 160
data_root = 'data/ghm_demo/'
dataset_type = 'GHMDemoDataset'
# Shared by both splits' datasets: whichever is built first generates the whole set.
generator_cfg = dict(num_train=800, num_val=200, image_size=image_size, seed=0)
num_classes = 8
max_iters = 1500

# Three FPN levels (strides 4-16, anchors 8-50 px) for objects of 5-40 px: coarser levels would hold a
# match or two per batch, and RetinaHead normalises GHM per level, so those few boxes would carry a whole
# level's weight (with five levels GHM-R sometimes did not train: docs/benchmarks.md).
model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(0, 1, 2),
        frozen_stages=-1,
        # From scratch, BatchNorm statistics must be learnt rather than frozen.
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64], out_channels=64, start_level=0, num_outs=3),
    bbox_head=dict(
        num_classes=num_classes,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        # Square anchors only: every class's box is close to square.
        anchor_generator=dict(octave_base_scale=2, scales_per_octave=3, ratios=[1.0], strides=[4, 8, 16])))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        generator_cfg=generator_cfg,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        generator_cfg=generator_cfg,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
# The published lr, 0.01 for 16 images per batch, scaled linearly to 8: GHM is sensitive to the lr (at 0.02
# an earlier version of this model did not train where Focal Loss did: docs/benchmarks.md).
optim_wrapper = dict(optimizer=dict(lr=0.005))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min_ratio=0.01)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_last=True))
log_processor = dict(by_epoch=False, window_size=20)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=8)
