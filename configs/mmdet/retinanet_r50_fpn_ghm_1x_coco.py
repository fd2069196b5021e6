# RetinaNet R50-FPN 1x COCO with GHM-C + GHM-R (focal_plugins), the GHM paper's settings:
# GHM-C bins 30, momentum 0.75; GHM-R mu 0.02, bins 10, momentum 0.7, loss_weight 10.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['focal_plugins.mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type='GHMC',
            bins=30,
            momentum=0.75,
            use_sigmoid=True,
            loss_weight=1.0),
        loss_bbox=dict(
            _delete_=True,
            type='GHMR',
            mu=0.02,
            bins=10,
            momentum=0.7,
            loss_weight=10.0)))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
