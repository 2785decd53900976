#!/usr/bin/python3
"""Benchmark (not a test): writing a quantized GGUF with quantlens-cli against ggml's own
quantizer on the same tensors and against llama.cpp's own whole-file quantizer, side by side
in one run, on a Llama-shaped model of >= 100M parameters generated on the fly in a
temporary folder (never committed). Contenders, per scheme:

- ours: the whole `quantlens-cli quantize --all-linear` run (open, quantize, check, write,
  fsync, rename), on every core the process may use and on one core (`taskset -c 0`: the
  writer splits rows over the cores of its affinity mask, so that is one thread);
- ggml_quantize_chunk (the test clients' libggml-base.so through ctypes) on the same tensors,
  the float values already in memory, only the calls timed: one thread, and rows split over
  every core as llama-quantize splits them (ctypes releases the GIL during the call);
- llama_model_quantize (the test clients' libllama, the code behind llama-quantize) with
  nthread = 1, whole file in and out, in a child process; it picks its own tensor set (every
  2-D weight, token_embd too) and, for q4_k, llama's Q4_K_S types. Beside it, ours on one
  core doing the same work (`--tensor` every 2-D weight, or `--scheme q4_k_s`), whose
  tensors must equal llama's byte for byte.

Each contender runs --reps times (interleaved, so load from other jobs spreads over all);
the best wall time and the best CPU time (user + sys) are printed. Peak RSS comes from
/usr/bin/time -v; it is compared with the largest quantized tensor's float32 copy.
Every quantized tensor is checked byte for byte against ggml's.

Run: /usr/bin/python3 tests/bench/bench_ggufwrite.py BUILD_DIR [--schemes q8_0,q4_k,q6_k] [--reps 2]
"""
import argparse
import json
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
from ggmlref import Ggml, TYPES, read_gguf  # noqa: E402

HIDDEN, FFN, LAYERS, HEADS, VOCAB = 1024, 4096, 6, 16, 8192
# llama_ftype for each scheme (llama.h): what `llama-quantize IN OUT TYPE` would be asked.
LLAMA_FTYPE = {"q8_0": (7, "Q8_0"), "q4_0": (2, "Q4_0"), "q4_k": (14, "Q4_K_S"), "q5_k": (16, "Q5_K_S"),
               "q6_k": (18, "Q6_K")}
OUR_MIX = {"q4_k": "q4_k_s", "q5_k": "q5_k_s"}  # our name for llama's mix, where it is one


def cpu_name():
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = line.split(":", 1)
                info.setdefault(k.strip(), v.strip())
    return "%s, family %s model %s, %d cores" % (info.get("model name", "unknown CPU"), info.get("cpu family", "?"),
                                                 info.get("model", "?"), os.cpu_count())


