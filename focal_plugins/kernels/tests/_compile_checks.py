"""Compile every Triton kernel specialisation the losses launch for a real GPU, without one.

    python -m focal_plugins.kernels.tests._compile_checks [--arch 90] [--arch 80]

The interpreter (``TRITON_INTERPRET=1``, what CI runs the kernels with) executes the kernel
bodies as NumPy and accepts code that the GPU compiler rejects. So a child process drives
the kernel checks of ``_kernel_checks`` (and fp16/bf16 logits through every kernel) under
the interpreter and records each launch's argument types and constexprs; this process
(without the interpreter) then compiles each distinct specialisation ahead of time for the
given CUDA architectures: Triton to PTX, and the PTX through ptxas (shipped in the triton
wheel) to a cubin. Reports registers and spills per kernel (ptxas -v) and shared memory
(Triton's figure). Prints one table and "ALL COMPILED"; exits non-zero on a compile error
or a register spill.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

_PTR = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16",
        torch.int64: "*i64", torch.int32: "*i32", torch.bool: "*i1"}


def _arg_type(v):
    if isinstance(v, torch.Tensor):
        return _PTR[v.dtype]
    if isinstance(v, bool):
        return "i1"
    if isinstance(v, int):
        return "i32" if -2 ** 31 <= v < 2 ** 31 else "i64"
    if isinstance(v, float):
        return "fp32"
    raise TypeError(f"kernel argument of unexpected type {type(v).__name__}: {v!r}")


_OPTIONS = ("num_warps", "num_stages")     # launch options, not kernel arguments


def _record():
    """Run the kernel checks with every kernel wrapped (under the interpreter); returns the
    distinct launches as [kernel name, signature, constexprs, launch options]."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    seen = {}

    def record(name, fn, args, kw, run):
        sig = {fn.arg_names[i]: _arg_type(a) for i, a in enumerate(args)}
        options = {k: kw[k] for k in _OPTIONS if k in kw}
        constexprs = {k: v for k, v in kw.items() if k not in _OPTIONS}
        sig.update((k, "constexpr") for k in constexprs)
        key = (name, tuple(sig.items()), tuple(sorted(kw.items())))
        seen.setdefault(key, (name, sig, constexprs, options))
        return run()

    argv, sys.argv = sys.argv, [sys.argv[0], "cpu"]
    try:
        from focal_plugins.kernels.tests import _kernel_checks as C
    finally:
        sys.argv = argv
    C.wrap_kernels(record)
    gen = torch.Generator().manual_seed(0)
    for check in (C.check_sigmoid_focal, C.check_sigmoid_focal_lowp, C.check_softmax_focal,
                  C.check_ghm, C.check_float_targets, C.check_counts, C.check_robust,
                  C.check_nan):
        check(gen)
    _low_precision_launches(gen)
    _wide_launches(gen)
    return list(seen.values())


def _unit_weigh(counts):
    return torch.ones_like(counts)


def _edges(bins):
    e = torch.linspace(0, 1, bins + 1)
    e[-1] += 1e-6
    return e


def _forward_backward(calls, make_x):
    for call in calls:
        out = call(make_x())
        out.backward(torch.ones_like(out))


def _low_precision_launches(gen):
    """fp16 / bf16 logits through every kernel, forward and backward."""
    from focal_plugins import kernels as KK
    N, C = 64, 7
    edges = _edges(10)
    for dt in (torch.float16, torch.bfloat16):
        for red in ("none", "sum"):
            lab = torch.randint(0, C, (N,), generator=gen)
            _forward_backward((
                lambda x: KK.sigmoid_focal(x, lab, None, torch.full((C,), .25),
                                           torch.full((C,), .75), 1.5, red),
                lambda x: KK.softmax_focal(x, lab, None, None, 2.0, -100, red),
                lambda x: KK.ghm_sigmoid(x, lab, None, edges, _unit_weigh, red),
                lambda x: KK.ghm_softmax(x, lab, None, edges, -100, _unit_weigh, red),
                lambda x: KK.ghm_asl1(x, torch.zeros(N, C, dtype=dt), None, edges, 0.02,
                                      _unit_weigh, red),
            ), lambda: torch.randn(N, C, generator=gen).to(dt).requires_grad_())


