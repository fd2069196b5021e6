# GHM-C + GHM-R at the GHM paper's RetinaNet settings (GHM-C bins 30, momentum 0.75;
# GHM-R mu 0.02, bins 10, momentum 0.7, loss_weight 10), kept as the paper's reference
# point. On this demo mu 0.02 is far below the scale of the box-delta residuals, so GHM-R
# starves the regression (docs/demo.md, "GHM-R: choosing mu"); retinanet_r18_synthetic_ghm.py has the
# setting that works here. The running histograms are buffers, saved in checkpoints.
_base_ = './_base_/retinanet_r18_synthetic.py'
model = dict(
    bbox_head=dict(
        loss_cls=dict(_delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)))
