#!/usr/bin/python3
"""Checks the static input activations of a compressed-tensors export (W8A8 static)
against Quantlens and against PyTorch.

  check_ct_static.py --case DIR PLAN.json Q.json [L X.npy Y.npy] [--case ...]

(several cases in one process: importing torch is the slow part.)

DIR is read by read_compressed_tensors.load() (numpy, written from the format's sources).
  1. Every quantized module has its input_scale (and input_zero_point when asymmetric),
     equal to what `quantlens-cli quantize --json` says Quantlens quantizes that layer's
     input with (tensors[].input_activation: uint8 scale and zero point): the same float32
     scale, and zero point = the uint8 one - 128 (q_u8 = q_i8 + 128).
  2. The same parameters from PyTorch itself: torch._choose_qparams_per_tensor over the
     plan's range [lo, hi] (ChooseQuantizationParams, quint8 0..255, reduce_range as the
     plan says), which is what PyTorch's static quantization of that range uses. Only where
     python3-torch is installed (CI installs none): without it this step is skipped and says
     so; tests/core/tst_dynamiclinear.cpp checks the same function against torch fixtures.
  3. With L: Y.npy is `quantlens-cli run --plan PLAN --layer L --input X.npy`, the
     layer as Quantlens' runner executes the plan (input quantized with its static range,
     weights dequantized); it must equal compressed-tensors' fake quantization of X with
     the exported input_scale/input_zero_point (forward_helpers.py _quantize_dequantize)
     times the exported dequantized weight, within float32 GEMM rounding.
Exits 1 on any difference.
"""
import argparse
import json
import os
import sys

import numpy as np

try:
    import torch
except ImportError:
    torch = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from read_compressed_tensors import fake_quantize_input, load  # noqa: E402


def fail(msg):
    print("check_ct_static: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", nargs="+", action="append", required=True,
                    metavar="DIR PLAN Q [LAYER X Y]")
    for case in ap.parse_args().case:
        if len(case) not in (3, 6):
            fail("--case takes DIR PLAN.json Q.json [LAYER X.npy Y.npy]")
        check(*case)


def check(folder, plan_path, quantize_json, layer=None, input_npy=None, output_npy=None):
    qc, modules, dense, inputs = load(folder)
    with open(plan_path) as f:
        plan = json.load(f)
    with open(quantize_json) as f:
        report = json.load(f)
    acts = plan["activations"]
    if acts["mode"] != "static":
        fail(f"{plan_path} is not a static plan")
    reduce_range = bool(acts.get("reduce_range", True))
    ranges = acts["ranges"]

    ql = {t["name"][: -len(".weight")]: t["input_activation"] for t in report["tensors"] if "input_activation" in t}
    if set(ql) - {"lm_head"} != set(inputs):
        fail(f"modules with static inputs differ: only in quantlens {sorted(set(ql) - set(inputs))[:5]}, "
             f"only in the export {sorted(set(inputs) - set(ql))[:5]}")
    symmetric = 0
    for m, (scale, zp) in sorted(inputs.items()):
        q = ql[m]
        if q["qmin"] != 0 or q["qmax"] != 255 or q["reduce_range"] != reduce_range:
            fail(f"{m}: quantlens reports {q}")
        zp_i8 = 0 if zp is None else zp
        symmetric += zp is None
        # 1. Quantlens' own parameters (the runner's, as quantize --json prints them).
        if np.float32(q["scale"]) != np.float32(scale) or q["zero_point"] - 128 != zp_i8:
            fail(f"{m}: export has scale {scale!r}, zero point {zp_i8}; quantlens quantizes with scale "
                 f"{q['scale']!r}, uint8 zero point {q['zero_point']} (int8 {q['zero_point'] - 128})")
        # 2. PyTorch's parameters for the plan's range.
        lo, hi = ranges[m + ".weight"]
        if [np.float32(lo), np.float32(hi)] != [np.float32(v) for v in q["range"]]:
            fail(f"{m}: quantlens used range {q['range']}, the plan says {[lo, hi]}")
        if torch is None:
            continue
        t_scale, t_zp = torch._choose_qparams_per_tensor(torch.tensor([lo, hi], dtype=torch.float32), reduce_range)
        if np.float32(t_scale) != np.float32(scale) or t_zp - 128 != zp_i8:
            fail(f"{m}: PyTorch's ChooseQuantizationParams over [{lo}, {hi}] gives scale {t_scale!r}, quint8 zero point "
                 f"{t_zp}; the export has {scale!r}, int8 zero point {zp_i8}")
    whose = "Quantlens' and PyTorch's" if torch else "Quantlens' (no python3-torch here: PyTorch's reference skipped)"
    print(f"{folder}: {len(inputs)} input_scale(s) ({symmetric} symmetric) equal {whose} parameters "
          f"(zero point int8 = uint8 - 128, reduce_range {reduce_range})")

    if layer:
        x = np.load(input_npy).astype(np.float32)
        y = np.load(output_npy).astype(np.float32)
        scale, zp = inputs[layer]
        xq = fake_quantize_input(x, scale, zp)
        w = dense[layer + ".weight"].astype(np.float32)
        bias = dense.get(layer + ".bias")
        ref = xq.astype(np.float64) @ w.astype(np.float64).T
        if bias is not None:
            ref += bias
        # float32 GEMM rounding: a few ulps of sum |x||w| per output. One input level off
        # moves an output by scale * |w|, far above this.
        tol = 1e-5 * (np.abs(xq).astype(np.float64) @ np.abs(w).astype(np.float64).T) + 1e-7
        err = np.abs(y - ref)
        if y.shape != ref.shape or (err > tol).any():
            i = np.unravel_index(np.argmax(err - tol), err.shape)
            fail(f"{layer}: quantlens run differs from the export's fake quantization at {list(i)}: "
                 f"{y[i]} vs {ref[i]} (tolerance {tol[i]:.3g})")
        zp0 = 0 if zp is None else zp
        below = int((x / np.float32(scale) + zp0 < -128.5).sum())
        above = int((x / np.float32(scale) + zp0 > 127.5).sum())
        print(f"{layer}: quantlens run --plan equals the export's fake-quantized input x weight "
              f"(max error {err.max():.3g}; {below} inputs clamped low, {above} high, of {x.size})")


if __name__ == "__main__":
    main()
