"""CPU fast paths: loss and analytic gradient together, in row chunks that stay in cache.

A plain composition of torch ops makes a full (N, C) temporary per op, and on a 2-core
machine every extra pass over 16 MB shows. Here each chunk of ~256K elements goes through
a fixed sequence of in-place/out= ops on reusable chunk buffers; the gradient is written
once into its (N, C) output. Integer class labels (N,) (C = background) and float
targets (N, C) in [0, 1] (one-hot or soft) are handled; the core reshapes logits of any
other shape to (N, C) first.

Sigmoid focal with hard labels. Every element is first treated as a negative (t = 0):
    p = sigmoid(x), sp = softplus(x) = -log(1 - p)
    loss = a_neg[c] p^g sp,          dloss/dx = a_neg[c] p^g (g (1 - p) sp + p)
then the one positive per row (column label) is replaced, with q = sigmoid(-x):
    loss = a_pos[c] q^g softplus(-x), dloss/dx = -a_pos[c] q^g (g (1 - q) softplus(-x) + q)

Sigmoid focal with float targets: ``_SigmoidFocalSoftCPU`` (its docstring has the math).

GHM-C (sigmoid), labels or float targets: pass 1 writes d = p - t into the gradient buffer and
the bin of g = |d| (floor(g * bins), corrected exactly against the float32 edges) as uint8,
and counts the bins; the caller's ``weigh`` turns the counts into per-bin weights (EMA,
distributed); pass 2 gathers w[bin] once and uses it for both the gradient d * w[bin] and
the loss w[bin] * BCE. Backward only scales the saved gradient by grad_output.

Transcendentals: only sigmoid and log, whose ATen kernels vectorise; softplus / log1p
run scalar code (~12x slower per element) and are avoided (``_softplus``).
"""
import torch
import torch.nn.functional as F

CHUNK = 1 << 18     # elements per chunk: 1 MiB fp32 buffers (fastest of 2^15..2^22 measured)
SMALL = 1 << 15     # up to this many elements (and one chunk), labels take _small_labels:
                    # whole-tensor ops, fewest per call (a small call is host-bound)

TWICE = ("the CPU fast path computes its gradient in forward and scales it in place in "
         "backward, so it backpropagates once per forward: a second backward through the "
         "same graph (retain_graph=True) is not supported; use impl='reference' for that")
DOUBLE = ("the fast paths compute first-order gradients only: double backward "
          "(create_graph=True) is not supported; use impl='reference' for that")


def _scale_once(ctx, go):
    """The saved gradient scaled by grad_output, in place (no second (N, C) buffer); a
    clear error on a second backward or a double backward instead of torch's version check."""
    if torch.is_grad_enabled():
        raise RuntimeError(DOUBLE)
    if getattr(ctx, "done", False):
        raise RuntimeError(TWICE)
    ctx.done = True
    grad, = ctx.saved_tensors
    return grad.mul_(go)


def _rows_per_chunk(C):
    """Rows per chunk: ~CHUNK elements, a multiple of 16 rows where that fits, so every
    chunk but the last spans whole SIMD vectors (elementwise results then match the
    full-tensor op's, whose scalar tail is the same last elements)."""
    r = CHUNK // max(C, 1)
    return r - r % 16 if r >= 16 else max(r, 1)


