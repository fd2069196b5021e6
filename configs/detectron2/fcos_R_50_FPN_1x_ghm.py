# LazyConfig: detectron2's model-zoo FCOS R50-FPN 1x with GHM-C as classification loss
# (FCOS's GIoU box loss and centerness loss are kept). The head's norm is a GroupNorm(32)
# factory that builds on current torch, where the stock norm="GN" fails in detectron2 0.6.
from detectron2.config import LazyCall as L

from focal_plugins.detectron2 import (
    FocalPluginsFCOS, GroupNormFactory, build_loss, get_model_zoo_config)

_base = get_model_zoo_config("COCO-Detection/fcos_R_50_FPN_1x.py")
dataloader, optimizer, lr_multiplier, train = (
    _base.dataloader, _base.optimizer, _base.lr_multiplier, _base.train)
model = _base.model
model._target_ = FocalPluginsFCOS
model.head.norm = L(GroupNormFactory)(num_groups=32)
model.cls_loss = L(build_loss)(name="GHMC", bins=30, momentum=0.75, loss_weight=1.0)
model.box_loss = None  # detectron2's GIoU
