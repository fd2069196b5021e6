"""focal_plugins.tools.plot_focal: the focal loss paper's Figure 1."""
import os

import torch

from focal_plugins.tools import plot_focal


def test_plot_focal_writes_png(tmp_path):
    out = plot_focal.main(["--out", str(tmp_path / "fl.png"), "--points", "50"])
    assert os.path.getsize(out) > 1000
    p = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(plot_focal.focal_curve(p, 0.0), -torch.log(p.double()))
    torch.testing.assert_close(plot_focal.focal_curve(p, 2.0),
                               -(1 - p.double()) ** 2 * torch.log(p.double()))
