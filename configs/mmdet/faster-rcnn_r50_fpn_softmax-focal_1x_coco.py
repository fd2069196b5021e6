# Faster R-CNN R50-FPN 1x COCO with a softmax focal loss (focal_plugins) in the RoI box head
# over num_classes + 1 scores. No alpha: the RoI sampler already fixes the foreground share
# (25%). The RPN keeps its shipped loss.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['focal_plugins.mmdet'], allow_failed_imports=False)

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type='SoftmaxFocalLoss',
                use_sigmoid=False,
                gamma=2.0,
                alpha=None,
                loss_weight=1.0))))
