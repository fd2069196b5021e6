"""The detectron2 adapter: config keys and validation, every shipped config trains a step,
overrides change the loss computed, equality with stock RetinaNet, LazyConfig overrides."""
import glob
import os

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.config import get_cfg as d2_get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

import focal_plugins.detectron2 as fpd2  # noqa: E402
from focal_plugins.detectron2 import (  # noqa: E402
    FocalPluginsRPN, add_focal_plugins_config, build_loss, get_cfg, model_zoo_config_file)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONFIG_DIR = os.path.join(ROOT, "configs", "detectron2")
YAMLS = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))
PYS = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))
SIZE = 128
# A ResNet-18 bottom-up instead of 50 to keep CI fast on 2 cores; FPN and heads unchanged.
# ImageNet pixel std keeps the random-init activations (and so the logits) moderate.
SMALL = ["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
         "MODEL.PIXEL_STD", [57.375, 57.12, 58.395]]


def _shrink_lazy(model_cfg):
    model_cfg.backbone.bottom_up.stages.depth = 18
    del model_cfg.backbone.bottom_up.stages.stride_in_1x1  # bottleneck-only option
    top = model_cfg.backbone.get("top_block", None)
    if top is not None and top.get("in_channels", None) == 2048:
        top.in_channels = 512


def _batch(num_classes=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(2):
        inst = Instances((SIZE, SIZE))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 70.0, 90.0], [40.0, 30.0, 120.0, 100.0],
                                            [5.0, 60.0, 40.0, 120.0]]))
        inst.gt_classes = torch.tensor([i % num_classes, (i + 3) % num_classes, 7 % num_classes])
        out.append({"image": torch.randint(0, 256, (3, SIZE, SIZE), generator=g).float(),
                    "instances": inst, "height": SIZE, "width": SIZE})
    return out


def _losses(model, batch, seed=0):
    model.train()
    torch.manual_seed(seed)  # RPN / RoI sampling
    with EventStorage(0):
        return model(batch)


def _yaml_cfg(path, opts=()):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", *SMALL, *opts])
    return cfg


def _build(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def _step(model, batch):
    losses = _losses(model, batch)
    for k, v in losses.items():
        assert torch.isfinite(v), f"{k} = {v}"
    total = sum(losses.values())
    model.zero_grad()
    total.backward()
    grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    assert grads and torch.stack(grads).sum() > 0
    return losses


# ---------------------------------------------------------------- config keys and checks

def test_config_keys_and_defaults():
    cfg = add_focal_plugins_config(d2_get_cfg())
    add_focal_plugins_config(cfg)  # idempotent
    for head in ("RETINANET", "RPN", "ROI_BOX_HEAD"):
        for slot in ("CLS_LOSS", "BOX_LOSS"):
            node = cfg.MODEL.FOCAL_PLUGINS[head][slot]
            assert set(node) == {"NAME", "ALPHA", "ALPHA_MODE", "GAMMA", "BINS", "MOMENTUM",
                                 "MU", "LOSS_WEIGHT"}
            assert node.NAME == ""
            assert build_loss(node) is None


@pytest.mark.parametrize("opts, message", [
    (["MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME", "FocalLoss"],
     "MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME = 'FocalLoss'"),
    (["MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME", "GHMR"],
     "MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME = 'GHMR'"),
    (["MODEL.FOCAL_PLUGINS.RETINANET.BOX_LOSS.NAME", "GHMC"],
     "MODEL.FOCAL_PLUGINS.RETINANET.BOX_LOSS.NAME = 'GHMC'"),
    (["MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.BINS", 0],
     "MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.BINS"),
    (["MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.MOMENTUM", 1.0],
     "MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.MOMENTUM"),
    (["MODEL.FOCAL_PLUGINS.RETINANET.BOX_LOSS.MU", 0.0],
     "MODEL.FOCAL_PLUGINS.RETINANET.BOX_LOSS.MU"),
])
def test_bad_retinanet_values_raise_naming_key_and_value(opts, message):
    cfg = _yaml_cfg(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.yaml"), opts)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")) as err:
        build_model(cfg)
    assert repr(opts[1]) in str(err.value) or str(opts[1]) in str(err.value)


@pytest.mark.parametrize("field, value", [
    ("GAMMA", -1.0), ("ALPHA", 1.5), ("ALPHA_MODE", "binary"), ("LOSS_WEIGHT", float("nan"))])
