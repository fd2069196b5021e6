"""CPU fast paths: loss and analytic gradient together, in row chunks that stay in cache.

A plain composition of torch ops makes a full (N, C) temporary per op, and on a 2-core
machine every extra pass over 16 MB shows. Here each chunk of ~64K elements goes through
a fixed sequence of in-place/out= ops on reusable chunk buffers; the gradient is written
once into its (N, C) output. Only integer class labels (N,) are handled (C = background);
the dispatcher sends float targets to the reference.

Sigmoid focal with hard labels. Every element is first treated as a negative (t = 0):
    p = sigmoid(x), sp = softplus(x) = -log(1 - p)
    loss = a_neg[c] p^g sp,          dloss/dx = a_neg[c] p^g (g (1 - p) sp + p)
then the one positive per row (column label) is replaced, with q = sigmoid(-x):
    loss = a_pos[c] q^g softplus(-x), dloss/dx = -a_pos[c] q^g (g (1 - q) softplus(-x) + q)

GHM-C (sigmoid) with hard labels: g = |p - t|, bin = bucketize on the edges, per-bin counts
and BCE sums by bincount per chunk (pass 1, bins kept as uint8); the per-bin weights come
from the caller (EMA, distributed); pass 2 writes grad = (p - t) w[bin] scaled by
grad_output, in backward.
"""
import torch
import torch.nn.functional as F

CHUNK = 1 << 16     # elements per chunk


