"""The detectron2 half of the environment check: detectron2's own shipped model-zoo configs
build here and train one step on the CPU (loss finite, gradients non-zero).

RetinaNet and Faster R-CNN come from their YACS yaml configs, FCOS from its LazyConfig (the
only form detectron2 0.6 ships it in). Random init (MODEL.WEIGHTS = ""), small images.
"""
import math
import os

import pytest
import torch

pytestmark = pytest.mark.slow

d2 = pytest.importorskip("detectron2")

from detectron2.config import LazyConfig, get_cfg, instantiate  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

IMAGE_SIZE = 128


def _model_zoo_file(rel):
    # The files that detectron2.model_zoo.get_config_file returns, located without importing
    # detectron2.model_zoo, which needs pkg_resources (checked on its own below).
    path = os.path.join(os.path.dirname(d2.__file__), "model_zoo", "configs", rel)
    assert os.path.isfile(path), f"detectron2 ships no model-zoo config {rel}"
    return path


def test_model_zoo_api_importable():
    # detectron2's model_zoo.py (0.6, and main as of mid-2026) does `import pkg_resources`,
    # which setuptools >= 81 no longer provides. Users reach the shipped configs through this
    # module, so the environment must keep it importable (setuptools < 81).
    try:
        from detectron2 import model_zoo
    except ModuleNotFoundError as err:  # pragma: no cover - environment defect
        pytest.fail(f"import detectron2.model_zoo failed ({err}); pin setuptools<81 for detectron2")
    path = model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    assert os.path.samefile(path, _model_zoo_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml"))


def _batch(num_classes, seed=0):
    """Two BGR images of IMAGE_SIZE x IMAGE_SIZE, each with two ground-truth boxes."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for i in range(2):
        image = torch.randint(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE), generator=g).float()
        inst = Instances((IMAGE_SIZE, IMAGE_SIZE))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 70.0, 90.0], [40.0, 30.0, 120.0, 100.0]]))
        inst.gt_classes = torch.tensor([i % num_classes, (i + 3) % num_classes])
        batch.append({"image": image, "instances": inst, "height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return batch


def _train_step(model, batch):
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert losses, "the model returned no losses"
    total = sum(losses.values())
    for name, value in losses.items():
        assert torch.isfinite(value).all(), f"{name} = {value}"
    assert math.isfinite(total.item())
    model.zero_grad()
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads, "no parameter received a gradient"
    grad_norm = torch.stack([g.norm() for g in grads]).norm()
    assert torch.isfinite(grad_norm) and grad_norm > 0, f"gradient norm {grad_norm}"
    # One SGD step must change the weights (gradients reach trainable parameters).
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    torch.optim.SGD(params, lr=0.01).step()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, params))
    return losses


def _yaml_model(config_path):
    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.merge_from_file(_model_zoo_file(config_path))
    cfg.MODEL.WEIGHTS = ""  # random init, no download
    cfg.MODEL.DEVICE = "cpu"
    return cfg, build_model(cfg)


@pytest.mark.parametrize(
    "config_path, expected_keys",
    [
        ("COCO-Detection/retinanet_R_50_FPN_1x.yaml", {"loss_cls", "loss_box_reg"}),
        (
            "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
            {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"},
        ),
    ],
)
def test_model_zoo_yaml_trains_one_step(config_path, expected_keys):
    cfg, model = _yaml_model(config_path)
    num_classes = (
        cfg.MODEL.RETINANET.NUM_CLASSES
        if cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
        else cfg.MODEL.ROI_HEADS.NUM_CLASSES
    )
    losses = _train_step(model, _batch(num_classes))
    assert set(losses) == expected_keys


def _gn_norm(channels):
    """GroupNorm(32, c) where 32 divides c, else GroupNorm(1, c) (see below)."""
    return torch.nn.GroupNorm(32 if channels % 32 == 0 else 1, channels)


def test_model_zoo_fcos_lazyconfig_trains_one_step():
    cfg = LazyConfig.load(_model_zoo_file("COCO-Detection/fcos_R_50_FPN_1x.py"))
    assert cfg.model.head.norm == "GN"
    torch.manual_seed(0)
    try:
        model = instantiate(cfg.model)
    except ValueError as err:
        # detectron2 0.6's RetinaNetHead (FCOSHead's base) probes the norm with
        # get_norm(norm, 1), i.e. GroupNorm(32, 1), which current torch rejects. Only in that
        # case we pass a callable norm that builds the same GroupNorm(32, c) for the head's
        # 256-channel layers and survives the 1-channel probe. detectron2's main branch probes
        # with 32 channels and builds the stock config unchanged.
        assert "divisible by num_groups" in str(err), err
        cfg.model.head.norm = _gn_norm
        torch.manual_seed(0)
        model = instantiate(cfg.model)
    gns = [m for m in model.head.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert gns and all(m.num_groups == 32 for m in gns), "FCOS head must keep GN(32)"
    losses = _train_step(model, _batch(cfg.model.num_classes))
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
