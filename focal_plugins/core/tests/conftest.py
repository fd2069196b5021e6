import warnings

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def mmdet_losses():
    """mmdet 3.3's loss modules (imported only in tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mmdet.models.losses import focal_loss, ghm_loss
    return focal_loss, ghm_loss
