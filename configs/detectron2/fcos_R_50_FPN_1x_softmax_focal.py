# LazyConfig: detectron2's model-zoo FCOS R50-FPN 1x with softmax focal loss (num_classes + 1
# scores per location, background last). GroupNorm(32) factory: see fcos_R_50_FPN_1x_ghm.py.
from detectron2.config import LazyCall as L

from focal_plugins.detectron2 import (
    FocalPluginsFCOS, GroupNormFactory, build_loss, get_model_zoo_config)

_base = get_model_zoo_config("COCO-Detection/fcos_R_50_FPN_1x.py")
dataloader, optimizer, lr_multiplier, train = (
    _base.dataloader, _base.optimizer, _base.lr_multiplier, _base.train)
model = _base.model
model._target_ = FocalPluginsFCOS
model.head.norm = L(GroupNormFactory)(num_groups=32)
model.cls_loss = L(build_loss)(name="SoftmaxFocalLoss", gamma=2.0, alpha=0.25)
model.head.num_classes = 81  # model.num_classes + 1
