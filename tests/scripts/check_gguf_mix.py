#!/usr/bin/python3
"""Checks a type-mix GGUF written by `quantlens-cli quantize SRC --scheme MIX --out OURS.gguf`
against llama.cpp's own llama_model_quantize of the same source (llamaquant.py): every tensor
has the same ggml type and the same bytes (llama.cpp orders tensors its own way, so they are
matched by name), and general.file_type is the mix's llama_ftype. Prints the type counts.

Run: /usr/bin/python3 tests/scripts/check_gguf_mix.py SRC.gguf OURS.gguf MIX [KEEP_REF.gguf]
"""
import collections
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamaquant  # noqa: E402
from ggmlref import read_gguf  # noqa: E402


def main(src, ours, mix, keep=None):
    with tempfile.TemporaryDirectory() as tmp:
        ref = keep or os.path.join(tmp, "ref.gguf")
        llamaquant.quantize(src, ref, mix)
        rkv, rts, _ = read_gguf(ref)
        okv, ots, _ = read_gguf(ours)
    fail = []
    want_ft = llamaquant.FTYPES[mix]
    got_ft = struct.unpack("<I", okv["general.file_type"][1])[0]
    if got_ft != want_ft:
        fail.append("general.file_type %d, llama.cpp writes %d" % (got_ft, want_ft))
    ref_by = {n: (t, raw) for n, _, t, raw in rts}
    if sorted(ref_by) != sorted(n for n, _, _, _ in ots):
        fail.append("tensor names differ")
    for name, ne, t, raw in ots:
        rt, rraw = ref_by.get(name, (None, b""))
        if t != rt:
            fail.append("%s: type %s, llama.cpp %s" % (name, llamaquant.NAMES.get(t, t), llamaquant.NAMES.get(rt, rt)))
        elif raw.rstrip(b"\0") != rraw.rstrip(b"\0"):  # the padding after the last tensor may differ
            fail.append("%s: bytes differ from llama.cpp's" % name)
    counts = collections.Counter(llamaquant.NAMES.get(t, t) for _, _, t, _ in ots)
    print("%s %s: %s" % (os.path.basename(src), mix, dict(sorted(counts.items()))))
    for f in fail[:20]:
        print("  " + f)
    return 1 if fail else 0


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        print(__doc__)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
