"""Triton kernels vs reference, in a subprocess: under TRITON_INTERPRET=1 on CPU tensors
(CI), and natively on CUDA where a GPU is present. A subprocess keeps the interpreter
setting out of this pytest process (triton reads it at import)."""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _module(name, *args, interpret, timeout):
    """Run a module of this package in a subprocess (with or without the interpreter);
    returns its stdout after checking that it succeeded."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    out = subprocess.run([sys.executable, "-m", name, *args], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=timeout)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-5000:]
    return out.stdout


def _run(device, *checks):
    stdout = _module("focal_plugins.kernels.tests._kernel_checks", device, *checks,
                     interpret=device == "cpu", timeout=600)
    assert "ALL OK" in stdout, stdout[-3000:]
    return stdout


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("checks", [("sigmoid", "lowp"), ("softmax",), ("ghm", "counts", "bins"),
                                    ("robust", "nan", "autograd"), ("public",), ("float",),
                                    ("budget",)])
def test_kernels_match_reference_interpreter(checks):
    _run("cpu", *checks)


@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="no CUDA GPU")
def test_kernels_match_reference_cuda():
    _run("cuda")


def test_triton_is_imported_lazily_and_optional():
    # importing the package imports no triton; with triton unimportable the kernels
    # report themselves unusable (callers then stay on the reference path)
    code = (
        "import sys, torch\n"
        "import focal_plugins, focal_plugins.kernels as K\n"
        "assert 'triton' not in sys.modules, 'triton imported eagerly'\n"
        "sys.modules['triton'] = None\n"
        "x = torch.randn(4, 3)\n"
        "assert not K.triton_usable(x)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "ok", out.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
def test_kernels_compile_for_gpus_without_spills():
    # the interpreter accepts code the GPU compiler rejects: compile every specialisation
    # the checks launch for Ampere and Hopper (Triton -> PTX -> ptxas cubin), no GPU needed
    stdout = _module("focal_plugins.kernels.tests._compile_checks", "--arch", "80", "--arch",
                     "90", interpret=False, timeout=1200)
    assert "ALL COMPILED" in stdout
    assert "| _softmax_focal_kernel | sm_90 |" in stdout, stdout[-3000:]
