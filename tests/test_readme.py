"""The README is a front door: short, install and the framework snippets first, the snippets
run as written, its links and images exist, the two commands as they are."""
import os
import re

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, "README.md"), encoding="utf-8") as _f:
    README = _f.read()
LINES = README.splitlines()


def _section(title):
    start = LINES.index(title)
    end = next((i for i in range(start + 1, len(LINES)) if LINES[i].startswith("## ")), len(LINES))
    return "\n".join(LINES[start:end])


def _code(title, lang):
    blocks = re.findall(rf"```{lang}\n(.*?)```", _section(title), re.S)
    assert blocks, (title, lang)
    return blocks[0]


def _slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_short_with_install_and_snippets_first():
    assert len(LINES) <= 250
    order = ["## Install", "## mmdetection 3.x", "## detectron2", "## Plain PyTorch"]
    at = [LINES.index(h) for h in order]
    assert at == sorted(at) and at[0] < 20 and at[1] < 45 and at[3] < 90
    assert "pip wheel --no-deps -w dist ." in README and "make test" in _section("## Install")
    assert "focal-plugins[" not in README   # nothing installs a name from an index


def test_the_two_commands_as_they_are():
    assert ("```bash\nmake demo    # the main job: a loss study, RetinaNet with 6 losses x 3 "
            "training seeds, mean ± std (12.7 min measured on 2 quiet cores)\nmake test    "
            "# the whole test suite\n```") in README
    mk = open(os.path.join(REPO, "Makefile")).read()
    assert "\ndemo:" in mk and "\ntest:" in mk


def test_mmdet_snippet_states_the_custom_imports_pitfall():
    s = _section("## mmdetection 3.x")
    assert "custom_imports" in _code("## mmdetection 3.x", "python")
    assert "without it" in s and "NotImplementedError" in s and "silently" in s


def test_links_and_images_exist():
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    assert targets
    for t in targets:
        path, _, anchor = t.partition("#")
        full = os.path.join(REPO, path)
        assert os.path.exists(full), t
        if anchor:
            with open(full, encoding="utf-8") as f:
                slugs = {_slug(l.lstrip("#")) for l in f if l.startswith("#")}
            assert anchor in slugs, t


def test_plain_pytorch_snippet_runs_and_equals_torchvision():
    tv = pytest.importorskip("torchvision.ops")
    ns = {}
    exec(_code("## Plain PyTorch", "python"), ns)
    x, t = ns["x"], ns["t"]
    torch.testing.assert_close(ns["loss"], tv.sigmoid_focal_loss(x, t).sum() / t.sum())


def test_mmdet_snippet_builds_the_plugins_losses(tmp_path):
    pytest.importorskip("mmdet")
    from mmengine.config import Config

    import focal_plugins.mmdet  # noqa: F401  (what custom_imports does)
    from mmdet.registry import MODELS

    f = tmp_path / "cfg.py"
    f.write_text(_code("## mmdetection 3.x", "python"))
    cfg = Config.fromfile(str(f))
    assert cfg.custom_imports.imports == ["focal_plugins.mmdet"]
    for key in ("loss_cls", "loss_bbox"):
        loss = MODELS.build(cfg.model.bbox_head[key])
        assert type(loss).__module__ == "focal_plugins.mmdet.losses", key


@pytest.mark.slow
def test_detectron2_snippet_builds_the_plugins_model():
    pytest.importorskip("detectron2")
    from detectron2.modeling import build_model

    code = _code("## detectron2", "python")
    assert code.rstrip().endswith("trainer = DefaultTrainer(cfg)")
    ns = {}
    exec(code.rstrip()[: -len("trainer = DefaultTrainer(cfg)")], ns)   # no dataset here
    cfg = ns["cfg"]
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    model = build_model(cfg)
    assert type(model).__name__ == "FocalPluginsRetinaNet"
    assert type(model.cls_loss).__name__ == "SoftmaxFocalLoss"