def test_bad_focal_values_raise(field, value):
    node = add_focal_plugins_config(d2_get_cfg()).MODEL.FOCAL_PLUGINS.ROI_BOX_HEAD.CLS_LOSS
    node.NAME = "SoftmaxFocalLoss"
    node[field] = value
    key = "MODEL.FOCAL_PLUGINS.ROI_BOX_HEAD.CLS_LOSS"
    with pytest.raises(ValueError, match=rf"{key}\.{field}.*{value!r}"[:200].replace("(", r"\(")):
        build_loss(node, slot="ROI_BOX_HEAD.CLS_LOSS", key=key)


def test_slot_rules():
    key = "MODEL.FOCAL_PLUGINS.RPN.CLS_LOSS"
    with pytest.raises(ValueError, match=r"RPN\.CLS_LOSS\.NAME = 'SoftmaxFocalLoss'"):
        build_loss(name="SoftmaxFocalLoss", slot="RPN.CLS_LOSS", key=key)
    # lazy path: the component checks the object it is given
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, "faster_rcnn_R_50_FPN_1x_ghm.py"))
    cfg.model.proposal_generator.cls_loss.name = "SoftmaxFocalLoss"
    with pytest.raises(ValueError, match=r"cls_loss\.NAME = 'SoftmaxFocalLoss'"):
        instantiate(cfg.model.proposal_generator)
    cfg.model.proposal_generator.cls_loss.name = "GHMR"
    with pytest.raises(ValueError, match="'GHMR'"):
        instantiate(cfg.model.proposal_generator)
    assert issubclass(FocalPluginsRPN, torch.nn.Module)
    for name in fpd2.SLOT_NAMES["RETINANET.CLS_LOSS"]:
        assert build_loss(name=name, slot="RETINANET.CLS_LOSS").NAME == name


