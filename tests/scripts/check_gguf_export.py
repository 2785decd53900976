#!/usr/bin/python3
"""Checks a GGUF written by `quantlens-cli quantize ... --out OUT.gguf` against its source
with ggml's own code (libggml-base.so through ctypes):
- every metadata key/value byte-identical except general.file_type and
  general.quantization_version; the same tensors, names, shapes and order;
- every tensor whose type did not change byte-identical to the source;
- every tensor whose type changed byte-identical to ggml_quantize_chunk of the source values.
Prints each tensor's type; exits 1 on the first difference.

Run: /usr/bin/python3 tests/scripts/check_gguf_export.py SOURCE.gguf OUT.gguf
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ggmlref import TYPES, Ggml, read_gguf  # noqa: E402

NAMES = {v: k for k, v in TYPES.items()}
SIZES = {"f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22),
         "q5_1": (32, 24), "q8_0": (32, 34), "q4_K": (256, 144), "q5_K": (256, 176), "q6_K": (256, 210)}


def nbytes(tname, count):
    be, bb = SIZES[tname]
    return count // be * bb


def main(src, out):
    g = Ggml()
    skv, sts, salign = read_gguf(src)
    okv, ots, oalign = read_gguf(out)
    fail = []
    if salign != oalign:
        fail.append("alignment %d -> %d" % (salign, oalign))
    for key, val in skv.items():
        if key in ("general.file_type", "general.quantization_version"):
            continue
        if okv.get(key) != val:
            fail.append("metadata %s differs" % key)
    extra = set(okv) - set(skv) - {"general.file_type", "general.quantization_version"}
    if extra:
        fail.append("new metadata keys %s" % sorted(extra))
    if [(n, ne) for n, ne, _, _ in sts] != [(n, ne) for n, ne, _, _ in ots]:
        fail.append("tensor names, shapes or order differ")
    changed = 0
    for (name, ne, st, sraw), (_, _, ot, oraw) in zip(sts, ots):
        count = int(np.prod(ne))
        sname, oname = NAMES.get(st, str(st)), NAMES.get(ot, str(ot))
        want = nbytes(oname, count)
        if st == ot:
            ok = oraw[:want] == sraw[:want]
            how = "copied"
        else:
            if sname != "f32":
                fail.append("%s: source type %s (the check decodes f32 sources only)" % (name, sname))
                continue
            x = np.frombuffer(sraw[:4 * count], dtype="<f4")
            ref = g.quantize(oname, x, ne[0])
            ok = oraw[:want] == ref
            how = "= ggml_quantize_chunk"
            changed += 1
        print("%-28s %-6s -> %-6s %s%s" % (name, sname, oname, how, "" if ok else "  MISMATCH"))
        if not ok:
            fail.append("%s: bytes differ" % name)
    if fail:
        print("FAIL: " + "; ".join(fail))
        return 1
    print("ok: %d tensors re-quantized byte-identical to ggml, %d copied unchanged, metadata preserved"
          % (changed, len(sts) - changed))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
