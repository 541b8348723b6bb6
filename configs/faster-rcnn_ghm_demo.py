# Faster R-CNN with GHM everywhere on the generated demo set: the demo's data, backbone, neck, schedule, lr and
# clipping (retinanet_ghm_demo.py), the RPN and RoI heads at the demo's scale, GHM-C + GHM-R (the published
# settings) in the RPN and softmax GHM-C + GHM-R in the RoI head. benchmarks/evidence.py trains it against
# Faster R-CNN's own cross-entropy + L1.
_base_ = './retinanet_ghm_demo.py'

ghm_c = dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)
ghm_r = dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)
model = dict(
    type='FasterRCNN',
    _delete_=True,
    data_preprocessor={{_base_.model.data_preprocessor}},
    backbone={{_base_.model.backbone}},
    neck={{_base_.model.neck}},
    rpn_head=dict(
        type='RPNHead',
        in_channels=64,
        feat_channels=64,
        # The RetinaNet demo's anchors: three square ones of 8-50 px over strides 4-16.
        anchor_generator=dict(
            type='AnchorGenerator', ratios=[1.0], octave_base_scale=2, scales_per_octave=3, strides=[4, 8, 16]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=ghm_c,
        loss_bbox=ghm_r),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=64,
            featmap_strides=[4, 8, 16]),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=64,
            fc_out_channels=256,
            roi_feat_size=7,
            num_classes={{_base_.num_classes}},
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='GHMC', use_sigmoid=False, bins=30, momentum=0.75, loss_weight=1.0),
            loss_bbox=ghm_r)),
    # Faster R-CNN's own assigners and samplers (mmdet's faster-rcnn_r50_fpn), with the proposals (COCO: 2000 per
    # level before NMS, 1000 after, for 200k anchors; here 6,240) and RoIs per image (512) cut to the demo's scale:
    # NMS and RoIAlign dominate a CPU step.
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=500, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                          match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))
