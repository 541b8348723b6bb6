# FCOS with GHM-C on the generated demo set: the demo's data, backbone, neck, schedule, lr and clipping
# (retinanet_ghm_demo.py), FCOS's GN head at the demo's scale, and GHM-C (the published settings) in place of
# its Focal Loss, where upstream users saw GHM-C fail (libuyu/GHM_Detection#22). The IoU and centerness losses
# stay. benchmarks/evidence.py trains it against Focal Loss.
_base_ = './retinanet_ghm_demo.py'

model = dict(
    type='FCOS',
    bbox_head=dict(
        _delete_=True,
        type='FCOSHead',
        num_classes={{_base_.num_classes}},
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        strides=[4, 8, 16],
        # The largest distance from a point to a box side each level regresses: boxes of up to about 16, 32 and
        # more pixels, as the anchors of the RetinaNet demo's levels.
        regress_ranges=((-1, 8), (8, 16), (16, 1e8)),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_cls=dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(_delete_=True, assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4),
                   allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(
        _delete_=True, nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))
