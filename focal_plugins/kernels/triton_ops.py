"""torch.autograd.Function wrappers around the Triton kernels (imports triton).

Forward runs one pass over the logits (GHM: the histogram pass, whose per-bin loss sums
give the reduced loss directly); backward recomputes the gradient from the logits in one
more pass, scaled by grad_output read from device memory. So a forward + backward reads
the logits twice and writes their gradient once, and keeps no (N, C) tensor alive between
forward and backward. No .item(), no boolean indexing: safe inside CUDA graphs.
Gradients flow to the logits only (targets, weights, alphas are treated as constants).
Backward can run more than once (retain_graph=True); double backward (create_graph=True)
is a clear error pointing to impl='reference'.
"""
import torch

from . import _triton as K


def _go_mode(reduction, go):
    if torch.is_grad_enabled():
        from .cpu import DOUBLE
        raise RuntimeError(DOUBLE)
    if reduction == "none":
        return 3, go.contiguous()
    return 2, go.reshape(())


class _SigmoidFocal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target, weight, a_pos, a_neg, gamma, reduction):
        ctx.gamma, ctx.reduction = gamma, reduction
        ctx.save_for_backward(x, target, weight, a_pos, a_neg)
        return K.sigmoid_focal_launch(x, target, weight, a_pos, a_neg, gamma,
                                      0 if reduction == "none" else 1)

    @staticmethod
    def backward(ctx, go):
        x, target, weight, a_pos, a_neg = ctx.saved_tensors
        mode, go = _go_mode(ctx.reduction, go)
        g = K.sigmoid_focal_launch(x, target, weight, a_pos, a_neg, ctx.gamma, mode, go=go)
        return g, None, None, None, None, None, None


class _SoftmaxFocal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, labels, weight, a, gamma, ignore_index, reduction):
        ctx.gamma, ctx.ignore_index, ctx.reduction = gamma, ignore_index, reduction
        ctx.save_for_backward(x, labels, weight, a)
        return K.softmax_focal_launch(x, labels, weight, a, gamma, ignore_index,
                                      0 if reduction == "none" else 1)

    @staticmethod
    def backward(ctx, go):
        x, labels, weight, a = ctx.saved_tensors
        mode, go = _go_mode(ctx.reduction, go)
        g = K.softmax_focal_launch(x, labels, weight, a, ctx.gamma, ctx.ignore_index, mode,
                                   go=go)
        return g, None, None, None, None, None, None


class _GHMElem(torch.autograd.Function):
    """GHM pass 2 over elements, kind 0: sigmoid GHM-C (BCE), kind 1: GHM-R (ASL1 with mu).
    wb: per-bin weights (bins,) fp32 (0 in empty bins); sums: pass 1's per-bin loss sums."""

    @staticmethod
    def forward(ctx, x, target, label_weight, edges, wb, sums, bins, kind, mu, reduction):
        ctx.meta = (bins, kind, mu, reduction)
        ctx.save_for_backward(x, target, label_weight, edges, wb)
        if reduction == "none":
            return K.ghm_elem_apply(x, target, label_weight, edges, wb, bins, kind, 0, mu)
        return (wb * sums).sum()

    @staticmethod
    def backward(ctx, go):
        x, target, label_weight, edges, wb = ctx.saved_tensors
        bins, kind, mu, reduction = ctx.meta
        mode, go = _go_mode(reduction, go)
        g = K.ghm_elem_apply(x, target, label_weight, edges, wb, bins, kind, mode, mu, go=go)
        return g, None, None, None, None, None, None, None, None, None


class _GHMRows(torch.autograd.Function):
    """Softmax GHM-C pass 2: per-row g = 1 - p_t, loss = cross-entropy."""

    @staticmethod
    def forward(ctx, x, labels, label_weight, edges, wb, sums, bins, ignore_index, reduction):
        ctx.meta = (bins, ignore_index, reduction)
        ctx.save_for_backward(x, labels, label_weight, edges, wb)
        if reduction == "none":
            return K.ghm_rows_apply(x, labels, label_weight, edges, wb, bins, ignore_index, 0)
        return (wb * sums).sum()

    @staticmethod
    def backward(ctx, go):
        x, labels, label_weight, edges, wb = ctx.saved_tensors
        bins, ignore_index, reduction = ctx.meta
        mode, go = _go_mode(reduction, go)
        g = K.ghm_rows_apply(x, labels, label_weight, edges, wb, bins, ignore_index, mode,
                             go=go)
        return g, None, None, None, None, None, None, None, None