def _chunks(N, R):
    """(first row, end row, rows) of each chunk of R rows."""
    for r0 in range(0, N, R):
        r1 = min(r0 + R, N)
        yield r0, r1, r1 - r0


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
        if x.numel() <= min(SMALL, CHUNK):
            out, grad = _small_labels(x, labels, weight, a_pos, a_neg, gamma, reduction)
            ctx.save_for_backward(grad)
            return out
        if not isinstance(a_pos, torch.Tensor):
            a_pos, a_neg = torch.full((C,), float(a_pos)), torch.full((C,), float(a_neg))
        R = _rows_per_chunk(C)
        grad = torch.empty_like(x)
        loss = torch.empty_like(x) if reduction == "none" else None
        total = torch.zeros((), dtype=torch.float64)
        P = torch.empty(min(R, N), C)
        S, G, Q = torch.empty_like(P), torch.empty_like(P), torch.empty_like(P)
        wrow = weight if weight is not None and weight.dim() == 1 else None
        wel = weight if weight is not None and weight.dim() == 2 else None
        for r0, r1, n in _chunks(N, R):
            xs = x[r0:r1]
            p, s, gg, q = P[:n], S[:n], G[:n], Q[:n]
            torch.sigmoid(xs, out=p)
            _softplus(xs, s, q)
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
                if wel is not None:
                    q.mul_(wel[r0:r1])
                    lp = lp * wp
                # the positive's column holds the negative term: 0 there, lp added instead
                # (not subtracted afterwards: inf - inf at an infinite logit)
                q.scatter_(1, lc, torch.where(pos, 0.0, q.gather(1, lc).squeeze(1)).unsqueeze(1))
                rowsum = torch.mv(q, a_neg)
                if wrow is not None:
                    rowsum = rowsum * wrow[r0:r1]
                    lp = lp * wrow[r0:r1]
                fix = torch.where(pos, lp, torch.zeros(()))
                total += rowsum.sum(dtype=torch.float64) + fix.sum(dtype=torch.float64)
        ctx.reduction = reduction
        ctx.save_for_backward(grad)
        return loss if reduction == "none" else total.to(torch.float32)

    @staticmethod
    def backward(ctx, go):
        return _scale_once(ctx, go), None, None, None, None, None, None


_CLASSES = {}


def _classes(C):
    """arange(C), made once per C (a label compares with it to mark its column)."""
    a = _CLASSES.get(C)
    if a is None:
        a = _CLASSES[C] = torch.arange(C)
    return a


def _log_sigmoid(z, s_abs):
    """log_sigmoid(z) = min(z, 0) + log(sigmoid(|z|)) from s_abs = sigmoid(|z|) (consumed),
    by ops that vectorise (torch's log_sigmoid runs scalar code, ~5x the time of the rest
    of a small call); absolute error <= ~6e-8 from rounding sigmoid(|z|) near 1."""
    return torch.clamp(z, max=0.0).add_(s_abs.log_())


def _small_labels(x, labels, weight, a_pos, a_neg, gamma, reduction):
    """Sigmoid focal with hard labels on a small (N, C) input, whole-tensor ops (about 20
    per forward + backward): with z = x on the label's column and -x elsewhere,
        p_t = sigmoid(z),  m = 1 - p_t = sigmoid(-z),  ce = -log_sigmoid(z) (``_log_sigmoid``)
        loss = alpha_t m^g ce,  dloss/dx = -s alpha_t m^g (m + g p_t ce),  s = dz/dx = +-1
    (no m^(g-1): finite for every gamma >= 0; p_t ce -> 0 where z = -inf). a_pos, a_neg:
    floats (the same alpha for every class) or (C,) tensors. The sum is torch's float32
    sum. Returns (loss, gradient)."""
    pos = labels.unsqueeze(1) == _classes(x.shape[1])
    nx = torch.neg(x)
    z = torch.where(pos, x, nx)
    m = torch.sigmoid(torch.where(pos, nx, x))
    pt = torch.sigmoid(z)
    ls = _log_sigmoid(z, torch.maximum(pt, m))      # -ce
    mg = m * m if gamma == 2.0 else (m if gamma == 1.0 else torch.pow(m, gamma))
    ag = torch.where(pos, -a_pos if not isinstance(a_pos, torch.Tensor) else a_pos.neg(), a_neg)
    at = ag.abs()                                   # alpha_t (alphas are >= 0)
    if weight is not None:
        w = weight.unsqueeze(1) if weight.dim() == 1 else weight
        at, ag = at * w, ag * w
    # gradient: ag m^g (m - g p_t log_sigmoid(z)), with p_t log_sigmoid(z) = 0 at z = -inf
    grad = pt.mul_(ls).nan_to_num_(0.0)
    grad = torch.add(m, grad, alpha=-gamma).mul_(mg).mul_(ag)
    loss = mg.mul_(ls).mul_(at)                     # -loss
    if reduction == "none":
        return loss.neg_(), grad
    return loss.sum().neg_(), grad


def _alpha_form(a_pos, a_neg):
    """(slope, offset) of alpha_t = offset + slope t: Python floats where alpha is the same
    for every class, (C,) tensors otherwise; None where every factor is 1."""
    if bool((a_pos == 1).all() and (a_neg == 1).all()):
        return None
    if bool((a_pos == a_pos[:1]).all() and (a_neg == a_neg[:1]).all()):
        return float(a_pos[0]) - float(a_neg[0]), float(a_neg[0])
    return a_pos - a_neg, a_neg


