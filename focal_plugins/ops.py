r"""Drop-in replacements with torchvision's ``torchvision.ops`` signatures and conventions.

Sigmoid focal loss (Lin et al., RetinaNet), per element::

    p = sigmoid(x),   1 - p_t = p + y - 2 p y     (= 1 - p if y = 1, p if y = 0; soft y too)
    FL(x, y) = alpha_t (1 - p_t)^gamma BCE(x, y),  alpha_t = alpha y + (1 - alpha)(1 - y)

with alpha = -1 meaning alpha_t = 1 (no weighting).

:func:`sigmoid_focal_loss` takes what ``torchvision.ops.sigmoid_focal_loss`` takes (same
argument names, order and defaults: ``alpha=0.25, gamma=2, reduction="none"``) and returns
what it returns: the logits' shape (``"none"``) or a 0-d mean/sum, in the logits' dtype (an
fp16 or bf16 input gives an fp16 or bf16 loss, fp64 gives fp64), and the same ValueError
for an alpha outside [0, 1] other than -1, or for an unknown reduction. It scripts with
``torch.jit.script``: the scripted function is the plain-PyTorch reference below.

In eager mode it runs the package's fast paths (``focal_plugins.core.sigmoid_focal_loss``:
fused Triton kernels on CUDA, a chunked CPU path on CPU inputs of at least
``CPU_FAST_MIN_NUMEL`` elements), computing fp16/bf16 in fp32 and rounding the result to the
input dtype. The fast paths give first-order gradients of ``inputs``: double backward
(``create_graph=True``) and a second backward through one graph are errors there. Smaller
CPU inputs, fp64, a ``targets`` that requires grad, tracing and scripting take the
reference, which supports both.

For the mmdet conventions (default ``reduction="mean"``, ``weight``, ``avg_factor``, integer
labels, per-class or frequency alpha, ``alpha_mode``) use ``focal_plugins.sigmoid_focal_loss``;
the README has a table of the differences.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sigmoid_focal_loss"]

# Fewer elements than this on the CPU: the reference body (less per-call host work than the
# chunked path's set-up; the two cross near 400,000 elements on the 2-core CPU: docs/ops.md).
CPU_FAST_MIN_NUMEL = 1 << 19

def _reference(inputs: Tensor, targets: Tensor, alpha: float, gamma: float,
               reduction: str) -> Tensor:
    """The plain-PyTorch body (scriptable): the formula of the module docstring."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    m = torch.addcmul(p + targets, p, targets, value=-2.0)   # 1 - p_t
    if 0.0 < gamma < 1.0:
        # where p_t rounds to 1, d(m^gamma)/dm = inf and the gradient would be NaN (it is in
        # torchvision): from the smallest normal number on it is finite, the loss the same
        m = m.clamp_min(6.2e-5 if m.dtype == torch.float16 else 1.2e-38)
    loss = ce * m.pow(gamma)
    if alpha >= 0:
        loss = loss * (targets * (2.0 * alpha - 1.0) + (1.0 - alpha))
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


@torch.jit.unused
def _eager(inputs: Tensor, targets: Tensor, alpha: float, gamma: float,
           reduction: str) -> Tensor:
    """Eager mode: the package's fast paths where they apply, else the reference."""
    if torch.jit.is_tracing() or not _fast_path_applies(inputs, targets):
        return _reference(inputs, targets, alpha, gamma, reduction)
    from .core import sigmoid_focal_loss as core_sigmoid_focal_loss

    out = core_sigmoid_focal_loss(inputs, targets, alpha=alpha if alpha >= 0 else None,
                                  gamma=gamma, reduction=reduction)
    return out.to(inputs.dtype)


@torch.jit.unused
def _fast_path_applies(inputs: Tensor, targets: Tensor) -> bool:
    if not (isinstance(inputs, Tensor) and isinstance(targets, Tensor)):
        return False
    if inputs.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False   # fp64 and anything else: the reference, in that dtype
    if targets.dtype != inputs.dtype or targets.shape != inputs.shape:
        return False   # whatever BCE does with these, torchvision does too
    if targets.requires_grad and torch.is_grad_enabled():
        return False   # the fast paths differentiate inputs only
    if inputs.numel() == 0:
        return False
    if inputs.is_cuda:
        return True
    return inputs.device.type == "cpu" and inputs.numel() >= CPU_FAST_MIN_NUMEL


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25,
                       gamma: float = 2, reduction: str = "none") -> Tensor:
    """Sigmoid focal loss with torchvision's signature, defaults and results.

    Args:
        inputs: logits, a float tensor of any shape.
        targets: a float tensor shaped like ``inputs``: 1 for positives, 0 for negatives
            (soft values in [0, 1] also work).
        alpha: weight of the positive term in [0, 1] (the negative term gets 1 - alpha),
            or -1 for no weighting. Default 0.25.
        gamma: focusing exponent on (1 - p_t), >= 0. Default 2.
        reduction: ``"none"`` (the loss per element, ``inputs``' shape), ``"mean"`` or
            ``"sum"``. Default ``"none"``.

    Returns:
        The loss, in ``inputs``' dtype.
    """
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"Invalid alpha value: {alpha}. alpha must be in the range [0, 1], "
                         "or -1 for no weighting.")
    if not gamma >= 0:
        raise ValueError(f"Invalid gamma value: {gamma}. gamma must be >= 0.")
    if reduction != "none" and reduction != "mean" and reduction != "sum":
        raise ValueError(f"Invalid Value for arg 'reduction': '{reduction}'. "
                         "Supported reduction modes: 'none', 'mean', 'sum'")
    if not torch.jit.is_scripting():
        return _eager(inputs, targets, float(alpha), float(gamma), reduction)
    return _reference(inputs, targets, float(alpha), float(gamma), reduction)
