# GHM RetinaNet on the synthetic demo set, trained from scratch on CPU in a few minutes.
#
# The losses, their published settings (GHM-C bins=30 momentum=0.75, GHM-R mu=0.02 bins=10 momentum=0.7
# loss_weight=10) and gradient clipping at 35 come unchanged from the R-50 COCO config; what changes is
# what makes it small: a narrow ResNet-18 without pretrained weights, a light FPN and head, 160 px images
# generated on first use under data/ghm_demo (no download), and an iteration-based schedule.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet', 'ghm_mmdet.datasets'], allow_failed_imports=False)

image_size = 160
data_root = 'data/ghm_demo/'
dataset_type = 'GHMDemoDataset'
# Shared by both splits' datasets: whichever is built first generates the whole set.
generator_cfg = dict(num_train=400, num_val=100, image_size=image_size, seed=0)
num_classes = 8
max_iters = 600

model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,
        frozen_stages=-1,
        # From scratch, BatchNorm statistics must be learnt rather than frozen.
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64, start_level=0, num_outs=5),
    bbox_head=dict(
        num_classes=num_classes,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        # Objects are 5-40 px: anchors from 8 px at stride 4, and square ones, since all shapes are.
        anchor_generator=dict(octave_base_scale=2, scales_per_octave=3, ratios=[1.0],
                              strides=[4, 8, 16, 32, 64])),
    test_cfg=dict(nms_pre=1000, score_thr=0.05, max_per_img=100))

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
optim_wrapper = dict(optimizer=dict(lr=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min_ratio=0.01)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_last=True))
log_processor = dict(by_epoch=False, window_size=20)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=8)