class _SigmoidFocalSoftCPU(torch.autograd.Function):
    """Float targets: x, t (N, C) fp32 contiguous, t in [0, 1]; weight None, (N,) or
    (N, C); a_pos, a_neg (C,) fp32; reduction "none" or "sum". Per element, U = 1 - 2t:
        ce = (1 - t) x - log_sigmoid(x)      (torch's BCE with logits, op for op)
        m = 1 - p_t = t + p U,  loss = alpha_t m^g ce
        dloss/dx = alpha_t (m^g (p - t) + g m^(g-1) U p (1 - p) ce)
    ce is computed as torch computes it, so the loss never exceeds torch's BCE where
    alpha_t m^g <= 1 (torchvision's tests check that element for element); log_sigmoid
    is the one scalar-speed op here. Gradient in forward, scaled in backward."""

    @staticmethod
    def forward(ctx, x, t, weight, a_pos, a_neg, gamma, reduction):
        N, C = x.shape
        R = _rows_per_chunk(C)
        grad = torch.empty_like(x)
        loss = torch.empty_like(x) if reduction == "none" else None
        total = torch.zeros((), dtype=torch.float64)
        P = torch.empty(min(R, N), C)
        S, U, M, D, V, A = (torch.empty_like(P) for _ in range(6))
        wrow = weight.unsqueeze(1) if weight is not None and weight.dim() == 1 else weight
        alpha = _alpha_form(a_pos, a_neg)
        for r0, r1, n in _chunks(N, R):
            xs, ts, gs = x[r0:r1], t[r0:r1], grad[r0:r1]
            p, s, u, m, d, v, a = P[:n], S[:n], U[:n], M[:n], D[:n], V[:n], A[:n]
            torch.sigmoid(xs, out=p)
            torch._C._nn.log_sigmoid(xs, out=v)
            torch.mul(ts, -1.0, out=s).add_(1.0).mul_(xs).sub_(v)        # ce
            if not torch.isfinite(xs).all():    # the limits at infinite logits (as bce_with_limits)
                s.masked_fill_((xs == float("inf")) & (ts == 1)
                               | (xs == float("-inf")) & (ts == 0), 0.0)
            torch.mul(ts, -2.0, out=u).add_(1.0)                          # 1 - 2t
            torch.addcmul(ts, p, u, out=m)                                # 1 - p_t
            torch.sub(p, ts, out=d)
            torch.addcmul(p, p, p, value=-1.0, out=v).mul_(u).mul_(s)     # p (1 - p) U ce
            at = None if alpha is None else torch.mul(ts, alpha[0], out=a).add_(alpha[1])
            if gamma == 2.0:
                torch.mul(m, d, out=gs).add_(v, alpha=2.0).mul_(m)
                lf = torch.mul(m, m, out=d)
            elif gamma == 0.0:
                gs.copy_(d)
                lf = None
            elif gamma == 1.0:
                torch.mul(m, d, out=gs).add_(v)
                lf = m
            else:
                mg = torch.pow(m, gamma, out=u)
                # g m^(g-1) as g m^g / m, 0 where m = 0
                torch.div(mg, m, out=gs).nan_to_num_(0.0).mul_(v).mul_(gamma)
                gs.addcmul_(mg, d)
                lf = mg
            if at is not None:
                gs.mul_(at)
                lf = at if lf is None else lf.mul_(at)
            if wrow is not None:
                gs.mul_(wrow[r0:r1])
            out = loss[r0:r1] if reduction == "none" else v
            if lf is None:
                out.copy_(s)
            else:
                torch.mul(lf, s, out=out)
            if wrow is not None:
                out.mul_(wrow[r0:r1])
            if reduction != "none":
                total += out.sum(dtype=torch.float64)
        ctx.save_for_backward(grad)
        return loss if reduction == "none" else total.to(torch.float32)

    @staticmethod
    def backward(ctx, go):
        return _scale_once(ctx, go), None, None, None, None, None, None


