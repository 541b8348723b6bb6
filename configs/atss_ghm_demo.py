# ATSS with GHM-C on the generated demo set: the demo's data, backbone, neck, schedule, lr and clipping
# (retinanet_ghm_demo.py), ATSS's head at the demo's scale, and GHM-C (the published settings) in place of its
# Focal Loss. The GIoU and centerness losses stay. benchmarks/evidence.py trains it against Focal Loss.
_base_ = './retinanet_ghm_demo.py'

model = dict(
    type='ATSS',
    bbox_head=dict(
        _delete_=True,
        type='ATSSHead',
        num_classes={{_base_.num_classes}},
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        # One square anchor per position, 8-32 px over strides 4-16, for objects of 5-40 px.
        anchor_generator=dict(
            type='AnchorGenerator', ratios=[1.0], octave_base_scale=2, scales_per_octave=1, strides=[4, 8, 16]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(
        _delete_=True, assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(
        _delete_=True, nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))