def test_model_zoo_base_resolution():
    cfg = _yaml_cfg(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.yaml"))
    assert cfg.MODEL.META_ARCHITECTURE == "FocalPluginsRetinaNet"
    # inherited through model_zoo:// from detectron2's retinanet yaml and its Base-RetinaNet
    assert cfg.MODEL.RETINANET.IOU_THRESHOLDS == [0.4, 0.5]
    assert cfg.MODEL.BACKBONE.NAME == "build_retinanet_resnet_fpn_backbone"
    assert cfg.MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.BINS == 30
    assert os.path.isfile(model_zoo_config_file("model_zoo://COCO-Detection/fcos_R_50_FPN_1x.py"))
    with pytest.raises(ValueError, match="no_such.yaml"):
        model_zoo_config_file("COCO-Detection/no_such.yaml")


# ---------------------------------------------------------------- every shipped config

@pytest.mark.slow
@pytest.mark.parametrize("path", YAMLS, ids=os.path.basename)
def test_every_yaml_config_trains_one_step(path):
    cfg = _yaml_cfg(path)
    model = _build(cfg)
    losses = _step(model, _batch())
    assert losses
    # GHM momentum state is model state: in the checkpoint, updated by the step
    ghm_state = {k: v for k, v in model.state_dict().items() if k.endswith("acc_sum")}
    if "ghm" in os.path.basename(path):
        assert ghm_state and all(v.abs().sum() > 0 for v in ghm_state.values()), ghm_state.keys()


@pytest.mark.slow
@pytest.mark.parametrize("path", PYS, ids=os.path.basename)
def test_every_lazy_config_trains_one_step(path):
    cfg = LazyConfig.load(path)
    _shrink_lazy(cfg.model)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    losses = _step(model, _batch(cfg.model.num_classes if "num_classes" in cfg.model
                                 else cfg.model.roi_heads.num_classes))
    assert losses
    if "ghm" in os.path.basename(path):
        assert any(k.endswith("acc_sum") for k in model.state_dict())


def test_lazy_override_reaches_the_loss():
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.py"))
    cfg = LazyConfig.apply_overrides(cfg, ["model.cls_loss.bins=20", "model.box_loss.mu=0.05"])
    cls_loss, box_loss = instantiate(cfg.model.cls_loss), instantiate(cfg.model.box_loss)
    assert cls_loss.ghm.bins == 20 and box_loss.ghm.mu == 0.05


# ---------------------------------------------------------------- overrides change the loss

def _load_matching(dst, src_sd):
    """Copy the state src_sd into dst where names and shapes agree (a softmax head's
    cls_score differs); returns the names not copied."""
    dst_sd = dst.state_dict()
    same = {k: v for k, v in src_sd.items() if k in dst_sd and dst_sd[k].shape == v.shape}
    dst.load_state_dict(same, strict=False)
    return sorted(set(dst_sd) - set(same))


_BASELINES = {}


def _baseline(config, blank):
    """The shipped config's model (blank=False) or the same with NAME "" everywhere
    (detectron2's own losses), and its losses on _batch()."""
    if (config, blank) not in _BASELINES:
        cfg = _yaml_cfg(os.path.join(CONFIG_DIR, config))
        if blank:
            for head in ("RETINANET", "RPN", "ROI_BOX_HEAD"):
                for slot in ("CLS_LOSS", "BOX_LOSS"):
                    cfg.MODEL.FOCAL_PLUGINS[head][slot].NAME = ""
        model = _build(cfg)
        state = {k: v.clone() for k, v in model.state_dict().items()}  # before GHM updates
        with torch.no_grad():
            losses = {k: v.item() for k, v in _losses(model, _batch()).items()}
        _BASELINES[config, blank] = (cfg, state, losses)
    return _BASELINES[config, blank]


CASES = (
    [("retinanet_R_50_FPN_1x_ghm.yaml", "RETINANET", "CLS_LOSS", n, "loss_cls")
     for n in ("SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC")]
    + [("retinanet_R_50_FPN_1x_ghm.yaml", "RETINANET", "BOX_LOSS", n, "loss_box_reg")
       for n in ("GHMR", "ASL1Loss")]
    + [("faster_rcnn_R_50_FPN_1x_ghm.yaml", "RPN", "CLS_LOSS", n, "loss_rpn_cls")
       for n in ("SigmoidFocalLoss", "GHMC")]
    + [("faster_rcnn_R_50_FPN_1x_ghm.yaml", "RPN", "BOX_LOSS", n, "loss_rpn_loc")
       for n in ("GHMR", "ASL1Loss")]
    + [("faster_rcnn_R_50_FPN_1x_ghm.yaml", "ROI_BOX_HEAD", "CLS_LOSS", n, "loss_cls")
       for n in ("SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC")]
    + [("faster_rcnn_R_50_FPN_1x_ghm.yaml", "ROI_BOX_HEAD", "BOX_LOSS", n, "loss_box_reg")
       for n in ("GHMR", "ASL1Loss")]
)


@pytest.mark.slow
@pytest.mark.parametrize("config, head, slot, name, loss_key", CASES,
                         ids=[f"{c[1]}.{c[2]}={c[3]}" for c in CASES])
def test_override_changes_the_loss_computed(config, head, slot, name, loss_key):
    shipped = _baseline(config, blank=False)[0].MODEL.FOCAL_PLUGINS[head][slot].NAME
    # compare with the shipped config, or where it has this very NAME, with detectron2's own
    base_cfg, base_state, base_losses = _baseline(config, blank=shipped == name)
    cfg = base_cfg.clone()
    cfg.merge_from_list([f"MODEL.FOCAL_PLUGINS.{head}.{slot}.NAME", name])
    model = _build(cfg)
    skipped = _load_matching(model, base_state)
    assert all("cls_score" in k or "acc_sum" in k or "edges" in k for k in skipped), skipped
    owner = {"RETINANET": model, "RPN": model.proposal_generator if hasattr(model, "proposal_generator") else None,
             "ROI_BOX_HEAD": getattr(getattr(model, "roi_heads", None), "box_predictor", None)}[head]
    loss_obj = owner.cls_loss if slot == "CLS_LOSS" else owner.box_loss
    assert type(loss_obj).NAME == name
    with torch.no_grad():
        losses = _losses(model, _batch())
    assert set(losses) == set(base_losses)
    assert torch.isfinite(losses[loss_key])
    assert abs(losses[loss_key].item() - base_losses[loss_key]) > 1e-6 * max(1.0, abs(base_losses[loss_key]))
    # the other losses are untouched (same weights, same sampling)
    others = [k for k in losses if k != loss_key and not (head == "RPN" and k in ("loss_cls", "loss_box_reg"))]
    for k in others:
        assert losses[k].item() == pytest.approx(base_losses[k], rel=1e-5, abs=1e-7), k


# ---------------------------------------------------------------- equality with stock

def _stock_and_plugin(plugin_opts):
    stock_cfg = d2_get_cfg()
    stock_cfg.merge_from_file(model_zoo_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml"))
    stock_cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", *SMALL])
    stock = _build(stock_cfg)
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml"))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", *SMALL,
                         "MODEL.META_ARCHITECTURE", "FocalPluginsRetinaNet", *plugin_opts])
    plugin = _build(cfg, seed=1)
    plugin.load_state_dict(stock.state_dict())
    return stock, plugin


