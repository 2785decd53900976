#!/usr/bin/python3
"""Writes a small Llama GGUF whose rows are multiples of 256 (hidden 256, FFN 512, 2 layers,
4 heads of 64), so the k-quants apply to every linear layer; seeded random F32 weights,
stories260K's tokenizer and metadata (../shared/models) with the sizes changed. Used by
interop_gguf.sh (written to a temporary folder, never committed).

Run: /usr/bin/python3 tests/scripts/make_llama256_gguf.py OUT.gguf
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ggmlref import ROOT, read_gguf  # noqa: E402

STORIES = os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf")
HIDDEN, FFN, LAYERS, HEADS = 256, 512, 2, 4
SIZES = {"llama.embedding_length": HIDDEN, "llama.feed_forward_length": FFN, "llama.attention.head_count": HEADS,
         "llama.attention.head_count_kv": HEADS, "llama.block_count": LAYERS,
         "llama.rope.dimension_count": HIDDEN // HEADS}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def main(out_path, hidden=HIDDEN, ffn=FFN, layers=LAYERS, heads=HEADS, vocab=None, tied=False):
    """Also used by tests/bench/bench_ggufwrite.py for a >= 100M-parameter model (tensors are
    generated one at a time while writing, so memory stays about one tensor), and by
    make_gguf_mix_fixtures.py (tied=True: no output.weight, llama.cpp reuses token_embd)."""
    kvs, tensors, _ = read_gguf(STORIES)
    stories_vocab = next(ne for n, ne, _, _ in tensors if n == "token_embd.weight")[1]
    vocab = vocab or stories_vocab
    HIDDEN, FFN, LAYERS, HEADS = hidden, ffn, layers, heads
    SIZES = {"llama.embedding_length": HIDDEN, "llama.feed_forward_length": FFN, "llama.attention.head_count": HEADS,
             "llama.attention.head_count_kv": HEADS, "llama.block_count": LAYERS,
             "llama.rope.dimension_count": HIDDEN // HEADS}
    rng = np.random.default_rng(256)

    def w(*ne):  # ne innermost first, as GGUF stores it; made when written
        return lambda: rng.standard_normal(int(np.prod(ne)), dtype=np.float32) * np.float32(0.05)

    def ones(n):
        return lambda: np.ones(n, "<f4")

    specs = [("token_embd.weight", [HIDDEN, vocab], w(HIDDEN, vocab)),
             ("output_norm.weight", [HIDDEN], ones(HIDDEN)),
             ("output.weight", [HIDDEN, vocab], w(HIDDEN, vocab))]
    if tied:
        specs.pop()
    for i in range(LAYERS):
        p = "blk.%d." % i
        specs += [(p + "attn_q.weight", [HIDDEN, HIDDEN], w(HIDDEN, HIDDEN)),
                  (p + "attn_k.weight", [HIDDEN, HIDDEN], w(HIDDEN, HIDDEN)),
                  (p + "attn_v.weight", [HIDDEN, HIDDEN], w(HIDDEN, HIDDEN)),
                  (p + "attn_output.weight", [HIDDEN, HIDDEN], w(HIDDEN, HIDDEN)),
                  (p + "attn_norm.weight", [HIDDEN], ones(HIDDEN)),
                  (p + "ffn_gate.weight", [HIDDEN, FFN], w(HIDDEN, FFN)),
                  (p + "ffn_down.weight", [FFN, HIDDEN], w(FFN, HIDDEN)),
                  (p + "ffn_up.weight", [HIDDEN, FFN], w(HIDDEN, FFN)),
                  (p + "ffn_norm.weight", [HIDDEN], ones(HIDDEN))]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(specs), len(kvs))
    for key, (vtype, raw) in kvs.items():
        if key in SIZES:
            raw = struct.pack("<I", SIZES[key])
            vtype = 4
        if key == "general.name":
            raw = gstr("llama256-test")
        out += gstr(key) + struct.pack("<I", vtype) + raw
    offset = 0
    for name, ne, _ in specs:
        nbytes = 4 * int(np.prod(ne))
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", 0, offset)
        offset += (nbytes + 31) // 32 * 32
    out += b"\0" * ((-len(out)) % 32)
    with open(out_path, "wb") as f:
        f.write(out)
        for _, _, make in specs:
            data = make().astype("<f4")
            f.write(data.tobytes() + b"\0" * ((-data.nbytes) % 32))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1])
