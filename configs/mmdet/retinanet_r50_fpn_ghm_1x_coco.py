# RetinaNet R50-FPN 1x COCO with GHM-C + GHM-R (focal_plugins), the GHM paper's settings:
# GHM-C bins 30, momentum 0.75; GHM-R mu 0.02, bins 10, momentum 0.7, loss_weight 10.
# GHM-R mu 0.02 is the GHM paper's, for 12-epoch COCO with target stds 1 (mmdet's model zoo
# reports RetinaNet R-50 GHM at AP 37.0; not measured here). mu is in the box coder's units
# and must fit the residuals of your data and schedule: on the demo 0.02 fails and 0.1 works.
# Check with python -m focal_plugins.tools.ghmr_mu (docs/demo.md, "GHM-R: choosing mu").
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
