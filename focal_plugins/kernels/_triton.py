"""Triton kernels and their launchers. Imported only on demand (it imports triton).

Every kernel reads its input in its own dtype and does the math in fp32. Reductions are
per-program partial sums (or partial histograms) that the launcher sums with torch, so
there are no global atomics and no host synchronisation anywhere.

Kernel modes (constexpr ``MODE``):
    0  write the elementwise (or per-row) loss
    1  write one partial loss sum per program
    2  write the gradient, scaled by a scalar grad_output read from device memory
    3  write the gradient, scaled by an elementwise (or per-row) grad_output
"""
import torch
import triton
import triton.language as tl

BLOCK = 1024        # elements per program of the elementwise kernels
EWARPS = 8          # their warps: 4 elements per thread (with 4 warps, 8 per thread and
                    # 112 registers spill on sm_80, see kernels/tests/_compile_checks.py)
HBLOCK = 256        # elements per inner step of the histogram pass
HITERS = 16         # inner steps per program of the histogram pass
ROW_TILE = 1024     # elements per program of the row (softmax) kernels
RITERS = 8          # row tiles per program of the softmax histogram pass


FILL_NAN = False    # tests: prefill every output so an element left unwritten shows up


def _new(shape, dtype, device):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if FILL_NAN:
        return torch.full(shape, float("nan") if dtype.is_floating_point else -(1 << 20),
                          dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def _new_like(x):
    return _new(x.shape, x.dtype, x.device)


def _cdiv(a, b):
    return (a + b - 1) // b


def _gamma_int(gamma):
    """Small integer gammas get exact repeated multiplication instead of exp(g*log m)."""
    g = float(gamma)
    return int(g) if g.is_integer() and 0 <= g <= 4 else -1


@triton.jit
def _powg(m, gamma, GI: tl.constexpr):
    # m >= 0. Returns (m**gamma, gamma * m**(gamma-1)) with 0**0 = 1 and the derivative
    # taken as 0 where m == 0 (the loss it multiplies is 0 there).
    if GI == 0:
        mg = tl.full(m.shape, 1.0, tl.float32)
        dg = tl.zeros(m.shape, tl.float32)
    elif GI == 1:
        mg = m
        dg = tl.full(m.shape, 1.0, tl.float32)
    elif GI == 2:
        mg = m * m
        dg = 2.0 * m
    elif GI == 3:
        mg = m * m * m
        dg = 3.0 * m * m
    elif GI == 4:
        m2 = m * m
        mg = m2 * m2
        dg = 4.0 * m2 * m
    else:
        pos = m > 0
        ms = tl.where(pos, m, 1.0)
        mg = tl.where(pos, tl.exp(gamma * tl.log(ms)), 0.0)
        dg = tl.where(pos, gamma * mg / ms, 0.0)
    return mg, dg


@triton.jit
def _times_grad_out(v, go_ptr, idx, msk, MODE: tl.constexpr):
    # v scaled by the upstream gradient: MODE 2 one scalar at go_ptr, MODE 3 one value per idx
    if MODE == 2:
        go = tl.load(go_ptr).to(tl.float32)
    else:
        go = tl.load(go_ptr + idx, mask=msk, other=0.0).to(tl.float32)
    return v * go


@triton.jit
def _log1p_small(e):
    # log(1 + e) for 0 <= e <= 1, accurate also for tiny e (series below 1e-3).
    return tl.where(e < 1e-3, e * (1.0 - e * (0.5 - e * (1.0 / 3.0))), tl.log(1.0 + e))


@triton.jit
def _bce_limit(ce, x, t, LABELS: tl.constexpr):
    # BCE's limit 0 where x = +inf, t = 1 or x = -inf, t = 0 (inf - inf, inf * 0 give NaN):
    # there x (1 - 2t) = -inf; a float t must also be hard (t (1 - t) = 0), labels always are
    lim = x * (1.0 - 2.0 * t) == float("-inf")
    if not LABELS:
        lim = lim & (t * (1.0 - t) == 0.0)
    return tl.where(lim, 0.0, ce)


@triton.jit
def _sigmoid_parts(x):
    # p = sigmoid(x), q = sigmoid(-x) = 1 - p (both without cancellation), softplus(-|x|) term
    e = tl.exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    p = tl.where(x >= 0, r, e * r)
    q = tl.where(x >= 0, e * r, r)
    return p, q, _log1p_small(e)


# --------------------------------------------------------------------------- sigmoid focal
@triton.jit
def _sigmoid_focal_kernel(x_ptr, lab_ptr, t_ptr, w_ptr, ap_ptr, an_ptr, go_ptr, out_ptr,
                          n, C, gamma,
                          LABELS: tl.constexpr, WMODE: tl.constexpr, GI: tl.constexpr,
                          MODE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    msk = offs < n
    row = offs // C
    col = offs - row * C
    x = tl.load(x_ptr + offs, mask=msk, other=0.0).to(tl.float32)
    if LABELS:
        lab = tl.load(lab_ptr + row, mask=msk, other=-1)
        t = (lab == col).to(tl.float32)
    else:
        t = tl.load(t_ptr + offs, mask=msk, other=0.0).to(tl.float32)
    ap = tl.load(ap_ptr + col, mask=msk, other=0.0)
    an = tl.load(an_ptr + col, mask=msk, other=0.0)
    at = ap * t + an * (1.0 - t)
    if WMODE == 1:
        at = at * tl.load(w_ptr + row, mask=msk, other=0.0).to(tl.float32)
    elif WMODE == 2:
        at = at * tl.load(w_ptr + offs, mask=msk, other=0.0).to(tl.float32)
    p, q, l1p = _sigmoid_parts(x)
    m = p * (1.0 - t) + q * t              # 1 - p_t
    mg, dg = _powg(m, gamma, GI)
    ce = _bce_limit(tl.maximum(x, 0.0) - x * t + l1p, x, t, LABELS)
    if MODE < 2:
        loss = tl.where(msk, at * ce * mg, 0.0)
        if MODE == 0:
            tl.store(out_ptr + offs, loss, mask=msk)
        else:
            tl.store(out_ptr + pid, tl.sum(loss, axis=0))
    else:
        g = at * ((p - t) * mg + ce * dg * (1.0 - 2.0 * t) * p * q)
        g = _times_grad_out(g, go_ptr, offs, msk, MODE)
        tl.store(out_ptr + offs, g.to(out_ptr.dtype.element_ty), mask=msk)


def _wmode(weight):
    # WMODE / LWMODE: 0 no weight, 1 one per row, 2 one per element
    return 0 if weight is None else (1 if weight.dim() == 1 else 2)


def sigmoid_focal_launch(x, target, weight, a_pos, a_neg, gamma, mode, go=None):
    """x (N, C) contiguous; target long (N,) or float (N, C); weight None, (N,) or (N, C)
    contiguous fp32; a_pos, a_neg (C,) fp32. mode as in the module docstring."""
    n = x.numel()
    C = x.shape[1] if x.dim() == 2 else 1
    labels = target.dtype in (torch.int64, torch.int32)
    grid = (max(_cdiv(n, BLOCK), 1),)
    if mode == 0:
        out = _new(x.shape, torch.float32, x.device)
    elif mode == 1:
        out = _new(grid[0], torch.float32, x.device)
    else:
        out = _new_like(x)
    dummy = a_pos
    _sigmoid_focal_kernel[grid](
        x, target if labels else dummy, dummy if labels else target,
        dummy if weight is None else weight, a_pos, a_neg, dummy if go is None else go, out,
        n, C, float(gamma),
        LABELS=labels, WMODE=_wmode(weight), GI=_gamma_int(gamma), MODE=mode, BLOCK=BLOCK,
        num_warps=EWARPS)
    return out.sum() if mode == 1 else out


# --------------------------------------------------------------------------- softmax rows
@triton.jit
def _softmax_rows(x_ptr, lab_ptr, rows, cols, N, C, ignore_index):
    rmask = rows < N
    cmask = cols < C
    m2 = rmask[:, None] & cmask[None, :]
    offs = rows.to(tl.int64)[:, None] * C + cols[None, :]
    x = tl.load(x_ptr + offs, mask=m2, other=float("-inf")).to(tl.float32)
    x = tl.where(rmask[:, None], x, 0.0)           # padded rows: finite values
    lab = tl.load(lab_ptr + rows, mask=rmask, other=ignore_index)
    valid = rmask & (lab != ignore_index)
    labc = tl.where(valid, lab, 0).to(tl.int32)
    mx = tl.max(x, axis=1)
    ex = tl.exp(x - mx[:, None])
    ex = tl.where(m2 | (~rmask[:, None] & cmask[None, :]), ex, 0.0)
    s = tl.sum(ex, axis=1)
    onehot = cols[None, :] == labc[:, None]
    xt = tl.sum(tl.where(onehot, x, 0.0), axis=1)
    rest = tl.sum(tl.where(onehot, 0.0, ex), axis=1)
    lp = xt - mx - tl.log(s)                       # log p_t
    m = rest / s                                   # 1 - p_t without cancellation
    pj = ex / s[:, None]
    return offs, m2, valid, labc, onehot, lp, m, pj


@triton.jit
def _softmax_focal_kernel(x_ptr, lab_ptr, w_ptr, a_ptr, go_ptr, out_ptr,
                          N, C, gamma, ignore_index,
                          HAS_W: tl.constexpr, HAS_A: tl.constexpr, GI: tl.constexpr,
                          MODE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    offs, m2, valid, labc, onehot, lp, m, pj = _softmax_rows(
        x_ptr, lab_ptr, rows, cols, N, C, ignore_index)
    k = tl.where(valid, 1.0, 0.0)
    if HAS_A:
        k = k * tl.load(a_ptr + labc, mask=valid, other=0.0)
    if HAS_W:
        k = k * tl.load(w_ptr + rows, mask=valid, other=0.0).to(tl.float32)
    mg, dg = _powg(m, gamma, GI)
    if MODE < 2:
        loss = tl.where(valid, -k * mg * lp, 0.0)
        if MODE == 0:
            tl.store(out_ptr + rows, loss, mask=rows < N)
        else:
            tl.store(out_ptr + pid, tl.sum(loss, axis=0))
    else:
        # d/dx_j [-a m^g log p_t] = a (p_j - [j=t]) (m^g - g m^(g-1) p_t log p_t)
        coef = k * (mg - dg * (1.0 - m) * lp)
        coef = _times_grad_out(coef, go_ptr, rows, valid, MODE)
        g = coef[:, None] * (pj - tl.where(onehot, 1.0, 0.0))
        tl.store(out_ptr + offs, g.to(out_ptr.dtype.element_ty), mask=m2)


def _row_blocks(C):
    """(rows per program, padded columns, warps) for the row kernels: tiles of ROW_TILE
    elements on 4 warps, about 8 per thread (larger tiles spill registers at C = 81 on
    sm_90, see kernels/tests/_compile_checks.py); rows wider than a tile get more warps."""
    bc = triton.next_power_of_2(max(C, 1))
    br = max(1, min(64, ROW_TILE // bc))
    return br, bc, max(4, min(16, bc // 256))


def softmax_focal_launch(x, labels, weight, a, gamma, ignore_index, mode, go=None):
    """x (N, C) contiguous; labels long (N,); weight None or (N,) fp32; a None or (C,) fp32."""
    N, C = x.shape
    br, bc, warps = _row_blocks(C)
    if mode >= 2 and _gamma_int(gamma) < 0:
        # the gradient with exp/log powers holds more per element: twice the threads for
        # the same tile (4 elements each; 8 spilled 16 bytes on sm_80 at BLOCK_C = 16)
        warps *= 2
    grid = (max(_cdiv(N, br), 1),)
    if mode == 0:
        out = _new(N, torch.float32, x.device)
    elif mode == 1:
        out = _new(grid[0], torch.float32, x.device)
    else:
        out = _new_like(x)
    dummy = x
    _softmax_focal_kernel[grid](
        x, labels, dummy if weight is None else weight, dummy if a is None else a,
        dummy if go is None else go, out, N, C, float(gamma), int(ignore_index),
        HAS_W=weight is not None, HAS_A=a is not None, GI=_gamma_int(gamma), MODE=mode,
        BLOCK_R=br, BLOCK_C=bc, num_warps=warps)
    return out.sum() if mode == 1 else out


# --------------------------------------------------------------------------- GHM
@triton.jit
def _ghm_elem(x_ptr, lab_ptr, t_ptr, offs, msk, C, mu, KIND: tl.constexpr, LABELS: tl.constexpr):
    """Per element: (loss, dloss/dx, gradient norm g). KIND 0: BCE with logits, g = |p - t|;
    KIND 1: ASL1 sqrt(d^2 + mu^2) - mu with d = x - t, g = |d| / sqrt(d^2 + mu^2)."""
    x = tl.load(x_ptr + offs, mask=msk, other=0.0).to(tl.float32)
    if LABELS:
        row = offs // C
        lab = tl.load(lab_ptr + row, mask=msk, other=-1)
        t = (lab == (offs - row * C)).to(tl.float32)
    else:
        t = tl.load(t_ptr + offs, mask=msk, other=0.0).to(tl.float32)
    if KIND == 0:
        p, q, l1p = _sigmoid_parts(x)
        loss = _bce_limit(tl.maximum(x, 0.0) - x * t + l1p, x, t, LABELS)
        d = p - t
        g = tl.abs(d)
    else:
        d0 = x - t
        s = tl.sqrt(d0 * d0 + mu * mu)
        loss = s - mu
        d = d0 / s
        g = tl.abs(d)
    return loss, d, g


@triton.jit
def _bin_of(g, e_ptr, bins):
    # the rule of focal_plugins.core.density: i with edges[i] <= g < edges[i+1], the first
    # bin open below and the last open above (edges[i] = fl32(i / bins)): start from
    # floor(g * bins), clamped, and correct the one-off rounding cases against the edges.
    b = tl.minimum(tl.maximum(tl.floor(g * bins).to(tl.int32), 0), bins - 1)
    lo = tl.load(e_ptr + b)
    b = tl.where((g < lo) & (b > 0), b - 1, b)
    hi = tl.load(e_ptr + b + 1)
    return tl.where((g >= hi) & (b < bins - 1), b + 1, b)


@triton.jit
def _bin_or_none(g, valid, e_ptr, bins, NB: tl.constexpr):
    # the bin of g where the element is valid and g is not NaN, else NB (counted nowhere)
    return tl.where(valid & (g == g), _bin_of(g, e_ptr, bins), NB)


@triton.jit
def _bin_index_kernel(g_ptr, e_ptr, out_ptr, n, bins, NB: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    msk = offs < n
    g = tl.load(g_ptr + offs, mask=msk, other=0.0)
    b = _bin_or_none(g, msk, e_ptr, bins, NB)
    tl.store(out_ptr + offs, tl.where(b == NB, bins, b), mask=msk)


def bin_index(g, edges):
    """The bin of every element of a float32 g (int64; ``bins`` = no bin, for NaN), by the
    kernels' own ``_bin_or_none`` (for the tests of the binning rule)."""
    bins = edges.numel() - 1
    g = g.detach().to(torch.float32).reshape(-1).contiguous()
    out = _new(g.numel(), torch.int32, g.device)
    nb = triton.next_power_of_2(bins + 1)
    _bin_index_kernel[(max(_cdiv(g.numel(), BLOCK), 1),)](
        g, edges.detach().to(torch.float32).contiguous(), out, g.numel(), int(bins), NB=nb,
        BLOCK=BLOCK)
    return out.long()


@triton.jit
def _ghm_elem_hist_kernel(x_ptr, lab_ptr, t_ptr, lw_ptr, e_ptr, cnt_ptr, sum_ptr, n, C, mu, bins,
                          KIND: tl.constexpr, LABELS: tl.constexpr, LWMODE: tl.constexpr,
                          NB: tl.constexpr, HBLOCK: tl.constexpr, HITERS: tl.constexpr):
    pid = tl.program_id(0)
    bidx = tl.arange(0, NB)
    cnt = tl.zeros((NB,), tl.int32)
    acc = tl.zeros((NB,), tl.float32)
    for i in range(HITERS):
        offs = (pid.to(tl.int64) * HITERS + i) * HBLOCK + tl.arange(0, HBLOCK)
        msk = offs < n
        loss, d, g = _ghm_elem(x_ptr, lab_ptr, t_ptr, offs, msk, C, mu, KIND, LABELS)
        valid = msk
        if LWMODE == 1:
            valid = valid & (tl.load(lw_ptr + offs // C, mask=msk, other=0.0) > 0)
        elif LWMODE == 2:
            valid = valid & (tl.load(lw_ptr + offs, mask=msk, other=0.0) > 0)
        nan = msk & (g != g)           # a NaN logit: in no bin, but its NaN reaches the sum
        b = _bin_or_none(g, valid, e_ptr, bins, NB)          # NB: counted nowhere
        hit = b[:, None] == bidx[None, :]
        cnt += tl.sum(hit.to(tl.int32), axis=0)
        acc += tl.sum(tl.where(hit, loss[:, None], 0.0), axis=0)
        acc += tl.where(bidx == 0, tl.sum(tl.where(nan, loss, 0.0), axis=0), 0.0)
    tl.store(cnt_ptr + pid * NB + bidx, cnt)
    tl.store(sum_ptr + pid * NB + bidx, acc)


@triton.jit
def _ghm_elem_apply_kernel(x_ptr, lab_ptr, t_ptr, lw_ptr, e_ptr, wb_ptr, go_ptr, out_ptr, n, C, mu,
                           bins, KIND: tl.constexpr, LABELS: tl.constexpr,
                           LWMODE: tl.constexpr, MODE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    msk = offs < n
    loss, d, g = _ghm_elem(x_ptr, lab_ptr, t_ptr, offs, msk, C, mu, KIND, LABELS)
    valid = msk
    if LWMODE == 1:
        valid = valid & (tl.load(lw_ptr + offs // C, mask=msk, other=0.0) > 0)
    elif LWMODE == 2:
        valid = valid & (tl.load(lw_ptr + offs, mask=msk, other=0.0) > 0)
    # a NaN g loads some bin's finite weight; loss * w and d * w stay NaN all the same
    w = tl.load(wb_ptr + _bin_of(g, e_ptr, bins), mask=valid, other=0.0)
    if MODE == 0:
        tl.store(out_ptr + offs, loss * w, mask=msk)
    else:
        gr = d * w
        gr = _times_grad_out(gr, go_ptr, offs, msk, MODE)
        tl.store(out_ptr + offs, gr.to(out_ptr.dtype.element_ty), mask=msk)


def ghm_elem_hist(x, target, label_weight, edges, bins, kind, mu=0.0):
    """Pass 1. Returns (counts[bins] int64, exact: int32 per program, summed in int64;
    per-bin loss sums[bins] fp32), both on x's device. A NaN g (NaN logit) is counted in no
    bin and gets weight 0 in pass 2 (its loss and gradient stay NaN); its NaN loss is added
    to bin 0's sum, so a reduced loss is NaN as on the other paths."""
    n = x.numel()
    C = x.shape[-1] if x.dim() >= 2 else 1
    labels = target.dtype in (torch.int64, torch.int32)
    nb = triton.next_power_of_2(bins + 1)
    P = max(_cdiv(n, HBLOCK * HITERS), 1)
    cnt = _new((P, nb), torch.int32, x.device)
    sums = _new((P, nb), torch.float32, x.device)
    dummy = sums
    _ghm_elem_hist_kernel[(P,)](
        x, target if labels else dummy, dummy if labels else target,
        dummy if label_weight is None else label_weight, edges, cnt, sums, n, C, float(mu), int(bins),
        KIND=kind, LABELS=labels, LWMODE=_wmode(label_weight), NB=nb, HBLOCK=HBLOCK,
        HITERS=HITERS)
    return cnt.sum(0)[:bins], sums.sum(0)[:bins]


def ghm_elem_apply(x, target, label_weight, edges, wb, bins, kind, mode, mu=0.0, go=None):
    """Pass 2: elementwise weighted loss (mode 0) or gradient (modes 2, 3). wb: (bins,) fp32."""
    n = x.numel()
    C = x.shape[-1] if x.dim() >= 2 else 1
    labels = target.dtype in (torch.int64, torch.int32)
    grid = (max(_cdiv(n, BLOCK), 1),)
    out = _new(x.shape, torch.float32, x.device) if mode == 0 \
        else _new_like(x)
    dummy = wb
    _ghm_elem_apply_kernel[grid](
        x, target if labels else dummy, dummy if labels else target,
        dummy if label_weight is None else label_weight, edges, wb, dummy if go is None else go, out,
        n, C, float(mu), int(bins), KIND=kind, LABELS=labels, LWMODE=_wmode(label_weight),
        MODE=mode, BLOCK=BLOCK, num_warps=EWARPS)
    return out


@triton.jit
def _ghm_rows_hist_kernel(x_ptr, lab_ptr, lw_ptr, e_ptr, cnt_ptr, sum_ptr, N, C, ignore_index, bins,
                          HAS_LW: tl.constexpr, NB: tl.constexpr, BLOCK_R: tl.constexpr,
                          BLOCK_C: tl.constexpr, RITERS: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    bidx = tl.arange(0, NB)
    cnt = tl.zeros((NB,), tl.int32)
    acc = tl.zeros((NB,), tl.float32)
    for i in range(RITERS):
        rows = (pid * RITERS + i) * BLOCK_R + tl.arange(0, BLOCK_R)
        offs, m2, valid, labc, onehot, lp, m, pj = _softmax_rows(
            x_ptr, lab_ptr, rows, cols, N, C, ignore_index)
        g = 1.0 - tl.exp(lp)
        nan = valid & (g != g)      # a NaN row (not ignored): in no bin, NaN reaches the sum
        if HAS_LW:
            valid = valid & (tl.load(lw_ptr + rows, mask=valid, other=0.0) > 0)
        b = _bin_or_none(g, valid, e_ptr, bins, NB)
        hit = b[:, None] == bidx[None, :]
        cnt += tl.sum(hit.to(tl.int32), axis=0)
        acc += tl.sum(tl.where(hit, -lp[:, None], 0.0), axis=0)
        acc += tl.where(bidx == 0, tl.sum(tl.where(nan, -lp, 0.0), axis=0), 0.0)
    tl.store(cnt_ptr + pid * NB + bidx, cnt)
    tl.store(sum_ptr + pid * NB + bidx, acc)


@triton.jit
def _ghm_rows_apply_kernel(x_ptr, lab_ptr, lw_ptr, e_ptr, wb_ptr, go_ptr, out_ptr, N, C,
                           ignore_index, bins, HAS_LW: tl.constexpr, MODE: tl.constexpr,
                           BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    offs, m2, valid, labc, onehot, lp, m, pj = _softmax_rows(
        x_ptr, lab_ptr, rows, cols, N, C, ignore_index)
    kept = valid                    # not ignore_index: a NaN here stays NaN in the output
    if HAS_LW:
        valid = valid & (tl.load(lw_ptr + rows, mask=valid, other=0.0) > 0)
    g = 1.0 - tl.exp(lp)
    # a NaN row loads some bin's finite weight: its loss and gradient stay NaN all the same
    w = tl.load(wb_ptr + _bin_of(g, e_ptr, bins), mask=valid, other=0.0)
    if MODE == 0:
        tl.store(out_ptr + rows, tl.where(kept, -lp * w, 0.0), mask=rows < N)
    else:
        w = _times_grad_out(w, go_ptr, rows, valid, MODE)
        g = w[:, None] * (pj - tl.where(onehot, 1.0, 0.0))
        tl.store(out_ptr + offs, g.to(out_ptr.dtype.element_ty), mask=m2)


def ghm_rows_hist(x, labels, label_weight, edges, bins, ignore_index):
    """Softmax GHM-C pass 1 over rows: g = 1 - p_t per row."""
    N, C = x.shape
    br, bc, warps = _row_blocks(C)
    nb = triton.next_power_of_2(bins + 1)
    P = max(_cdiv(N, br * RITERS), 1)
    cnt = _new((P, nb), torch.int32, x.device)
    sums = _new((P, nb), torch.float32, x.device)
    _ghm_rows_hist_kernel[(P,)](
        x, labels, sums if label_weight is None else label_weight, edges, cnt, sums, N, C,
        int(ignore_index), int(bins), HAS_LW=label_weight is not None, NB=nb, BLOCK_R=br,
        BLOCK_C=bc, RITERS=RITERS, num_warps=warps)
    return cnt.sum(0)[:bins], sums.sum(0)[:bins]


def ghm_rows_apply(x, labels, label_weight, edges, wb, bins, ignore_index, mode, go=None):
    N, C = x.shape
    br, bc, warps = _row_blocks(C)
    grid = (max(_cdiv(N, br), 1),)
    out = _new(N, torch.float32, x.device) if mode == 0 \
        else _new_like(x)
    _ghm_rows_apply_kernel[grid](
        x, labels, wb if label_weight is None else label_weight, edges, wb, wb if go is None else go,
        out, N, C, int(ignore_index), int(bins), HAS_LW=label_weight is not None, MODE=mode,
        BLOCK_R=br, BLOCK_C=bc, num_warps=warps)
    return out
