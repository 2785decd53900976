#!/usr/bin/python3
"""PyTorch 1.13 reference timings for the int8 benchmark (not part of the test suite).

    /usr/bin/python3 tests/scripts/bench_torch_dynamic.py [tokens ...]

One thread, hot cache, median over repeats of the mean time per call, like
`quantlens-cli bench`: fp32 nn.Linear and quantize_dynamic(nn.Linear) with the onednn
engine (Debian's torch has no fbgemm), on DistilBERT's shapes."""
import os
import statistics
import sys
import time

# Before torch loads OpenBLAS: otherwise fp32 runs on OpenBLAS's own thread pool, which
# set_num_threads(1) does not reach, and thread CPU time undercounts it (928 us instead of
# ~1540 us for 768->768, M=128 on the development machine).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
torch.backends.quantized.engine = "onednn"
# QUANTLENS_BENCH_CPU_TIME=1: this thread's CPU time, as bench_gemm does on a loaded machine.
clock = time.thread_time if os.environ.get("QUANTLENS_BENCH_CPU_TIME") else time.perf_counter


def per_call(f, min_seconds=0.02, repeats=7):
    f()
    t0 = clock()
    f()
    once = max(clock() - t0, 1e-9)
    iters = max(1, int(min_seconds / once + 0.999))
    times = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(iters):
            f()
        times.append((clock() - t0) / iters)
    return statistics.median(times)


def main():
    tokens = [int(t) for t in sys.argv[1:]] or [1, 8, 128]
    print(f"torch {torch.__version__}, engine {torch.backends.quantized.engine}, threads {torch.get_num_threads()}, "
          f"{'thread CPU time' if clock is time.thread_time else 'wall time'}")
    print(f"{'shape':>10} {'M':>5} | {'fp32 us':>9} {'dyn int8 us':>11} | {'int8 GOP/s':>10}")
    for k, n in ((768, 768), (768, 3072), (3072, 768)):
        lin = torch.nn.Linear(k, n)
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        for m in tokens:
            x = torch.randn(m, k)
            with torch.no_grad():
                tf = per_call(lambda: lin(x))
                tq = per_call(lambda: q(x))
            print(f"{k:>4}->{n:<5} {m:>5} | {tf * 1e6:9.1f} {tq * 1e6:11.1f} | {2 * m * n * k / tq / 1e9:10.0f}")


if __name__ == "__main__":
    main()