def _launches():
    """The recorded launches, from a child process running under the interpreter."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "launches.json")
        subprocess.run([sys.executable, "-m", __spec__.name, "--record", out], env=env,
                       check=True)
        with open(out) as f:
            return json.load(f)


def _wide_launches(gen):
    """The widths that matter (COCO: 80 sigmoid / 81 softmax classes; LVIS: 1203, and a
    wider one) through the kernels whose tiling depends on the number of classes."""
    from focal_plugins import kernels as KK
    edges, N = _edges(30), 8
    for C in (80, 81, 1203, 5000):
        lab = torch.randint(0, C, (N,), generator=gen)
        for red in ("none", "sum"):
            _forward_backward((
                lambda x: KK.softmax_focal(x, lab, None, None, 2.0, -100, red),
                lambda x: KK.ghm_softmax(x, lab, None, edges, -100, _unit_weigh, red),
            ), lambda: torch.randn(N, C, generator=gen).requires_grad_())


def _ptxas_report(ptx, arch):
    """ptxas -v on the PTX: (registers per thread, bytes of spill stores + loads)."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        suffix = "a" if arch == 90 else ""
        from triton.backends.nvidia.compiler import get_ptxas
        out = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}{suffix}", src,
                              "-o", os.path.join(d, "k.cubin")],
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ptxas failed:\n{out.stderr[-3000:]}")
    log = out.stderr + out.stdout
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spill = sum(int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", log))
    return regs, spill


def _describe(sig, constexprs):
    cs = " ".join(f"{k}={v}" for k, v in constexprs.items())
    return f"x {sig['x_ptr'][1:]} {cs}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, action="append",
                    help="CUDA compute capability as an integer (90 = H100); repeatable")
    ap.add_argument("--all", action="store_true", help="print every specialisation")
    ap.add_argument("--record", metavar="JSON", help=argparse.SUPPRESS)   # the child's job
    args = ap.parse_args()
    if args.record:
        with open(args.record, "w") as f:
            json.dump(_record(), f)
        return
    launches = _launches()
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from focal_plugins.kernels import _triton as K
    archs = args.arch or [90]
    failures, rows = [], {}
    for name, sig, constexprs, options in sorted(launches, key=lambda v: v[0]):
        fn = getattr(K, name)
        for arch in archs:
            try:
                ck = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                                    target=GPUTarget("cuda", arch, 32), options=options)
                regs, spill = _ptxas_report(ck.asm["ptx"], arch)
                smem = ck.metadata.shared
            except Exception as e:   # noqa: BLE001  reported below, then exit 1
                failures.append(f"{name} sm_{arch} {_describe(sig, constexprs)}: "
                                f"{type(e).__name__}: {str(e)[-2000:]}")
                continue
            if spill:
                failures.append(f"{name} sm_{arch} {_describe(sig, constexprs)}: "
                                f"{spill} bytes of register spills")
            r = rows.setdefault((name, arch), [0, 0, 0, 0, 0])
            r[0] += 1
            r[1], r[2], r[3] = max(r[1], regs), r[2] + spill, max(r[3], smem)
            r[4] = max(r[4], ck.metadata.num_warps)
            if args.all:
                print(f"  {name} sm_{arch} {_describe(sig, constexprs)}: {regs} regs, "
                      f"{spill} B spills, {smem} B smem")
    print("| kernel | arch | specialisations compiled | max registers/thread | spill bytes "
          "| max shared bytes | max warps |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (name, arch), (n, regs, spill, smem, warps) in sorted(rows.items()):
        print(f"| {name} | sm_{arch} | {n} | {regs} | {spill} | {smem} | {warps} |")
    for f in failures:
        print("FAILED:", f)
    if failures:
        sys.exit(1)
    print(f"ALL COMPILED {sum(r[0] for r in rows.values())} specialisations "
          f"(triton {triton.__version__})")


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1" and "--record" not in sys.argv:
        sys.exit("run without TRITON_INTERPRET=1: the interpreter replaces the compiler")
    main()
