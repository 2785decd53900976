#!/usr/bin/python3
"""Benchmark (not a test): writing a quantized GGUF with quantlens-cli against ggml's own
quantizer (ggml_quantize_chunk from the test clients' libggml-base.so through ctypes) on the
same tensors, on a Llama-shaped model of >= 100M parameters generated on the fly in a
temporary folder (never committed). quantlens-cli splits each tensor's rows over every core;
ggml is timed on one thread and on as many threads as there are cores (rows split the same
way, as llama-quantize does; ctypes releases the GIL during the call). Reports wall time, peak
RSS of the CLI (/usr/bin/time -v) and checks every quantized tensor byte for byte.

Run: /usr/bin/python3 tests/bench/bench_ggufwrite.py BUILD_DIR [--schemes q8_0,q4_k,q6_k]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
import make_llama256_gguf  # noqa: E402
from ggmlref import Ggml, read_gguf  # noqa: E402

HIDDEN, FFN, LAYERS, HEADS, VOCAB = 1024, 4096, 6, 16, 8192


def cpu_name():
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = line.split(":", 1)
                info.setdefault(k.strip(), v.strip())
    return "%s, family %s model %s, %d cores" % (info.get("model name", "unknown CPU"), info.get("cpu family", "?"),
                                                 info.get("model", "?"), os.cpu_count())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--schemes", default="q8_0,q4_k,q6_k")
    a = ap.parse_args()
    cli = os.path.join(os.path.abspath(a.build), "app", "quantlens-cli")
    g = Ggml()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "big.gguf")
        make_llama256_gguf.main(src, HIDDEN, FFN, LAYERS, HEADS, VOCAB)
        _, tensors, _ = read_gguf(src)
        params = sum(int(np.prod(ne)) for _, ne, _, _ in tensors)
        linear = [(n, ne, raw) for n, ne, _, raw in tensors if len(ne) == 2 and n != "token_embd.weight"]
        lin_params = sum(int(np.prod(ne)) for _, ne, _ in linear)
        print("CPU: %s; model: %.1fM parameters, %.1fM in %d linear layers" % (
            cpu_name(), params / 1e6, lin_params / 1e6, len(linear)))
        cores = os.cpu_count()
        print("%-6s %12s %14s %16s %14s %10s" % ("scheme", "ours (s)", "ggml 1 thr (s)", "ggml %d thr (s)" % cores,
                                                  "ours peak RSS", "bytes"))
        for scheme in a.schemes.split(","):
            out = os.path.join(tmp, "out-%s.gguf" % scheme)
            t0 = time.perf_counter()
            r = subprocess.run(["/usr/bin/time", "-v", cli, "quantize", src, "--all-linear", "--scheme", scheme,
                                "--out", out, "--json"], capture_output=True, text=True)
            ours = time.perf_counter() - t0
            if r.returncode != 0:
                print(r.stderr[-2000:])
                sys.exit(1)
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
            # ggml on the same tensors: the values already in memory, only the quantizer timed.
            tname = {"q4_k": "q4_K", "q5_k": "q5_K", "q6_k": "q6_K"}.get(scheme, scheme)
            ggml_s = 0.0
            ggml_mt = 0.0
            outs = {}
            for name, ne, raw in linear:
                x = np.frombuffer(raw[:4 * int(np.prod(ne))], dtype="<f4")
                t0 = time.perf_counter()
                outs[name] = g.quantize(tname, x, ne[0])
                ggml_s += time.perf_counter() - t0
                rows = x.size // ne[0]
                parts = [None] * cores
                cuts = [rows * i // cores for i in range(cores + 1)]

                def part(i):
                    parts[i] = g.quantize(tname, x[cuts[i] * ne[0]:cuts[i + 1] * ne[0]], ne[0])
                t0 = time.perf_counter()
                threads = [threading.Thread(target=part, args=(i,)) for i in range(1, cores)]
                for t in threads:
                    t.start()
                part(0)
                for t in threads:
                    t.join()
                ggml_mt += time.perf_counter() - t0
                if b"".join(parts) != outs[name]:
                    print("ggml's own row split differs in %s" % name)
                    sys.exit(1)
            _, written, _ = read_gguf(out)
            for name, ne, _, raw in written:
                if name in outs and raw[:len(outs[name])] != outs[name]:
                    print("MISMATCH in %s" % name)
                    sys.exit(1)
            print("%-6s %12.2f %14.2f %16.2f %10.0f MiB %10d" % (scheme, ours, ggml_s, ggml_mt, rss / 1024,
                                                                 os.path.getsize(out)))
            os.remove(out)
        print("ours: the whole CLI run (read, quantize, write %d MiB source, fsync, rename); ggml: "
              "ggml_quantize_chunk calls only. Every tensor byte-identical." % (os.path.getsize(src) >> 20))


if __name__ == "__main__":
    main()
