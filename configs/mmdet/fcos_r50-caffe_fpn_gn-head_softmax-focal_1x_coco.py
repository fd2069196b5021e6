# FCOS R50-caffe FPN GN-head 1x COCO with a softmax focal classifier (focal_plugins): the head
# predicts num_classes + 1 scores per point (last = background); alpha 0.25 on foreground
# points, 0.75 on background ones.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['focal_plugins.mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type='SoftmaxFocalLoss',
            use_sigmoid=False,
            gamma=2.0,
            alpha=0.25,
            alpha_mode='paper',
            loss_weight=1.0)))
# The classifier starts at the softmax prior, background 1 - bias_prob = 0.99 and each class
# 0.01 / num_classes: SoftmaxFocalLoss sets it from the head's own num_classes and bias_prob
# (focal_plugins.mmdet.heads), so a config inheriting this one with another num_classes needs
# nothing more. For another prior: init_cfg=dict(type='Normal', layer='Conv2d', std=0.01,
# override=dict(type='SoftmaxPriorInit', name='conv_cls', std=0.01, num_classes=C,
# background_prob=P)) (focal_plugins.mmdet.init).
