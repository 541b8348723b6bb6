# RetinaNet ResNeXt-101 64x4d-FPN, 1x schedule on COCO, with GHM-C and GHM-R (arXiv:1811.05181) in place of Focal Loss
# and L1: the recipe of mmdet 3.3's configs/ghm/retinanet_x101-64x4d_fpn_ghm-1x_coco.py (published box AP 41.4),
# trained with ghm_mmdet's losses. Everything except the two losses and gradient clipping comes from mmdet.
_base_ = 'mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: FocalLoss's gamma/alpha and L1Loss's keys must not leak into the GHM losses.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(
            _delete_=True, type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)))

# Part of the published GHM recipe (mmdet's configs/ghm): clip the global gradient norm at 35.
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
