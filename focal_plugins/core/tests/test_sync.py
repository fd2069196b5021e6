"""No host synchronisation in the losses."""
import focal_plugins


def test_losses_trace_without_graph_breaks():
    """fullgraph tracing fails on .item(), data-dependent branches or boolean masks: the
    losses (GHM bin counting and EMA included) have none, so they run in CUDA graphs."""
    import torch

    x = torch.randn(30, 5)
    lab = torch.randint(0, 6, (30,))
    cases = [
        (focal_plugins.GHMC(momentum=0.75), (lab, torch.ones(30))),
        (focal_plugins.GHMC(use_sigmoid=False), (lab.clamp(max=4), torch.ones(30))),
        (focal_plugins.GHMR(momentum=0.7), (torch.zeros(30, 5),)),
        (lambda p, t: focal_plugins.sigmoid_focal_loss(p, t, alpha=[0.1, 0.2, 0.3, 0.4, 0.5]), (lab,)),
        (lambda p, t: focal_plugins.softmax_focal_loss(p, t, alpha=0.25, background_index=4), (lab.clamp(max=4),)),
    ]
    for fn, rest in cases:
        compiled = torch.compile(fn, backend="eager", fullgraph=True)
        if isinstance(fn, torch.nn.Module):  # compare against a twin with the same state
            twin = type(fn)(**{k: getattr(fn, k) for k in ("bins", "momentum")})
            if hasattr(fn, "use_sigmoid"):
                twin.use_sigmoid = fn.use_sigmoid
            ref = twin(x, *rest)
        else:
            ref = fn(x, *rest)
        torch.testing.assert_close(compiled(x, *rest), ref)


def test_cuda_losses_do_not_synchronise():
    import pytest
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    x = torch.randn(64, 5, device="cuda", requires_grad=True)
    lab = torch.randint(0, 6, (64,), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [
            focal_plugins.sigmoid_focal_loss(x, lab, alpha=[0.1, 0.2, 0.3, 0.4, 0.5]),
            focal_plugins.softmax_focal_loss(x, lab.clamp(max=4), alpha=0.25, background_index=4),
            focal_plugins.GHMC(momentum=0.75).cuda()(x, lab),
            focal_plugins.GHMC(use_sigmoid=False).cuda()(x, lab.clamp(max=4)),
            focal_plugins.GHMR(momentum=0.7).cuda()(x, torch.zeros_like(x)),
        ]
        sum(losses).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
