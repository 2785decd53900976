#!/usr/bin/python3
"""Benchmark (not a test): time and peak memory of an ONNX QDQ export (`quantlens-cli
quantize MODEL.onnx --all-linear --out OUT.onnx`) on a model of >= 100 MB made on the fly
with python3-onnx in a temporary folder (never committed): a chain of MatMul layers whose
[2048, 2048] float32 weights are initializers, once stored inline and once as external data.
Peak RSS (/usr/bin/time -v) is printed against the largest weight's float32 copy (issue
#21 asks an export's memory to stay about one float copy of the largest tensor). With
--before (another build folder, or a quantlens-cli binary: the previous code), both are run
on the same models and printed side by side.

The process's peak includes quantizing (each weight's float copy, and the int8 values of
all of them, which the CLI holds until it writes). With --export-phase, gdb stops the CLI
where writeOnnxQdqExport starts, resets the peak (/proc/PID/clear_refs, 5) and reads it
again when the export returns: "export +" is what writing the model added on top of what
the process held when it began (needs gdb and a build with symbols).

Run: /usr/bin/python3 tests/bench/bench_onnxqdq.py BUILD_DIR [--before OLD_BUILD_DIR_OR_CLI]
         [--export-phase] [--layers 8] [--dim 2048] [--reps 2]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_ggufwrite import cpu_name  # noqa: E402


def make_model(path, layers, dim, external):
    rng = np.random.default_rng(21)
    inits, nodes = [], []
    prev = "x"
    for i in range(layers):
        w = (rng.standard_normal((dim, dim), dtype=np.float32) * np.float32(0.02))
        inits.append(numpy_helper.from_array(w, "layer%d.weight" % i))
        out = "h%d" % i if i + 1 < layers else "y"
        nodes.append(helper.make_node("MatMul", [prev, "layer%d.weight" % i], [out], name="layer%d" % i))
        prev = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, path)


def timed(cmd):
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        print(r.stderr[-3000:])
        sys.exit(1)

    def field(name):
        return float(re.search(re.escape(name) + r": ([\d.]+)", r.stderr).group(1))
    return wall, field("User time (seconds)") + field("System time (seconds)"), field(
        "Maximum resident set size (kbytes)") / 1024


def cli_path(p):
    p = os.path.abspath(p)
    return p if os.path.isfile(p) else os.path.join(p, "app", "quantlens-cli")


def best(cli, src, scheme, out, reps):
    runs = []
    for _ in range(reps):
        for p in (out, out + ".data"):
            if os.path.exists(p):
                os.remove(p)
        runs.append(timed([cli, "quantize", src, "--all-linear"] + scheme + ["--out", out, "--json"]))
    return min(r[0] for r in runs), min(r[1] for r in runs), min(r[2] for r in runs)


GDB_PHASE = """set pagination off
break quantlens::writeOnnxQdqExport
run
python import gdb; pid = gdb.selected_inferior().pid; print("ENTRY", open("/proc/%d/status" % pid).read()); open("/proc/%d/clear_refs" % pid, "w").write("5")
finish
python import gdb; pid = gdb.selected_inferior().pid; print("EXIT", open("/proc/%d/status" % pid).read())
kill
quit
"""


def export_phase(cli, src, scheme, out, tmp):
    """MiB the export added to the RSS the process had when it began (see the docstring)."""
    script = os.path.join(tmp, "phase.gdb")
    with open(script, "w") as f:
        f.write(GDB_PHASE)
    r = subprocess.run(["gdb", "-q", "-batch", "-x", script, "--args", cli, "quantize", src, "--all-linear"] + scheme +
                       ["--out", out, "--json"], capture_output=True, text=True)
    entry = re.search(r"ENTRY.*?VmRSS:\s+(\d+)", r.stdout, re.S)
    peak = re.search(r"EXIT.*?VmHWM:\s+(\d+)", r.stdout, re.S)
    if not entry or not peak:
        return float("nan")
    return (int(peak.group(1)) - int(entry.group(1))) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--before", help="build folder or quantlens-cli of the previous code")
    ap.add_argument("--export-phase", action="store_true", help="also measure the export's own peak with gdb")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    clis = ([("before", cli_path(a.before))] if a.before else []) + [("now", cli_path(a.build))]
    largest = a.dim * a.dim * 4 / 2**20
    with open("/proc/loadavg") as f:
        print("CPU: %s; load average: %s" % (cpu_name(), " ".join(f.read().split()[:3])))
    print("model: %d MatMul weights of [%d, %d] float32 (%.0f MiB); largest tensor's float32 copy %.0f MiB; "
          "best of %d runs" % (a.layers, a.dim, a.dim, a.layers * largest, largest, a.reps))
    print("%-9s %-26s %-7s %9s %9s %10s %9s%s" % ("storage", "scheme", "code", "wall (s)", "cpu (s)", "peak RSS", "RSS/copy",
                                                 "  export +" if a.export_phase else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for external in (False, True):
            src = os.path.join(tmp, "chain-%s.onnx" % ("ext" if external else "inline"))
            make_model(src, a.layers, a.dim, external)
            for scheme in (["--scheme", "torch-symmetric", "--granularity", "channel"],
                           ["--scheme", "torch-symmetric", "--granularity", "tensor"]):
                for name, cli in clis:
                    out = os.path.join(tmp, "qdq.onnx")
                    wall, cpu, rss = best(cli, src, scheme, out, a.reps)
                    phase = "  %5.1f MiB" % export_phase(cli, src, scheme, out, tmp) if a.export_phase else ""
                    print("%-9s %-26s %-7s %9.2f %9.2f %6.0f MiB %8.1fx%s" % ("external" if external else "inline",
                                                                             " ".join(scheme[1::2]), name, wall, cpu,
                                                                             rss, rss / largest, phase))
            os.remove(src)
            if os.path.exists(src + ".data"):
                os.remove(src + ".data")


if __name__ == "__main__":
    main()
