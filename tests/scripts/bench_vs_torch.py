#!/usr/bin/python3
"""Our int8 dynamic linear against PyTorch 1.13's, side by side, in alternating rounds.

    /usr/bin/python3 tests/scripts/bench_vs_torch.py [--cli build/app/quantlens-cli]
                                                     [--rounds 7] [--tokens 1 8 128]

Not part of the test suite (timings never are). Each round runs `quantlens-cli bench
--json --cpu-time` once (DistilBERT's shapes, one thread) and then PyTorch's fp32
nn.Linear and quantize_dynamic(nn.Linear) (engine onednn, one thread, OpenBLAS pinned to
one thread) on the same shapes, all in thread CPU time. On a shared machine one run of
either side can be 10-20% off, so a ratio is only meaningful per round, with both sides
measured within the same couple of seconds: the table gives the median over rounds of
each time and of the per-round ratio, with the smallest and largest ratio seen, and the
ratio of the two sides' fastest rounds ("best/best"), the figure least disturbed by the
machine's other load. "1.3x needs" is the share of the int8 peak (vpdpbusd zmm, measured
by `bench` just before each of our rows) that a linear 1.3x faster than that round's PyTorch
would have to sustain."""
import argparse
import json
import os
import statistics
import subprocess
import sys

os.environ["QUANTLENS_BENCH_CPU_TIME"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_torch_dynamic as tb  # noqa: E402  (sets OpenBLAS to one thread before torch loads)
import torch  # noqa: E402

SHAPES = ((768, 768), (768, 3072), (3072, 768))


def ours(cli, m):
    """{(k, n, m): seconds} of our whole dynamic linear, from one `bench --json` run."""
    doc = json.loads(subprocess.run([cli, "bench", "--json", "--cpu-time", "--tokens", str(m)],
                                    check=True, capture_output=True, text=True).stdout)
    return {(r["in_features"], r["out_features"], r["tokens"]): (r["int8_seconds"], r.get("vnni_peak_gops", 0))
            for r in doc["rows"]}, doc["isa"]


def theirs(layers, m):
    """{(k, n, m): (fp32 seconds, dynamic int8 seconds)} from PyTorch."""
    out = {}
    for (k, n), (lin, q) in layers.items():
        x = torch.randn(m, k)
        with torch.no_grad():
            out[(k, n, m)] = (tb.per_call(lambda: lin(x)), tb.per_call(lambda: q(x)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", default="build/app/quantlens-cli")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tokens", type=int, nargs="+", default=[1, 8, 128])
    ap.add_argument("--json", help="also write every round's figures to this file")
    a = ap.parse_args()

    layers = {}
    for k, n in SHAPES:
        lin = torch.nn.Linear(k, n)
        layers[(k, n)] = (lin, torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                                       dtype=torch.qint8))
    rounds = []
    isa = "?"
    for r in range(a.rounds):
        o, t = {}, {}
        for m in a.tokens:  # both sides of one token count within the same couple of seconds
            om, isa = ours(a.cli, m)
            o.update(om)
            t.update(theirs(layers, m))
        rounds.append({"ours": o, "torch": t})
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)

    print(f"ours: isa {isa}; torch {torch.__version__}, engine {torch.backends.quantized.engine}; one thread, "
          f"thread CPU time; {a.rounds} alternating rounds; medians (ratio: min..max over rounds)")
    print(f"{'shape':>10} {'M':>4} | {'ours us':>8} {'torch dyn us':>12} {'x torch dyn':>20} {'best/best':>9} "
          f"{'1.3x needs':>10} | {'torch fp32 us':>13} {'x torch fp32':>20}")
    record = []
    for k, n in SHAPES:
        for m in a.tokens:
            key = (k, n, m)
            us = [rd["ours"][key][0] for rd in rounds]
            peak = [rd["ours"][key][1] for rd in rounds]
            fp = [rd["torch"][key][0] for rd in rounds]
            dq = [rd["torch"][key][1] for rd in rounds]
            rq = [d / o for d, o in zip(dq, us)]
            rf = [f / o for f, o in zip(fp, us)]
            med = statistics.median
            # What 1.3x the torch time of each round would take, as a fraction of the vpdpbusd
            # peak measured just before our row of that round (our whole linear must do 2*M*K*N
            # int8 operations; no implementation exceeds the peak).
            need = [2 * m * k * n / (d / 1.3) * 1e-9 / p for d, p in zip(dq, peak) if p > 0]
            needText = f"{med(need) * 100:9.0f}%" if need else f"{'-':>10}"
            print(f"{k:>4}->{n:<5} {m:>4} | {med(us) * 1e6:8.1f} {med(dq) * 1e6:12.1f} "
                  f"{med(rq):6.2f} ({min(rq):5.2f}..{max(rq):5.2f}) {min(dq) / min(us):9.2f} {needText} | "
                  f"{med(fp) * 1e6:13.1f} "
                  f"{med(rf):6.2f} ({min(rf):5.2f}..{max(rf):5.2f})")
            record.append({"in": k, "out": n, "tokens": m, "ours_s": us, "torch_dynamic_s": dq, "torch_fp32_s": fp,
                           "vnni_peak_gops": peak})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"isa": isa, "torch": torch.__version__, "rows": record}, f, indent=1)


if __name__ == "__main__":
    main()