def _uniform_edges(edges, bins):
    """True when ``edges`` are the GHM-C edges fl(k / bins) (k < bins, as
    ``torch.arange(bins + 1).float() / bins``) with a last edge above 1, computed by the same
    division ``_bin_index`` uses (checked on a vector long enough for the SIMD loop)."""
    k = torch.arange(bins, dtype=torch.float32).repeat(max(1, 64 // bins + 1))
    e = torch.empty_like(k)
    torch.div(k, bins, out=e)
    return bool((e[:bins] == edges[:bins]).all() and (e == edges[k.long()]).all()
                and edges[bins] > 1.0)


def _bin_index(g, bins, T, U, V):
    """Into T (float, whole numbers): the bin of g in [0, 1] by the rule of
    ``focal_plugins.core.density`` for the uniform edges fl32(i / bins)
    (``_uniform_edges``): i with edges[i] <= g < edges[i+1], the last bin closed, equal to
    ``bucketize(g, edges[1:-1], right=True)`` element for element.

    b = floor(g * bins) can be one off where g * bins rounds across a whole number, so
    it is corrected by one exact comparison each way: up where g >= fl32((b + 1) / bins),
    then down where g < fl32(b / bins) (never both); the comparisons are done as
    arithmetic (sign of the exact difference g - edge, scaled past 1 and clamped), which
    vectorises where boolean ops do not. Reads g only after writing T and V, so g may
    share storage with U (unused; kept for the callers' signature)."""
    torch.mul(g, bins, out=T)
    T.floor_()                                      # b0 in [0, bins]
    torch.add(T, 1.0, out=V)
    torch.div(V, bins, out=V)
    torch.sub(g, V, out=V)                          # g - edge[b0 + 1]: >= 0 -> one up
    V.mul_(_BIG).add_(1.0).clamp_(0.0, 1.0)
    T.add_(V)
    torch.div(T, bins, out=V)
    torch.sub(g, V, out=V)                          # g - edge[b]: < 0 -> one down
    V.mul_(-_BIG).clamp_(0.0, 1.0)
    T.sub_(V).clamp_(0.0, bins - 1)
    return T


# |g - edge| is 0 or at least ~1e-9 for g, edge in [1 / bins, 1] (bins <= 255), so this
# scale takes every nonzero difference past 1 (inf is fine: clamped)
_BIG = 1e30


def _softplus(x, out, tmp):
    """softplus(x) = relu(x) - log(sigmoid(|x|)) into ``out`` (``tmp``: scratch). Only ops
    that vectorise: torch's softplus / log1p take ~1.4 ms per 64K floats here, this ~0.12
    ms. Absolute error <= ~6e-7 (as torch's BCE-with-logits, the reference)."""
    torch.abs(x, out=tmp)
    tmp.sigmoid_()
    tmp.log_()
    torch.clamp(x, min=0.0, out=out)
    return out.sub_(tmp)


def _hard_positive(buf, lab, C, fix):
    """Replace buf[r, lab[r]] by fix(buf[r, lab[r]], lc) on rows whose label is a class
    (lab < C; C = background); lc: the clamped label column (n, 1)."""
    pos = (lab < C).unsqueeze(1)
    lc = lab.clamp(max=C - 1).unsqueeze(1)
    v = buf.gather(1, lc)
    buf.scatter_(1, lc, torch.where(pos, fix(v, lc), v))
    return lc


def _minus_x(xs):
    """BCE of a positive from the negative's softplus(x): softplus(x) - x, and 0 (its limit,
    not inf - inf) at x = +inf."""
    def fix(v, lc):
        xp = xs.gather(1, lc)
        return torch.where(xp == float("inf"), 0.0, v - xp)
    return fix


def _bins_into(g, edges, bins, uniform, T, U, V, I32, idx):
    """The bin of each g of a chunk into ``idx`` (uint8 or int64, shaped like g) by the
    rule of ``focal_plugins.core.density``: the exact arithmetic ``_bin_index`` for the
    uniform edges, else bucketize; a NaN g gets index ``bins`` (no bin). U is overwritten
    (g may live there), T, V, I32 are scratch like g."""
    nan = torch.isnan(g)
    if uniform:
        b = _bin_index(g, bins, T, U, V)
    else:
        b = torch.bucketize(g, edges[1:-1], right=True, out_int32=True)
    if idx.dtype == torch.uint8 and uniform:
        I32.copy_(b)
        idx.copy_(I32)
    else:
        idx.copy_(b)
    idx.masked_fill_(nan, bins)
    return idx


def bin_index(g, edges):
    """The bin of every element of a float32 g (int64, shaped like g; ``bins`` = no bin,
    for NaN), as the CPU fast path bins it: the rule's one CPU implementation, exposed so
    the tests compare it with the reference and the Triton kernels at every edge."""
    bins = edges.numel() - 1
    g = g.detach().to(torch.float32).reshape(1, -1).contiguous()
    T, U, V = torch.empty_like(g), g.clone(), torch.empty_like(g)
    I32 = torch.empty(g.shape, dtype=torch.int32)
    idx = torch.empty(g.shape, dtype=torch.uint8 if bins < 255 else torch.int64)
    uniform = _uniform_edges(edges, bins)
    return _bins_into(U, edges, bins, uniform, T, U, V, I32, idx).long().reshape(-1)


def small_bin_index(g, edges):
    """The bin of every g (int64, shaped like g) by the rule, for the whole-tensor small
    paths: bucketize over edges[1:], so a NaN g (and g >= the last edge) gets ``bins``, no
    bin (torch puts NaN after every boundary; core/tests/test_density.py checks it)."""
    return torch.bucketize(g, edges[1:], right=True)


_ZERO = torch.zeros(1)


def _ghmc_small_hist(x, labels, label_weight, edges, need_grad):
    """``ghmc_sigmoid_hist`` for hard labels on a small input, whole-tensor ops: the bin
    of g = |sigmoid(x) - t| (as the reference computes it) by bucketize, the rule itself;
    also log_sigmoid(z), z = x on the label's column and -x elsewhere (BCE = -that, with
    its limits at infinite logits). Returns (counts, d or None, idx int64, -BCE)."""
    N, C = x.shape
    bins = edges.numel() - 1
    pos = labels.unsqueeze(1) == _classes(C)
    d = torch.sigmoid(x).sub_(pos.to(x.dtype))
    g = d.abs()
    if label_weight is not None:
        ok = label_weight > 0
        g = torch.where(ok.unsqueeze(1) if ok.dim() == 1 else ok, g, float("nan"))
    idx = small_bin_index(g, edges)
    counts = torch.bincount(idx.view(-1), minlength=bins + 1)[:bins]
    ls = _log_sigmoid(torch.where(pos, x, torch.neg(x)), torch.sigmoid(torch.abs(x)))
    return counts, d if need_grad else None, idx, ls


def ghmc_sigmoid_hist(x, labels, label_weight, edges, need_grad):
    """GHM-C pass 1 (no autograd): x (N, C) fp32 contiguous; labels (N,) int64 in [0, C] or
    float targets (N, C) fp32; label_weight None, (N,) or (N, C) (> 0 marks valid; NaN is
    invalid, as on every path); edges (bins + 1,) fp32. Returns (counts (bins,) int64,
    d (N, C) = p - t where need_grad else None, idx (N, C) uint8/int64 with ``bins`` for
    elements in no bin, and -BCE (N, C) for small inputs with labels, else None)."""
    N, C = x.shape
    if not labels.is_floating_point() and x.numel() <= min(SMALL, CHUNK):
        return _ghmc_small_hist(x, labels, label_weight, edges, need_grad)
    bins = edges.numel() - 1
    R = _rows_per_chunk(C)
    soft = labels.is_floating_point()
    # under torch.compile no data-dependent branches: the general bucketize, every mask
    eager = not torch.compiler.is_compiling()
    uniform = eager and _uniform_edges(edges, bins)
    idt = torch.uint8 if bins < 255 else torch.int64
    idx_all = torch.empty((N, C), dtype=idt)
    counts = torch.zeros(bins + 1, dtype=torch.int64)
    grad = torch.empty_like(x) if need_grad else None
    B = torch.empty(min(R, N), C)
    T, U, V = torch.empty_like(B), torch.empty_like(B), torch.empty_like(B)
    I32 = torch.empty(B.shape, dtype=torch.int32)
    inv = None
    if label_weight is not None:
        inv = ~(label_weight > 0)
        inv = inv.unsqueeze(1) if inv.dim() == 1 else inv
        if eager and not bool(inv.any()):
            inv = None
    for r0, r1, n in _chunks(N, R):
        d = grad[r0:r1] if need_grad else B[:n]
        torch.sigmoid(x[r0:r1], out=d)
        if soft:
            d.sub_(labels[r0:r1])
        else:
            _hard_positive(d, labels[r0:r1], C, lambda v, lc: v - 1.0)    # d = p - t
        g = torch.abs(d, out=U[:n])
        # NaN g (a NaN logit) and invalid elements: index bins, counted nowhere, weight 0
        idx = _bins_into(g, edges, bins, uniform, T[:n], U[:n], V[:n], I32[:n],
                         idx_all[r0:r1])
        if inv is not None:
            idx.masked_fill_(inv[r0:r1], bins)
        counts += torch.bincount(idx.view(-1), minlength=bins + 1)
    return counts[:bins], grad, idx_all, None


class _GHMCSigmoidCPU(torch.autograd.Function):
    """GHM-C pass 2: x (N, C) fp32 contiguous; labels (N,) int64 in [0, C], or float
    targets (N, C) fp32 in [0, 1]; d, idx from ``ghmc_sigmoid_hist``; wb (bins,) fp32
    per-bin weights (0 in empty bins); reduction "none" or "sum" (of w * BCE).

    Forward, two passes over row chunks in all: (1, ``ghmc_sigmoid_hist``) p = sigmoid(x),
    d = p - t (kept in the gradient buffer), g = |d|, bin index (uint8 where bins < 255),
    bin counts; the caller turns the counts into per-bin weights w (EMA, distributed);
    (2, here) w[bin] by one gather, grad = d * w[bin], loss = w[bin] * BCE
    (BCE = softplus(x) - x t). Counts are int64 (exact at any size); a NaN logit is counted
    in no bin and gets weight 0, so its loss and gradient stay NaN and no other element's
    weight changes. The sum is accumulated in float64 and rounded once to float32, so it
    can differ from torch's float32 sum of the same terms in the last bit (1 ulp).
    Backward only scales the saved gradient by grad_output (in place: a second backward
    is a clear error)."""

    @staticmethod
    def forward(ctx, x, labels, d, idx_all, wb, reduction, nbce=None):
        N, C = x.shape
        if nbce is not None:        # small input: pass 1 computed -BCE
            w = torch.cat([wb, _ZERO])[idx_all]
            if d is not None:
                ctx.save_for_backward(d.mul_(w))
            out = nbce.mul_(w)
            return out.neg_() if reduction == "none" else out.sum().neg_()
        R = _rows_per_chunk(C)
        soft = labels.is_floating_point()
        wext = torch.cat([wb, wb.new_zeros(1)])
        loss = torch.empty_like(x) if reduction == "none" else None
        total = torch.zeros((), dtype=torch.float64)
        W = torch.empty(min(R, N), C)
        U, V = torch.empty_like(W), torch.empty_like(W)
        I32 = torch.empty(W.shape, dtype=torch.int32)
        for r0, r1, n in _chunks(N, R):
            I32[:n].copy_(idx_all[r0:r1])
            w = torch.index_select(wext, 0, I32[:n].view(-1), out=W[:n].view(-1)).view(n, C)
            if d is not None:
                d[r0:r1].mul_(w)
            xs = x[r0:r1]
            bce = _softplus(xs, U[:n], V[:n])
            if soft:
                bce.addcmul_(xs, labels[r0:r1], value=-1.0)
                if not torch.isfinite(xs).all():    # the limits at infinite logits (as bce_with_limits)
                    t = labels[r0:r1]
                    bce.masked_fill_((xs == float("inf")) & (t == 1)
                                     | (xs == float("-inf")) & (t == 0), 0.0)
            else:
                _hard_positive(bce, labels[r0:r1], C, _minus_x(xs))
            if reduction == "none":
                torch.mul(bce, w, out=loss[r0:r1])
            else:
                # not torch.dot: BLAS accumulates a 256K dot in fp32 (1e-4 off on the
                # near-equal terms of a RetinaNet batch); sum() adds pairwise
                total += bce.mul_(w).sum(dtype=torch.float64)
        ctx.reduction = reduction
        if d is not None:
            ctx.save_for_backward(d)
        return loss if reduction == "none" else total.to(torch.float32)

    @staticmethod
    def backward(ctx, go):
        return _scale_once(ctx, go), None, None, None, None, None, None
