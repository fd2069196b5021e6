"""The one loss spec (focal_plugins.spec): framework-free, its checks, its alpha modes are
the core's, the name_of hook, and the README's loss table."""
import os
import subprocess
import sys

import pytest
import torch

from focal_plugins import spec
from focal_plugins.core import resolve_alpha

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_spec_imports_no_framework():
    code = ("import sys, focal_plugins.spec\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mmdet', 'mmengine', 'detectron2', 'fvcore')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_loss_validates_its_defaults_and_kinds():
    assert spec.LOSS_NAMES == ("SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC", "GHMR",
                               "ASL1Loss")
    assert spec.names(spec.CLASSIFICATION) == ("SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC")
    assert spec.names(spec.BOX) == ("GHMR", "ASL1Loss")
    assert spec.names(spec.CLASSIFICATION, softmax=False) == ("SigmoidFocalLoss", "GHMC")
    for s in spec.LOSSES.values():
        assert set(s.defaults) <= set(spec.HYPERPARAMETERS)
        assert s.validate({}) == dict(s.defaults)
    assert spec.shared_defaults() == dict(alpha=None, alpha_mode="paper", gamma=2.0, bins=10,
                                          momentum=0.0, mu=0.02, loss_weight=1.0)


def test_alpha_modes_are_what_the_core_accepts():
    for s in spec.LOSSES.values():
        if "alpha_mode" not in s.defaults:
            continue
        kind = "softmax" if s.softmax else "sigmoid"
        for mode in ("paper", "uniform", "binary"):
            try:
                resolve_alpha(0.25, 2, kind=kind, alpha_mode=mode, background_index=1)
                core_ok = True
            except ValueError:
                core_ok = False
            assert (mode in s.alpha_modes) == core_ok, (s.name, mode)


@pytest.mark.parametrize("name, values, message", [
    ("GHMC", dict(bins=0), "bins must be an int >= 1, got 0"),
    ("GHMC", dict(momentum=1.0), "momentum must be"),
    ("GHMR", dict(mu=0.0), "mu must be a finite number in (0.0, inf], got 0.0"),
    ("ASL1Loss", dict(mu=0), "mu must be"),
    ("SigmoidFocalLoss", dict(gamma=-1.0), "gamma must be"),
    ("SigmoidFocalLoss", dict(alpha=1.5), "alpha must be"),
    ("SigmoidFocalLoss", dict(alpha_mode="binary"), "alpha_mode must be one of ('paper', 'uniform'), got 'binary': 'binary' is for a softmax"),
    ("SoftmaxFocalLoss", dict(alpha_mode="binary"), "alpha_mode = 'binary' takes a float alpha"),
    ("SigmoidFocalLoss", dict(alpha=[0.5, 1.5]), "alpha must lie in [0, 1]"),
    ("ASL1Loss", dict(bins=3), "ASL1Loss takes no bins"),
])
def test_checks_name_the_field(name, values, message):
    with pytest.raises(ValueError) as err:
        spec.LOSSES[name].validate(values)
    assert str(err.value).startswith(message), str(err.value)


def test_name_of_spells_each_field_as_the_caller_does():
    yacs = lambda f: f"MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.{f.upper()}"  # noqa: E731
    with pytest.raises(ValueError, match=r"^MODEL\.FOCAL_PLUGINS\.RETINANET\.CLS_LOSS\.BINS "
                                         r"must be an int >= 1, got 0$"):
        spec.LOSSES["GHMC"].validate(dict(bins=0), yacs)
    with pytest.raises(ValueError, match=r"^MODEL\.FOCAL_PLUGINS\.RETINANET\.CLS_LOSS\.ALPHA: "
                                         r"alpha must lie in \[0, 1\]"):
        spec.LOSSES["SigmoidFocalLoss"].validate(dict(alpha=[0.5, 1.5]), yacs)


def test_alpha_length_against_num_classes():
    sm, sg = spec.LOSSES["SoftmaxFocalLoss"], spec.LOSSES["SigmoidFocalLoss"]
    with pytest.raises(ValueError, match=r"^alpha has 3 entries; SoftmaxFocalLoss needs one per "
                                         r"logit column: num_classes \+ 1 \(background\) = 4$"):
        sm.validate(dict(alpha=[1.0, 1.0, 1.0]), num_classes=3)
    assert sm.validate(dict(alpha=[1.0] * 4), num_classes=3)["alpha"] == [1.0] * 4
    with pytest.raises(ValueError, match=r"needs one per logit column: num_classes = 3$"):
        sg.validate(dict(alpha=[0.5] * 4), num_classes=3)
    with pytest.raises(ValueError, match=r"'binary' needs two columns.*num_classes = 3"):
        sm.validate(dict(alpha=0.25, alpha_mode="binary"), num_classes=3)
    assert sm.validate(dict(alpha=0.25, alpha_mode="binary"), num_classes=1)["alpha"] == 0.25


def test_readme_loss_table_is_the_rendered_one():
    table = spec.render_loss_table()
    head = table.splitlines()[0]
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert head.startswith("| name")
    if head in readme:  # the README shows the table: it must be the spec's
        start = readme.index(head)
        lines = readme[start:].splitlines()
        shown = "\n".join(ln for ln in lines[:next(
            (i for i, ln in enumerate(lines) if not ln.startswith("|")), len(lines))])
        assert shown == table
    rows = spec.render_loss_table(hyperparameters=True).splitlines()
    assert rows[0].endswith("| settings (defaults) |") and len(rows) == 2 + len(spec.LOSSES)
    assert "`mu=0.02`, `bins=10`, `momentum=0.0`, `loss_weight=1.0`" in rows[5]
