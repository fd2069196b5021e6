"""detectron2's own entry points that touch ``detectron2._C`` work in this environment: with a
compiled detectron2, or with the project's pure-Python stand-in (tools/detectron2_C_standin.py,
installed by tools/setup_env.sh): ``default_setup()`` and ``COCOEvaluator``'s default fast
path, which must give the AP of the official pycocotools path. What the stand-in cannot do
fails with a clear error."""
import argparse
import json
import math
import os
import random

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")

from detectron2 import _C  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = _C.__file__.endswith(".py")  # a compiled build is a shared library
needs_standin = pytest.mark.skipif(not STANDIN, reason="detectron2 is a compiled build here")


@needs_standin
def test_installed_standin_is_the_projects():
    with open(os.path.join(REPO, "tools", "detectron2_C_standin.py"), "rb") as f:
        want = f.read()
    with open(_C.__file__, "rb") as f:
        assert f.read() == want, (f"{_C.__file__} differs from tools/detectron2_C_standin.py: "
                                  "rebuild the environment (tools/setup_env.sh)")


def test_default_setup(tmp_path):
    from detectron2.config import get_cfg
    from detectron2.engine import default_setup
    from detectron2.utils.collect_env import collect_env_info

    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.SEED = 3
    default_setup(cfg, argparse.Namespace(config_file="", eval_only=False))
    assert (tmp_path / "config.yaml").read_text() == cfg.dump()
    assert "Environment info" in (tmp_path / "log.txt").read_text()
    info = collect_env_info()
    assert "Compiler" in info
    if STANDIN:
        assert "pure-Python stand-in" in info


@needs_standin
def test_missing_ops_say_so():
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    assert not hasattr(_C, "box_iou_rotated")  # hasattr-style probes see "absent"
    boxes = torch.tensor([[10.0, 10.0, 4.0, 2.0, 30.0]])
    with pytest.raises(NotImplementedError, match=r"_C.box_iou_rotated: .*stand-in"):
        pairwise_iou_rotated(boxes, boxes)


def test_ops_from_torchvision_work_on_cpu():
    """What RetinaNet, FCOS and Faster R-CNN need does not come from _C."""
    from detectron2.layers import ROIAlign, batched_nms, nms
    from detectron2.layers.deform_conv import DeformConv

    feats = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]])
    out = ROIAlign((2, 2), 1.0, 0, aligned=True)(feats, rois)
    assert out.shape == (1, 2, 2, 2)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1, 2]
    conv = DeformConv(2, 3, kernel_size=3, padding=1, bias=False)
    offset = torch.zeros(1, 18, 8, 8)
    torch.testing.assert_close(conv(feats, offset),
                               torch.nn.functional.conv2d(feats, conv.weight, padding=1))


# ------------------------------------------------------------------ COCO evaluation
def _dataset(seed=0, num_images=12, num_cats=3):
    """GT boxes of all COCO area ranges, crowd boxes, an image without boxes; detections
    near them with noise, tied scores, false positives and a category left undetected."""
    rng = random.Random(seed)
    images, anns, dets = [], [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "height": 200, "width": 200})
        for _ in range(0 if i == 5 else rng.randint(1, 6)):
            side = rng.choice([8.0, 20.0, 40.0, 60.0, 110.0])
            x, y = rng.uniform(0, 200 - side), rng.uniform(0, 200 - side)
            cat = rng.randint(1, num_cats)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat,
                         "bbox": [x, y, side, side * rng.uniform(0.6, 1.2)],
                         "area": side * side, "iscrowd": int(rng.random() < 0.1)})
            for _ in range(rng.randint(0, 2)):
                if cat == num_cats and i % 2:
                    continue
                jit = [v + rng.gauss(0, side * 0.1) for v in anns[-1]["bbox"]]
                dets.append({"image_id": i, "category_id": rng.choice([cat] * 4 + [1]),
                             "bbox": [jit[0], jit[1], max(jit[2], 1.0), max(jit[3], 1.0)],
                             "score": round(rng.random(), 1)})
        for _ in range(rng.randint(0, 3)):
            dets.append({"image_id": i, "category_id": rng.randint(1, num_cats),
                         "bbox": [rng.uniform(0, 150), rng.uniform(0, 150), 30.0, 25.0],
                         "score": rng.random()})
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, num_cats + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def _coco_eval(opt, gt_json, dets, use_cats=1, max_dets=None):
    from contextlib import redirect_stdout
    from io import StringIO

    from detectron2.evaluation.fast_eval_api import COCOeval_opt
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with redirect_stdout(StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(gt_json))
        gt.createIndex()
        ev = (COCOeval_opt if opt else COCOeval)(gt, gt.loadRes(json.loads(json.dumps(dets))),
                                                 "bbox")
        ev.params.useCats = use_cats
        if max_dets:
            ev.params.maxDets = max_dets
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed, use_cats, max_dets", [(0, 1, None), (1, 1, [1, 3, 10]),
                                                      (2, 0, None), (3, 1, None)])
def test_fast_cocoeval_equals_pycocotools(seed, use_cats, max_dets):
    gt, dets = _dataset(seed)
    fast = _coco_eval(True, gt, dets, use_cats, max_dets)
    ref = _coco_eval(False, gt, dets, use_cats, max_dets)
    assert ref.eval["recall"].max() > 0.5 and (ref.eval["precision"] > 0.5).any()  # not trivial
    np.testing.assert_array_equal(fast.stats, ref.stats)
    for key in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(fast.eval[key], ref.eval[key], err_msg=key)
    assert fast.eval["counts"] == ref.eval["counts"]


def _evaluate(tmp_path, name, fast, gt, dets):
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances
    from detectron2.evaluation import COCOEvaluator
    from detectron2.structures import Boxes, BoxMode, Instances

    if name not in DatasetCatalog.list():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(gt))
        register_coco_instances(name, {}, str(path), str(tmp_path))
        DatasetCatalog.get(name)  # sets the category id mapping in the metadata
    evaluator = COCOEvaluator(name, tasks=("bbox",), distributed=False, use_fast_impl=fast)
    evaluator.reset()
    for image in gt["images"]:
        mine = [d for d in dets if d["image_id"] == image["id"]]
        inst = Instances((image["height"], image["width"]))
        xywh = torch.tensor([d["bbox"] for d in mine], dtype=torch.float32).reshape(-1, 4)
        inst.pred_boxes = Boxes(BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS))
        inst.scores = torch.tensor([d["score"] for d in mine], dtype=torch.float32)
        inst.pred_classes = torch.tensor([d["category_id"] - 1 for d in mine])
        evaluator.process([{"image_id": image["id"]}], [{"instances": inst}])
    return evaluator.evaluate()["bbox"]


def test_coco_evaluator_default_path_gives_the_official_ap(tmp_path, monkeypatch):
    calls = []
    accumulate = _C.COCOevalAccumulate
    monkeypatch.setattr(_C, "COCOevalAccumulate",
                        lambda *a: calls.append(1) or accumulate(*a))
    gt, dets = _dataset(4)
    fast = _evaluate(tmp_path, "fp_c_standin_eval", True, gt, dets)
    assert calls, "the default (fast) path did not run through detectron2._C"
    official = _evaluate(tmp_path, "fp_c_standin_eval", False, gt, dets)
    assert len(calls) == 1
    assert set(fast) == set(official) and {"AP", "AP50", "APs", "AP-c1"} <= set(fast)
    assert fast["AP"] > 5
    for key, value in official.items():
        assert fast[key] == value or (math.isnan(fast[key]) and math.isnan(value)), key