@pytest.mark.slow
def test_sigmoid_focal_plugin_equals_stock_retinanet():
    p = "MODEL.FOCAL_PLUGINS.RETINANET."
    stock, plugin = _stock_and_plugin([p + "CLS_LOSS.NAME", "SigmoidFocalLoss",
                                       p + "CLS_LOSS.ALPHA", 0.25, p + "CLS_LOSS.GAMMA", 2.0,
                                       p + "BOX_LOSS.NAME", ""])
    assert plugin.cls_loss is not None and plugin.box_loss is None
    batch = _batch()
    ls, lp = _losses(stock, batch), _losses(plugin, batch)
    assert set(ls) == set(lp) == {"loss_cls", "loss_box_reg"}
    for k in ls:
        torch.testing.assert_close(lp[k], ls[k], rtol=1e-6, atol=1e-8)
    # and the gradients
    sum(ls.values()).backward()
    sum(lp.values()).backward()
    for (n, a), (_, b) in zip(stock.named_parameters(), plugin.named_parameters()):
        if a.grad is not None:  # fp32 sums in another order: tight in the head, looser deep
            tol = 1e-5 if n.startswith("head.") else 1e-3
            scale = float(a.grad.abs().max())
            torch.testing.assert_close(b.grad, a.grad, rtol=tol, atol=tol * scale + 1e-12,
                                       msg=n)
    # sensitivity: another alpha gives another loss
    _, other = _stock_and_plugin([p + "CLS_LOSS.NAME", "SigmoidFocalLoss", p + "CLS_LOSS.ALPHA", 0.5])
    assert abs(_losses(other, batch)["loss_cls"].item() - ls["loss_cls"].item()) > 1e-4


def _record(module, calls):
    def hook(mod, args, out):
        calls.append(([a.detach().clone() if torch.is_tensor(a) else a for a in args],
                      out.detach().clone()))
    return module.register_forward_hook(hook)


