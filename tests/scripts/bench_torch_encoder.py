#!/usr/bin/python3
"""PyTorch baseline for tests/bench/bench_encoder.cpp: the same-shaped encoder (DistilBERT
sized: 6 layers, hidden 768, FFN 3072, 12 heads, 128 tokens), float32 and after
torch.ao.quantization.quantize_dynamic({nn.Linear}, qint8) on the onednn engine, one thread,
median of repeats. The modules are the fixture script's (plain torch, transformers' math).

Run: /usr/bin/python3 tests/scripts/bench_torch_encoder.py [--layers 6] [--hidden 768] [--tokens 128]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_encoder_fixtures import Encoder, init_weights, metrics  # noqa: E402


def median_seconds(model, ids, mask, repeats):
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            model(ids, mask)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "onednn"
    model = Encoder("distilbert", 512, 512, a.hidden, a.hidden // 64, 4 * a.hidden, a.layers).eval()
    init_weights(model, np.random.default_rng(0))
    ids = torch.randint(3, 512, (1, a.tokens))
    mask = torch.ones_like(ids)
    q = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    fp32 = median_seconds(model, ids, mask, a.repeats)
    int8 = median_seconds(q, ids, mask, a.repeats)
    with torch.no_grad():
        cos, sqnr, err = metrics(model(ids, mask), q(ids, mask))
    print(f"torch {torch.__version__}, engine {torch.backends.quantized.engine}, threads {torch.get_num_threads()}")
    print(f"model: DistilBERT-shaped, {a.layers} layers, hidden {a.hidden}, FFN {4 * a.hidden}, {a.hidden // 64} heads; {a.tokens} tokens")
    print(f"fp32  end to end: {fp32 * 1e3:8.2f} ms")
    print(f"int8  end to end: {int8 * 1e3:8.2f} ms   speed-up {fp32 / int8:.2f}x")
    print(f"int8 vs fp32 last hidden state: cosine {cos:.6f}, SQNR {sqnr:.2f} dB, max abs error {err:.4g}")


if __name__ == "__main__":
    main()
