# RTMDet-tiny with quality-target GHM-C on the generated demo set: RTMDet-tiny's model (BN in place of SyncBN, no
# pretrained backbone) with the demo's data pipeline (no Mosaic or MixUp), schedule, SGD lr and clipping
# (retinanet_ghm_demo.py), and GHM-C (the published bins and momentum) in place of QualityFocalLoss with the
# reduction RTMDetHead needs ('sum': it divides by the sum of its assignment metrics). The GIoU loss stays.
# benchmarks/evidence.py trains it against QualityFocalLoss.
_base_ = './retinanet_ghm_demo.py'

norm_cfg = dict(type='BN')
model = dict(
    type='RTMDet',
    _delete_=True,
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], bgr_to_rgb=False,
        batch_augments=None),
    backbone=dict(
        type='CSPNeXt', arch='P5', expand_ratio=0.5, deepen_factor=0.167, widen_factor=0.375, channel_attention=True,
        norm_cfg=norm_cfg, act_cfg=dict(type='SiLU', inplace=True)),
    neck=dict(
        type='CSPNeXtPAFPN', in_channels=[96, 192, 384], out_channels=96, num_csp_blocks=1, expand_ratio=0.5,
        norm_cfg=norm_cfg, act_cfg=dict(type='SiLU', inplace=True)),
    bbox_head=dict(
        type='RTMDetSepBNHead',
        num_classes={{_base_.num_classes}},
        in_channels=96,
        stacked_convs=2,
        feat_channels=96,
        anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[8, 16, 32]),
        bbox_coder=dict(type='DistancePointBBoxCoder'),
        loss_cls=dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0, reduction='sum'),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        with_objectness=False,
        exp_on_reg=False,  # RTMDet-tiny's
        share_conv=True,
        pred_kernel_size=1,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='SiLU', inplace=True)),
    train_cfg=dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13), allowed_border=-1, pos_weight=-1,
                   debug=False),
    # The demo's evaluation, as for the other heads (RTMDet's own keeps 300 boxes above 0.001).
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=100))
