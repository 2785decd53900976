#!/usr/bin/python3
"""Writes tests/data/ggml/*.bin: float inputs and the bytes ggml's own quantizer
(ggml_quantize_chunk, no importance matrix, from the test clients' libggml-base.so) writes
for them, for every scheme whose block fits the row. tst_ggmlquant compares ours byte for byte.

Inputs: real tensors of stories260K.gguf (../shared/models) and edge cases (all-zero and
constant blocks, values clipped from +-inf, tiny and huge magnitudes, exact ties).

File layout (little-endian): b"QLGGML01", u64 rows, u64 row_len, f32[rows*row_len],
u32 n, then n times: u32 ggml type id, u64 byte count, the bytes, u64 m, f32[m]: ggml's
own decoding of the first m values (m = min(values, 2048), to keep the files small).

Run: /usr/bin/python3 tests/scripts/make_ggml_fixtures.py
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ggmlref import BLOCK, ROOT, TYPES, Ggml, read_gguf  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "ggml")
STORIES = os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf")


def stories_tensor(tensors, name):
    for n, ne, t, raw in tensors:
        if n == name:
            assert t == 0, "%s is not F32" % name
            count = int(np.prod(ne))
            return np.frombuffer(raw[:4 * count], dtype="<f4").copy()
    raise SystemExit("no tensor %s in stories260K.gguf" % name)


def edge_rows():
    rng = np.random.default_rng(18)
    rows = []
    rows.append(np.zeros(256, np.float32))                                 # all-zero blocks
    clipped = rng.standard_normal(256).astype(np.float32)
    clipped[::17] = np.inf
    clipped[5::23] = -np.inf
    rows.append(np.clip(clipped, -1.25, 0.75).astype(np.float32))          # +-inf clipped to a tuned range
    rows.append((rng.standard_normal(256) * 1e-30).astype(np.float32))      # fp16 scales underflow to 0
    rows.append((rng.standard_normal(256) * 3e-6).astype(np.float32))       # fp16 subnormal scales
    rows.append((rng.standard_normal(256) * 2e4).astype(np.float32))        # near fp16's range
    rows.append((rng.standard_normal(256) * 1e9).astype(np.float32))        # fp16 scales overflow
    rows.append(np.full(256, 0.3, np.float32))                              # constant positive
    rows.append(np.full(256, -2.5, np.float32))                             # constant negative
    one = np.zeros(256, np.float32)
    one[3::32] = 1.0
    one[200] = -7.0
    rows.append(one)                                                        # one value per block
    rows.append(np.abs(rng.standard_normal(256)).astype(np.float32))       # all positive
    rows.append(-np.abs(rng.standard_normal(256)).astype(np.float32))      # all negative
    rows.append((np.arange(256) % 16 - 8).astype(np.float32) * 0.25)       # exact ties on the grids
    rows.append(((np.arange(256) % 32) - 15.5).astype(np.float32))
    sub = (rng.standard_normal(256) * 1e-39).astype(np.float32)             # float32 subnormals
    rows.append(sub)
    mixed = rng.standard_normal(256).astype(np.float32)
    mixed[:32] = 0
    mixed[64:96] *= 1e-8
    mixed[128:160] = 1e-3
    rows.append(mixed)
    rows.append(rng.uniform(-1, 1, 256).astype(np.float32) * np.float32(0.01))
    return np.stack(rows)


def write_case(g, name, x, row_len):
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    rows = x.size // row_len
    assert rows * row_len == x.size
    entries = []
    m = min(x.size, 2048)
    for tname, tid in TYPES.items():
        if row_len % BLOCK[tname]:
            continue
        raw = g.quantize(tname, x, row_len)
        per = len(raw) // (x.size // BLOCK[tname])
        entries.append((tid, raw, g.dequantize(tname, raw[:per * (m // BLOCK[tname])], m)))
    out = b"QLGGML01" + struct.pack("<QQ", rows, row_len) + x.astype("<f4").tobytes()
    out += struct.pack("<I", len(entries))
    for tid, raw, deq in entries:
        out += struct.pack("<IQ", tid, len(raw)) + raw + struct.pack("<Q", deq.size) + deq.astype("<f4").tobytes()
    path = os.path.join(OUT, name + ".bin")
    with open(path, "wb") as f:
        f.write(out)
    print("wrote %s: %d x %d, %d schemes, %d bytes" % (os.path.relpath(path, ROOT), rows, row_len, len(entries), len(out)))


def main():
    g = Ggml()
    os.makedirs(OUT, exist_ok=True)
    _, tensors, _ = read_gguf(STORIES)
    # stories260K's own rows (64 values): the 32-value blocks and the float types.
    write_case(g, "stories_attn_q", stories_tensor(tensors, "blk.0.attn_q.weight")[:32 * 64], 64)
    # Its FFN rows are 64 and 172 long, too short for the k-quants: the same real values in
    # rows of 256 exercise every scheme.
    write_case(g, "stories_ffn_up_256", stories_tensor(tensors, "blk.0.ffn_up.weight")[:16 * 256], 256)
    write_case(g, "stories_ffn_down_256", stories_tensor(tensors, "blk.4.ffn_down.weight")[:8 * 256], 256)
    write_case(g, "edges", edge_rows(), 256)


if __name__ == "__main__":
    main()
