#!/usr/bin/python3
"""GPTQ of one layer: Quantlens vs the torch reference, same layer, same run, one thread each.

Runs build/tests/bench_activations --dump DIR (which also prints the calibration and
whole-model GPTQ figures), then times make_activation_fixtures.gptq_reference on the
dumped weight and Hessian (torch, float64 as Quantlens computes, and float32 as
llm-compressor's GPTQ_PRECISION), and checks that the integers agree.

Run: /usr/bin/python3 tests/scripts/bench_torch_gptq.py [path/to/bench_activations]
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_activation_fixtures import gptq_reference  # noqa: E402


def cpu():
    return time.process_time()


def main():
    torch.set_num_threads(1)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    exe = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "tests", "bench_activations")
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([exe, "--dump", d], check=True, capture_output=True, text=True).stdout
        print(out, end="")
        W = torch.from_numpy(np.load(os.path.join(d, "weight.npy")))
        H = torch.from_numpy(np.load(os.path.join(d, "hessian.npy")))
        q = np.load(os.path.join(d, "q.npy"))
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        t = cpu()
        Q, _, _, _ = gptq_reference(W, H, "torch-symmetric", 4, 128, False, dtype=dtype)
        dt = cpu() - t
        same = float((Q.numpy() == q).mean())
        print(f"torch reference GPTQ ({name} Hessian and updates), same layer {tuple(W.shape)}: {dt:.3f} s CPU; "
              f"integers equal to Quantlens': {100 * same:.3f}%")


if __name__ == "__main__":
    main()