def _rows_per_chunk(C):
    return max(1, CHUNK // max(C, 1))


def _powg(p, gamma, out):
    if gamma == 2.0:
        return torch.mul(p, p, out=out)
    if gamma == 1.0:
        return out.copy_(p)
    return torch.pow(p, gamma, out=out)


class _SigmoidFocalCPU(torch.autograd.Function):
    """x (N, C) fp32 contiguous; labels (N,) int64 in [0, C]; weight None, (N,) or (N, C);
    a_pos, a_neg (C,) fp32; reduction "none" or "sum". The gradient is computed in forward
    (it shares every transcendental with the loss) and scaled in place in backward."""

    @staticmethod
    def forward(ctx, x, labels, weight, a_pos, a_neg, gamma, reduction):
        N, C = x.shape
        R = _rows_per_chunk(C)
        grad = torch.empty_like(x)
        loss = torch.empty_like(x) if reduction == "none" else None
        total = torch.zeros((), dtype=torch.float64)
        P = torch.empty(min(R, N), C)
        S, G, Q = torch.empty_like(P), torch.empty_like(P), torch.empty_like(P)
        wrow = weight if weight is not None and weight.dim() == 1 else None
        wel = weight if weight is not None and weight.dim() == 2 else None
        for r0 in range(0, N, R):
            r1 = min(r0 + R, N)
            n = r1 - r0
            xs = x[r0:r1]
            p, s, gg, q = P[:n], S[:n], G[:n], Q[:n]
            torch.sigmoid(xs, out=p)
            torch._C._nn.softplus(xs, 1, 20, out=s)
            _powg(p, gamma, gg)
            gs = grad[r0:r1]
            # gradient of the all-negative loss
            torch.sub(1.0, p, out=q)
            q.mul_(s)
            torch.add(p, q, alpha=gamma, out=q)
            q.mul_(gg)
            torch.mul(q, a_neg, out=gs)
            # loss of the all-negative loss: p^g sp, into q (free now)
            torch.mul(gg, s, out=q)
            # positives of this chunk (value C = background: no positive)
            lab = labels[r0:r1]
            pos = lab < C
            lc = lab.clamp(max=C - 1).unsqueeze(1)
            xp = xs.gather(1, lc).squeeze(1)
            qp = torch.sigmoid(-xp)
            spn = F.softplus(-xp)
            qg = qp * qp if gamma == 2.0 else qp.pow(gamma)
            ap = a_pos[lc.squeeze(1)]
            lp = ap * qg * spn
            gp = -ap * qg * (gamma * (1.0 - qp) * spn + qp)
            if wel is not None:
                gs.mul_(wel[r0:r1])
                wp = wel[r0:r1].gather(1, lc).squeeze(1)
                gp = gp * wp
            elif wrow is not None:
                gs.mul_(wrow[r0:r1].unsqueeze(1))
                gp = gp * wrow[r0:r1]
            gs.scatter_(1, lc, torch.where(pos, gp, gs.gather(1, lc).squeeze(1)).unsqueeze(1))
            if reduction == "none":
                ls = loss[r0:r1]
                torch.mul(q, a_neg, out=ls)
                if wel is not None:
                    ls.mul_(wel[r0:r1])
                    lp = lp * wp
                elif wrow is not None:
                    ls.mul_(wrow[r0:r1].unsqueeze(1))
                    lp = lp * wrow[r0:r1]
                ls.scatter_(1, lc, torch.where(pos, lp, ls.gather(1, lc).squeeze(1)).unsqueeze(1))
            else:
                neg_at_pos = q.gather(1, lc).squeeze(1) * a_neg[lc.squeeze(1)]
                if wel is not None:
                    q.mul_(wel[r0:r1])
                    neg_at_pos = neg_at_pos * wp
                    lp = lp * wp
                rowsum = torch.mv(q, a_neg)
                if wrow is not None:
                    rowsum = rowsum * wrow[r0:r1]
                    neg_at_pos = neg_at_pos * wrow[r0:r1]
                    lp = lp * wrow[r0:r1]
                fix = torch.where(pos, lp - neg_at_pos, torch.zeros(()))
                total += rowsum.sum(dtype=torch.float64) + fix.sum(dtype=torch.float64)
        ctx.reduction = reduction
        ctx.save_for_backward(grad)
        return loss if reduction == "none" else total.to(torch.float32)

    @staticmethod
    def backward(ctx, go):
        grad, = ctx.saved_tensors
        # In place: a second backward through this graph fails loudly (version check).
        grad.mul_(go)
        return grad, None, None, None, None, None, None


def _bin_index(g, edges, bins):
    """i with edges[i] <= g < edges[i+1] (last bin open above), equal to
    bucketize(g, edges[1:-1], right=True) but ~3x faster here: floor(g * bins), then one
    correction step against the edges for the rounding cases."""
    b = (g * bins).to(torch.int32).clamp_(0, bins - 1)
    lo = torch.index_select(edges, 0, b.view(-1)).view_as(g)
    b -= ((g < lo) & (b > 0)).to(torch.int32)
    hi = torch.index_select(edges, 0, (b + 1).view(-1)).view_as(g)
    b += ((g >= hi) & (b < bins - 1)).to(torch.int32)
    return b


class _GHMCSigmoidCPU(torch.autograd.Function):
    """x (N, C) fp32 contiguous; labels (N,) int64 in [0, C]; label_weight None, (N,) or
    (N, C) (> 0 marks valid); edges (bins + 1,) fp32; weigh(counts) -> per-bin
    weights; reduction "none" or "sum" (of w * BCE)."""

    @staticmethod
    def forward(ctx, x, labels, label_weight, edges, bins, weigh, reduction):
        N, C = x.shape
        R = _rows_per_chunk(C)
        idx_all = torch.empty((N, C), dtype=torch.uint8)
        counts = torch.zeros(bins + 1, dtype=torch.float64)
        sums = torch.zeros(bins + 1, dtype=torch.float64)
        P = torch.empty(min(R, N), C)
        S = torch.empty_like(P)
        inv_row = label_weight <= 0 if label_weight is not None and label_weight.dim() == 1 else None
        inv_el = label_weight <= 0 if label_weight is not None and label_weight.dim() == 2 else None
        for r0 in range(0, N, R):
            r1 = min(r0 + R, N)
            n = r1 - r0
            xs = x[r0:r1]
            p, s = P[:n], S[:n]
            torch.sigmoid(xs, out=p)
            lab = labels[r0:r1]
            pos = (lab < C).unsqueeze(1)
            lc = lab.clamp(max=C - 1).unsqueeze(1)
            pp = p.gather(1, lc)
            p.scatter_(1, lc, torch.where(pos, (pp - 1.0).abs(), pp))     # g = |p - t|
            idx = _bin_index(p, edges, bins)
            if inv_row is not None:
                idx.masked_fill_(inv_row[r0:r1].unsqueeze(1), bins)
            elif inv_el is not None:
                idx.masked_fill_(inv_el[r0:r1], bins)
            torch._C._nn.softplus(xs, 1, 20, out=s)
            sp = s.gather(1, lc)
            s.scatter_(1, lc, torch.where(pos, sp - xs.gather(1, lc), sp))  # BCE
            fi = idx.view(-1)
            counts += torch.bincount(fi, minlength=bins + 1)
            sums += torch.bincount(fi, weights=s.reshape(-1).double(), minlength=bins + 1)
            idx_all[r0:r1].copy_(idx)
        counts, sums = counts[:bins].float(), sums[:bins]
        with torch.no_grad():
            wb = weigh(counts).to(torch.float32)
            wb = torch.where(counts > 0, wb, torch.zeros(()))
        wext = torch.cat([wb, wb.new_zeros(1)])
        ctx.save_for_backward(x, labels, idx_all, wext)
        ctx.reduction = reduction
        if reduction == "none":
            loss = torch.empty_like(x)
            for r0 in range(0, N, R):
                r1 = min(r0 + R, N)
                xs, ls = x[r0:r1], loss[r0:r1]
                torch._C._nn.softplus(xs, 1, 20, out=ls)
                lab = labels[r0:r1]
                lc = lab.clamp(max=C - 1).unsqueeze(1)
                sp = ls.gather(1, lc)
                ls.scatter_(1, lc, torch.where((lab < C).unsqueeze(1), sp - xs.gather(1, lc), sp))
                ls.mul_(wext[idx_all[r0:r1].long()])
            return loss
        return (wb.double() * sums).sum().to(torch.float32)

    @staticmethod
    def backward(ctx, go):
        x, labels, idx_all, wext = ctx.saved_tensors
        N, C = x.shape
        R = _rows_per_chunk(C)
        grad = torch.empty_like(x)
        scalar = ctx.reduction != "none"
        w = wext * go if scalar else wext
        for r0 in range(0, N, R):
            r1 = min(r0 + R, N)
            gs = grad[r0:r1]
            torch.sigmoid(x[r0:r1], out=gs)
            lab = labels[r0:r1]
            lc = lab.clamp(max=C - 1).unsqueeze(1)
            gp = gs.gather(1, lc)
            gs.scatter_(1, lc, torch.where((lab < C).unsqueeze(1), gp - 1.0, gp))  # p - t
            gs.mul_(w[idx_all[r0:r1].long()])
            if not scalar:
                gs.mul_(go[r0:r1])
        return grad, None, None, None, None, None, None