def timed(cmd):
    """Runs cmd under /usr/bin/time -v: (wall s, cpu s, peak RSS KiB, stdout)."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-3000:])
        sys.exit(1)

    def field(name):
        return float(re.search(re.escape(name) + r": ([\d.]+)", r.stderr).group(1))
    cpu = field("User time (seconds)") + field("System time (seconds)")
    return wall, cpu, int(field("Maximum resident set size (kbytes)")), r.stdout


def llama_child(src, dst, ftype):
    """In a child process: llama_model_quantize(src, dst, {nthread 1, ftype}); prints its time."""
    import llamaquant
    import ctypes
    import struct
    lib = llamaquant._llama()
    p = lib.llama_model_quantize_default_params()
    buf = bytearray(bytes(p.raw))
    struct.pack_into("<ii", buf, 0, 1, ftype)
    cbuf = (ctypes.c_ubyte * len(buf)).from_buffer(buf)
    t0, c0 = time.perf_counter(), time.process_time()
    rc = lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.addressof(cbuf))
    print(json.dumps({"rc": rc, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))


def best(runs, i):
    return min(r[i] for r in runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--schemes", default="q8_0,q4_k,q6_k")
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    cli = os.path.join(os.path.abspath(a.build), "app", "quantlens-cli")
    g = Ggml()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "big.gguf")
        import make_llama256_gguf
        make_llama256_gguf.main(src, HIDDEN, FFN, LAYERS, HEADS, VOCAB)
        _, tensors, _ = read_gguf(src)
        params = sum(int(np.prod(ne)) for _, ne, _, _ in tensors)
        linear = [(n, ne, raw) for n, ne, _, raw in tensors if len(ne) == 2 and n != "token_embd.weight"]
        matrices = [n for n, ne, _, _ in tensors if len(ne) == 2]
        lin_params = sum(int(np.prod(ne)) for _, ne, _ in linear)
        largest = max(4 * int(np.prod(ne)) for _, ne, _ in linear)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        print("CPU: %s; load average before: %s" % (cpu_name(), load))
        print("model: %.1fM parameters (%d MiB of float32), %.1fM in %d linear layers; largest tensor's float32 "
              "copy %.0f MiB; best of %d runs each" % (params / 1e6, os.path.getsize(src) >> 20, lin_params / 1e6,
                                                      len(linear), largest / 2**20, a.reps))
        print("%-6s %-44s %9s %9s %10s" % ("scheme", "what", "wall (s)", "cpu (s)", "peak RSS"))
        for scheme in a.schemes.split(","):
            tname = {"q4_k": "q4_K", "q5_k": "q5_K", "q6_k": "q6_K"}.get(scheme, scheme)
            out = os.path.join(tmp, "out-%s.gguf" % scheme)
            ours_cmd = [cli, "quantize", src, "--all-linear", "--scheme", scheme, "--out", out, "--json"]
            ftype, fname = LLAMA_FTYPE[scheme]
            llama_out = os.path.join(tmp, "llama-%s.gguf" % scheme)
            same_out = os.path.join(tmp, "same-%s.gguf" % scheme)
            same_sel = (["--scheme", OUR_MIX[scheme]] if scheme in OUR_MIX else
                        ["--scheme", scheme] + [x for n in matrices for x in ("--tensor", n)])
            runs = {k: [] for k in ("ours", "ours1", "ggml1", "ggmlN", "llama", "same1")}
            outs = {}
            for _ in range(a.reps):
                for path in (out, same_out, llama_out):
                    if os.path.exists(path):
                        os.remove(path)
                runs["ours"].append(timed(ours_cmd)[:3])
                os.remove(out)
                runs["ours1"].append(timed(["taskset", "-c", "0"] + ours_cmd)[:3])
                # ggml on the same tensors: the values already in memory, only the quantizer timed.
                w1 = c1 = wn = cn = 0.0
                for name, ne, raw in linear:
                    x = np.frombuffer(raw[:4 * int(np.prod(ne))], dtype="<f4")
                    t0, c0 = time.perf_counter(), time.thread_time()
                    outs[name] = g.quantize(tname, x, ne[0])
                    w1 += time.perf_counter() - t0
                    c1 += time.thread_time() - c0
                    rows = x.size // ne[0]
                    parts = [None] * cores
                    cuts = [rows * i // cores for i in range(cores + 1)]

                    def part(i):
                        parts[i] = g.quantize(tname, x[cuts[i] * ne[0]:cuts[i + 1] * ne[0]], ne[0])
                    t0, c0 = time.perf_counter(), time.process_time()
                    threads = [threading.Thread(target=part, args=(i,)) for i in range(1, cores)]
                    for t in threads:
                        t.start()
                    part(0)
                    for t in threads:
                        t.join()
                    wn += time.perf_counter() - t0
                    cn += time.process_time() - c0
                    if b"".join(parts) != outs[name]:
                        print("ggml's own row split differs in %s" % name)
                        sys.exit(1)
                runs["ggml1"].append((w1, c1, 0))
                runs["ggmlN"].append((wn, cn, 0))
                _, _, rss, so = timed([sys.executable, os.path.abspath(__file__), "--llama-child", src, llama_out,
                                       str(ftype)])
                child = json.loads(so.strip().splitlines()[-1])
                if child["rc"] != 0:
                    print("llama_model_quantize failed with %d" % child["rc"])
                    sys.exit(1)
                runs["llama"].append((child["wall"], child["cpu"], rss))
                runs["same1"].append(timed(["taskset", "-c", "0", cli, "quantize", src] + same_sel +
                                           ["--out", same_out, "--json"])[:3])
            # Our --all-linear output: every quantized tensor is ggml's bytes.
            _, written, _ = read_gguf(out)
            for name, ne, _, raw in written:
                if name in outs and raw[:len(outs[name])] != outs[name]:
                    print("MISMATCH with ggml_quantize_chunk in %s" % name)
                    sys.exit(1)
            # The same work as llama_model_quantize: the same type and bytes for every tensor.
            ours_same = {n: (t, raw) for n, _, t, raw in read_gguf(same_out)[1]}
            llama_t = read_gguf(llama_out)[1]
            for n, ne, t, raw in llama_t:
                size = g.lib.ggml_row_size(t, ne[0]) * int(np.prod(ne[1:]))
                if ours_same[n][0] != t or ours_same[n][1][:size] != raw[:size]:
                    print("MISMATCH with llama_model_quantize in %s" % n)
                    sys.exit(1)
            quantized = sum(int(np.prod(ne)) for n, ne, t, _ in llama_t if t != TYPES["f32"])
            rows = [("ours", "quantlens-cli --all-linear, %d cores" % cores),
                    ("ours1", "quantlens-cli --all-linear, 1 core"),
                    ("ggml1", "ggml_quantize_chunk, same tensors, 1 thread"),
                    ("ggmlN", "ggml_quantize_chunk, same tensors, %d threads" % cores),
                    ("llama", "llama_model_quantize %s, nthread 1" % fname),
                    ("same1", "quantlens-cli, llama's tensors+types, 1 core")]
            for k, what in rows:
                rss = best(runs[k], 2)
                print("%-6s %-44s %9.2f %9.2f %10s" % (scheme, what, best(runs[k], 0), best(runs[k], 1),
                                                        "%.0f MiB" % (rss / 1024) if rss else "-"))
            print("%-6s output %d bytes (ours --all-linear); llama's set: %.1fM values quantized, tensors "
                  "byte-identical to ours" % (scheme, os.path.getsize(out), quantized / 1e6))
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        print("load average after: %s. ours: whole CLI runs (read %d MiB, quantize, decode for the report, write, "
              "fsync, rename); ggml: ggml_quantize_chunk calls only; llama: the llama_model_quantize call. Every "
              "tensor byte-identical to ggml's." % (load, os.path.getsize(src) >> 20))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--llama-child":
        llama_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