def _rows_in_order(pred, target):
    """Both sorted by a random projection of ``pred``'s rows (distinct for random logits)."""
    key = pred.double().reshape(len(pred), -1) @ torch.rand(
        pred[0].numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    order = key.argsort()
    assert key[order].diff().gt(0).all()
    return pred[order], target[order]


def _per_level_pair(opts):
    p = "MODEL.FOCAL_PLUGINS.RETINANET."
    path = os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.yaml")
    return [_build(_yaml_cfg(path, [*opts, p + "PER_LEVEL", flag])) for flag in (False, True)]


@pytest.mark.slow
def test_per_level_calls_each_plugin_loss_once_per_fpn_level():
    whole, split = _per_level_pair([])
    assert (whole.per_level, split.per_level) == (False, True)
    for a, b in zip(whole.state_dict().values(), split.state_dict().values()):
        assert torch.equal(a, b)
    batch, got = _batch(), {}
    for name, model in (("whole", whole), ("split", split)):
        calls = {"cls": [], "box": []}
        hooks = [_record(model.cls_loss, calls["cls"]), _record(model.box_loss, calls["box"])]
        got[name] = (_losses(model, batch), calls)
        for h in hooks:
            h.remove()
    (lw, cw), (ls, cs) = got["whole"], got["split"]
    n_levels = len(split.head_in_features)
    assert n_levels == 5 and len(cw["cls"]) == len(cw["box"]) == 1
    assert len(cs["cls"]) == len(cs["box"]) == n_levels
    for kind, key in (("cls", "loss_cls"), ("box", "loss_box_reg")):
        # the per-level calls get the all-level call's rows (pred, target), each exactly once
        # (in level-major instead of image-major order)
        split_rows = _rows_in_order(*(torch.cat([c[0][i] for c in cs[kind]]) for i in (0, 1)))
        for a, b in zip(split_rows, _rows_in_order(*cw[kind][0][0][:2])):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert all(c[0][-1] == cw[kind][0][0][-1] for c in cs[kind])  # the same normaliser
        sizes = [len(c[0][0]) for c in cs[kind]]
        assert sum(sizes) == len(cw[kind][0][0][0]) and sizes[0] > sizes[-1]
        torch.testing.assert_close(ls[key], sum(c[1] for c in cs[kind]))
        torch.testing.assert_close(lw[key], cw[kind][0][1])
    # GHM's density is per call: per level the loss differs
    assert abs(ls["loss_cls"].item() - lw["loss_cls"].item()) > 1e-3 * lw["loss_cls"].item()
    # each level's call updated the EMA in turn: a fresh GHM-C replaying them ends the same
    replay = type(whole.cls_loss)(bins=30, momentum=0.75)
    for args, out in cs["cls"]:
        torch.testing.assert_close(replay(*args), out)
    torch.testing.assert_close(replay.ghm.acc_sum, split.cls_loss.ghm.acc_sum)


@pytest.mark.slow
def test_per_level_leaves_sum_normalised_losses_unchanged():
    p = "MODEL.FOCAL_PLUGINS.RETINANET."
    whole, split = _per_level_pair([p + "CLS_LOSS.NAME", "SigmoidFocalLoss",
                                    p + "BOX_LOSS.NAME", "ASL1Loss", p + "BOX_LOSS.MU", 0.1])
    batch = _batch()
    lw, ls = _losses(whole, batch), _losses(split, batch)
    assert lw["loss_box_reg"] > 0
    for k in lw:
        torch.testing.assert_close(ls[k], lw[k], rtol=1e-5, atol=1e-7)


def test_per_level_values_are_checked():
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.py"))
    _shrink_lazy(cfg.model)
    for bad in ("yes", 1, None):
        cfg.model.per_level = bad
        with pytest.raises(ValueError, match=r"per_level .*RETINANET\.PER_LEVEL.* got " +
                           repr(bad).replace("'", "'")):
            instantiate(cfg.model)
    cfg.model.per_level = True
    assert instantiate(cfg.model).per_level is True
    cfg.model.cls_loss = cfg.model.box_loss = None
    with pytest.raises(ValueError, match="no effect without a plugin loss"):
        instantiate(cfg.model)
    yaml_cfg = _yaml_cfg(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.yaml"))
    assert yaml_cfg.MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL is False
    with pytest.raises(ValueError):  # YACS keeps the key a bool
        yaml_cfg.merge_from_list(["MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL", "often"])


def test_softmax_retinanet_inference_drops_background():
    cfg = _yaml_cfg(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_softmax_focal.yaml"),
                    ["MODEL.RETINANET.SCORE_THRESH_TEST", 0.0])
    model = _build(cfg)
    assert model.head.cls_score.out_channels == 9 * 81
    # prior: softmax gives the background 1 - PRIOR_PROB and each class PRIOR_PROB / 80 at
    # init, as the mmdet adapter does
    bias = model.head.cls_score.bias.view(9, 81)
    probs = bias.softmax(dim=1)
    torch.testing.assert_close(probs[:, 80], torch.full((9,), 0.99))
    torch.testing.assert_close(probs[:, :80], torch.full((9, 80), 0.01 / 80))
    model.eval()
    with torch.no_grad():
        out = model(_batch())
    inst = out[0]["instances"]
    assert len(inst) > 0
    assert int(inst.pred_classes.max()) < 80 and float(inst.scores.max()) <= 1.0


@pytest.mark.slow
def test_plugin_inference_paths():
    """Sigmoid scores in the RoI head (SigmoidFocalLoss) and softmax scores in FCOS give
    foreground-only detections with probabilities."""
    cfg = _yaml_cfg(os.path.join(CONFIG_DIR, "faster_rcnn_R_50_FPN_1x_softmax_focal.yaml"),
                    ["MODEL.FOCAL_PLUGINS.ROI_BOX_HEAD.CLS_LOSS.NAME", "SigmoidFocalLoss",
                     "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    model = _build(cfg).eval()
    with torch.no_grad():
        inst = model(_batch())[0]["instances"]
    assert len(inst) > 0 and int(inst.pred_classes.max()) < 80
    assert 0.0 <= float(inst.scores.min()) and float(inst.scores.max()) <= 1.0

    lazy = LazyConfig.load(os.path.join(CONFIG_DIR, "fcos_R_50_FPN_1x_softmax_focal.py"))
    _shrink_lazy(lazy.model)
    lazy.model.test_score_thresh = 0.0
    torch.manual_seed(0)
    fcos = instantiate(lazy.model).eval()
    assert fcos.head.cls_score.out_channels == 81
    with torch.no_grad():
        inst = fcos(_batch())[0]["instances"]
    assert len(inst) > 0 and int(inst.pred_classes.max()) < 80
    assert float(inst.scores.max()) <= 1.0


# ---------------------------------------------------------------- FCOS box-loss slot

def _fcos_with_box_loss(**box):
    from detectron2.config import LazyCall as L
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, "fcos_R_50_FPN_1x_ghm.py"))
    _shrink_lazy(cfg.model)
    cfg.model.box_loss = L(build_loss)(**box)
    torch.manual_seed(0)
    return instantiate(cfg.model)


@pytest.mark.slow
def test_fcos_box_loss_slot_replaces_giou_on_the_deltas():
    # ASL1 with a tiny mu is L1 on FCOS's ltrb deltas: compare with detectron2's own
    # dense box loss of type smooth_l1 at beta 0 (= L1) on the same positives / normaliser
    from detectron2.modeling.box_regression import _dense_box_regression_loss
    model = _fcos_with_box_loss(name="ASL1Loss", mu=1e-6)
    assert type(model.box_loss).NAME == "ASL1Loss"
    batch = _batch()
    model.train()
    images = model.preprocess_image(batch)
    feats = model.backbone(images.tensor)
    feats = [feats[f] for f in model.head_in_features]
    logits, deltas, ctr = model._transpose_dense_predictions(
        model.head(feats), [model._num_cls_outputs, 4, 1])
    anchors = model.anchor_generator(feats)
    labels, boxes = model.label_anchors(anchors, [b["instances"] for b in batch])
    with EventStorage(0):
        losses = model.losses(anchors, logits, labels, deltas, boxes, ctr)
    pos = torch.stack(labels)
    pos = (pos >= 0) & (pos != model.num_classes)
    assert pos.sum() > 0
    want = _dense_box_regression_loss(
        anchors, model.box2box_transform, deltas, [b.tensor if isinstance(b, Boxes) else b
                                                   for b in boxes], pos,
        box_reg_loss_type="smooth_l1", smooth_l1_beta=0.0) / model.loss_normalizer
    torch.testing.assert_close(losses["loss_fcos_loc"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fcos_trains_with_ghmr_box_loss():
    model = _fcos_with_box_loss(name="GHMR", mu=0.02, bins=10, momentum=0.7)
    losses = _step(model, _batch())
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    acc = model.box_loss.ghm.acc_sum
    assert acc.sum() > 0     # the EMA of GHM-R's bin counts moved off zero


@pytest.mark.parametrize("field, value", [
    ("GAMMA", float("inf")), ("LOSS_WEIGHT", float("inf")), ("ALPHA", float("inf")),
    ("GAMMA", True), ("GAMMA", "2.0")])
def test_non_finite_or_mistyped_values_raise_naming_the_key(field, value):
    node = add_focal_plugins_config(d2_get_cfg()).MODEL.FOCAL_PLUGINS.ROI_BOX_HEAD.CLS_LOSS
    node.NAME = "SoftmaxFocalLoss"
    key = "MODEL.FOCAL_PLUGINS.ROI_BOX_HEAD.CLS_LOSS"
    with pytest.raises(ValueError, match=rf"{key}\.{field}.*{value!r}"):
        build_loss(node, key=key, **{field.lower(): value})


def test_numpy_values_and_direct_construction_checked():
    import numpy as np
    loss = build_loss(name="GHMC", bins=np.int64(7), momentum=np.float32(0.5))
    assert loss.ghm.bins == 7 and loss.ghm.momentum == 0.5
    assert build_loss(name="SigmoidFocalLoss", gamma=np.float32(1.5)).gamma == 1.5
    with pytest.raises(ValueError, match="BINS.*True"):
        build_loss(name="GHMC", bins=True)
    with pytest.raises(ValueError, match="gamma.*inf"):
        fpd2.losses.SigmoidFocalLoss(gamma=float("inf"))
    with pytest.raises(ValueError, match="mu.*-1"):
        fpd2.losses.ASL1Loss(mu=-1.0)
