# FCOS R50-caffe FPN GN-head 1x COCO with GHM-C (focal_plugins) as the classification loss.
# FCOS calls loss_cls(scores, labels, avg_factor=...) without label weights, where mmdet's own
# GHMC fails. FCOS regresses decoded boxes with an IoU loss, so GHM-R does not apply here.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['focal_plugins.mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type='GHMC',
            bins=30,
            momentum=0.75,
            use_sigmoid=True,
            loss_weight=1.0)))
