#!/usr/bin/python3
"""Writes the GGUF fixtures in tests/data/gguf and tests/data/malformed/gguf.

The python `gguf` package is not available, so files are written by hand with
struct.pack following ggml's docs/gguf.md. Quantized blocks are produced with
ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c) re-done in
float32 numpy, and the expected floats with ggml's dequantize_row_* rules, so
the C++ decoder is checked against ggml's arithmetic, not against itself.

Run: /usr/bin/python3 tests/scripts/make_gguf_fixtures.py  (from anywhere)
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "gguf")
BAD = os.path.join(DATA, "malformed", "gguf")
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "models")

# GGUF value types
U8, I8, U16, I16, U32, I32, F32V, BOOL, STRING, ARRAY, U64, I64, F64V = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32V: "<f",
              BOOL: "<B", U64: "<Q", I64: "<q", F64V: "<d"}
# ggml types
T_F32, T_F16, T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q8_0 = 0, 1, 2, 3, 6, 7, 8
T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_K, T_Q6_K, T_IQ2_XXS = 10, 11, 12, 13, 14, 16
T_I8, T_I16, T_I32, T_I64, T_F64, T_BF16 = 24, 25, 26, 27, 28, 30
TYPE_NAME = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K", 11: "Q3_K",
             12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 16: "IQ2_XXS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
             30: "BF16"}
QK = 32


def gstr(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gvalue(vtype, v):
    if vtype == STRING:
        return gstr(v)
    if vtype == ARRAY:
        etype, items = v
        out = struct.pack("<IQ", etype, len(items))
        for it in items:
            out += gvalue(etype, it)
        return out
    return struct.pack(SCALAR_FMT[vtype], v)


def header(version, n_tensors, n_kv):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def gguf_bytes(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, vtype, value)], tensors: [(name, ne innermost-first, ggml type, raw bytes)]."""
    out = header(version, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        out += gstr(key) + struct.pack("<I", vtype) + gvalue(vtype, value)
    offset = 0
    offsets = []
    for name, ne, ttype, raw in tensors:
        offsets.append(offset)
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", ttype, offset)
        offset += (len(raw) + alignment - 1) // alignment * alignment
    out += b"\0" * ((-len(out)) % alignment)
    for (name, ne, ttype, raw), off in zip(tensors, offsets):
        out += raw + b"\0" * ((-len(raw)) % alignment)
    return out


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- ggml reference quantizers
f32 = np.float32


def fp16_bits(x):
    return int(np.array([x], dtype=np.float32).astype(np.float16).view(np.uint16)[0])


def fp16_val(bits):
    return np.array([bits], dtype=np.uint16).view(np.float16).astype(np.float32)[0]


def roundf(x):
    # C roundf: half away from zero. float64 keeps |x| + 0.5 exact for float32 x.
    x = np.float64(x)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def c_int_trunc(x):
    # (int8_t)(float) in C truncates toward zero.
    return int(np.trunc(np.float64(x)))


def quantize_q8_0(x):
    """quantize_row_q8_0_ref: d = amax/127, q = roundf(x*id); returns (raw, qs, dbits)."""
    x = x.astype(np.float32).reshape(-1, QK)
    raw = b""
    all_q, all_d = [], []
    for blk in x:
        amax = f32(np.max(np.abs(blk)))
        d = f32(amax / f32(127))
        idv = f32(f32(1.0) / d) if d != 0 else f32(0)
        q = [int(roundf(f32(v * idv))) for v in blk]
        dbits = fp16_bits(d)
        raw += struct.pack("<H", dbits) + struct.pack("<32b", *q)
        all_q.append(q)
        all_d.append(dbits)
    return raw, all_q, all_d


def dequantize_q8_0(raw, n):
    out = []
    for b in range(n // QK):
        blk = raw[b * 34:(b + 1) * 34]
        d = fp16_val(struct.unpack("<H", blk[:2])[0])
        qs = struct.unpack("<32b", blk[2:])
        out += [f32(q * d) for q in qs]
    return np.array(out, dtype=np.float32)


def absmax_signed(blk):
    amax, vmax = f32(0), f32(0)
    for v in blk:
        if amax < abs(v):
            amax, vmax = f32(abs(v)), f32(v)
    return vmax


def quantize_q4_0(x):
    x = x.astype(np.float32).reshape(-1, QK)
    raw = b""
    for blk in x:
        mx = absmax_signed(blk)
        d = f32(mx / f32(-8))
        idv = f32(f32(1.0) / d) if d != 0 else f32(0)
        qs = []
        for j in range(16):
            xi0 = min(15, c_int_trunc(f32(f32(blk[j] * idv) + f32(8.5))))
            xi1 = min(15, c_int_trunc(f32(f32(blk[j + 16] * idv) + f32(8.5))))
            qs.append(xi0 | (xi1 << 4))
        raw += struct.pack("<H", fp16_bits(d)) + bytes(qs)
    return raw


def dequantize_q4_0(raw, n):
    out = np.zeros(n, dtype=np.float32)
    for b in range(n // QK):
        blk = raw[b * 18:(b + 1) * 18]
        d = fp16_val(struct.unpack("<H", blk[:2])[0])
        for j in range(16):
            out[b * QK + j] = f32((blk[2 + j] & 0x0F) - 8) * d
            out[b * QK + j + 16] = f32((blk[2 + j] >> 4) - 8) * d
    return out


def quantize_q4_1(x):
    x = x.astype(np.float32).reshape(-1, QK)
    raw = b""
    for blk in x:
        mn, mx = f32(np.min(blk)), f32(np.max(blk))
        d = f32(f32(mx - mn) / f32(15))
        idv = f32(f32(1.0) / d) if d != 0 else f32(0)
        qs = []
        for j in range(16):
            xi0 = min(15, c_int_trunc(f32(f32(f32(blk[j] - mn) * idv) + f32(0.5))))
            xi1 = min(15, c_int_trunc(f32(f32(f32(blk[j + 16] - mn) * idv) + f32(0.5))))
            qs.append(xi0 | (xi1 << 4))
        raw += struct.pack("<HH", fp16_bits(d), fp16_bits(mn)) + bytes(qs)
    return raw


def dequantize_q4_1(raw, n):
    out = np.zeros(n, dtype=np.float32)
    for b in range(n // QK):
        blk = raw[b * 20:(b + 1) * 20]
        d = fp16_val(struct.unpack("<H", blk[:2])[0])
        m = fp16_val(struct.unpack("<H", blk[2:4])[0])
        for j in range(16):
            out[b * QK + j] = f32(f32(blk[4 + j] & 0x0F) * d) + m
            out[b * QK + j + 16] = f32(f32(blk[4 + j] >> 4) * d) + m
    return out


def quantize_q5_0(x):
    x = x.astype(np.float32).reshape(-1, QK)
    raw = b""
    for blk in x:
        mx = absmax_signed(blk)
        d = f32(mx / f32(-16))
        idv = f32(f32(1.0) / d) if d != 0 else f32(0)
        qh = 0
        qs = []
        for j in range(16):
            xi0 = min(31, c_int_trunc(f32(f32(blk[j] * idv) + f32(16.5))))
            xi1 = min(31, c_int_trunc(f32(f32(blk[j + 16] * idv) + f32(16.5))))
            qs.append((xi0 & 0x0F) | ((xi1 & 0x0F) << 4))
            qh |= ((xi0 & 0x10) >> 4) << j
            qh |= ((xi1 & 0x10) >> 4) << (j + 16)
        raw += struct.pack("<HI", fp16_bits(d), qh) + bytes(qs)
    return raw


def dequantize_q5_0(raw, n):
    out = np.zeros(n, dtype=np.float32)
    for b in range(n // QK):
        blk = raw[b * 22:(b + 1) * 22]
        d = fp16_val(struct.unpack("<H", blk[:2])[0])
        qh = struct.unpack("<I", blk[2:6])[0]
        for j in range(16):
            xh0 = ((qh >> j) << 4) & 0x10
            xh1 = (qh >> (j + 12)) & 0x10
            out[b * QK + j] = f32(((blk[6 + j] & 0x0F) | xh0) - 16) * d
            out[b * QK + j + 16] = f32(((blk[6 + j] >> 4) | xh1) - 16) * d
    return out


def quantize_q5_1(x):
    x = x.astype(np.float32).reshape(-1, QK)
    raw = b""
    for blk in x:
        mn, mx = f32(np.min(blk)), f32(np.max(blk))
        d = f32(f32(mx - mn) / f32(31))
        idv = f32(f32(1.0) / d) if d != 0 else f32(0)
        qh = 0
        qs = []
        for j in range(16):
            xi0 = c_int_trunc(f32(f32(f32(blk[j] - mn) * idv) + f32(0.5))) & 0xFF
            xi1 = c_int_trunc(f32(f32(f32(blk[j + 16] - mn) * idv) + f32(0.5))) & 0xFF
            qs.append((xi0 & 0x0F) | ((xi1 & 0x0F) << 4))
            qh |= ((xi0 & 0x10) >> 4) << j
            qh |= ((xi1 & 0x10) >> 4) << (j + 16)
        raw += struct.pack("<HHI", fp16_bits(d), fp16_bits(mn), qh) + bytes(qs)
    return raw


def dequantize_q5_1(raw, n):
    out = np.zeros(n, dtype=np.float32)
    for b in range(n // QK):
        blk = raw[b * 24:(b + 1) * 24]
        d = fp16_val(struct.unpack("<H", blk[:2])[0])
        m = fp16_val(struct.unpack("<H", blk[2:4])[0])
        qh = struct.unpack("<I", blk[4:8])[0]
        for j in range(16):
            xh0 = ((qh >> j) << 4) & 0x10
            xh1 = (qh >> (j + 12)) & 0x10
            out[b * QK + j] = f32(f32((blk[8 + j] & 0x0F) | xh0) * d) + m
            out[b * QK + j + 16] = f32(f32((blk[8 + j] >> 4) | xh1) * d) + m
    return out


# ---------------------------------------------------------------- ggml k-quants (QK_K = 256)
# Dequantization of ggml's dequantize_row_q{2,3,4,5,6}_K, vectorised over super-blocks with
# numpy float32 in ggml's order of operations (scale products first, then the quant, then
# the min), from the block layouts of ggml-common.h.
K_BYTES = {T_Q2_K: 84, T_Q3_K: 110, T_Q4_K: 144, T_Q5_K: 176, T_Q6_K: 210}


def _halves(raw, off):
    return raw[:, off:off + 2].copy().view("<f2").astype(f32).reshape(-1, 1)


def _scale_min_k4(sc):
    """The 8 six-bit (scale, min) pairs of Q4_K / Q5_K from their 12 bytes, [blocks, 8] each."""
    sc = sc.astype(np.int32)
    d = np.empty((sc.shape[0], 8), np.int32)
    m = np.empty_like(d)
    d[:, :4] = sc[:, 0:4] & 63
    m[:, :4] = sc[:, 4:8] & 63
    d[:, 4:] = (sc[:, 8:12] & 0xF) | ((sc[:, 0:4] >> 6) << 4)
    m[:, 4:] = (sc[:, 8:12] >> 4) | ((sc[:, 4:8] >> 6) << 4)
    return d, m


def dequantize_k(ttype, data, n):
    raw = np.frombuffer(data, np.uint8).reshape(-1, K_BYTES[ttype])
    nb = raw.shape[0]
    out = np.empty((nb, 256), f32)
    if ttype in (T_Q4_K, T_Q5_K):
        d, dmin = _halves(raw, 0), _halves(raw, 2)
        sc, mn = _scale_min_k4(raw[:, 4:16])
        qs = raw[:, 48:176] if ttype == T_Q5_K else raw[:, 16:144]
        qh = raw[:, 16:48].astype(np.int32)
        for sub in range(8):  # sub-block of 32: low nibbles of chunk sub//2 for even, high for odd
            chunk = qs[:, 32 * (sub // 2):32 * (sub // 2) + 32].astype(np.int32)
            q = (chunk & 0xF) if sub % 2 == 0 else (chunk >> 4)
            if ttype == T_Q5_K:
                q = q + ((qh >> sub) & 1) * 16
            out[:, 32 * sub:32 * sub + 32] = (d * sc[:, sub:sub + 1].astype(f32)) * q.astype(f32) - \
                (dmin * mn[:, sub:sub + 1].astype(f32))
    elif ttype == T_Q6_K:
        ql, qh = raw[:, 0:128].astype(np.int32), raw[:, 128:192].astype(np.int32)
        sc = raw[:, 192:208].view(np.int8).astype(f32)
        d = _halves(raw, 208)
        for half in range(2):
            for part in range(4):  # 32 values each: low/high nibble of ql[0:32]/ql[32:64], qh bits 2*part
                lo = ql[:, 64 * half + 32 * (part % 2):64 * half + 32 * (part % 2) + 32]
                lo = (lo & 0xF) if part < 2 else (lo >> 4)
                q = (lo | (((qh[:, 32 * half:32 * half + 32] >> (2 * part)) & 3) << 4)) - 32
                for l16 in range(2):
                    s = sc[:, 8 * half + 2 * part + l16:8 * half + 2 * part + l16 + 1]
                    cols = slice(128 * half + 32 * part + 16 * l16, 128 * half + 32 * part + 16 * l16 + 16)
                    out[:, cols] = (d * s) * q[:, 16 * l16:16 * l16 + 16].astype(f32)
    elif ttype == T_Q2_K:
        sc = raw[:, 0:16].astype(np.int32)
        qs = raw[:, 16:80].astype(np.int32)
        d, dmin = _halves(raw, 80), _halves(raw, 82)
        for i in range(16):  # 16 values each; chunk i//8 of 128, shift 2*((i%8)//2), half i%2
            chunk, shift, half = i // 8, 2 * ((i % 8) // 2), i % 2
            q = (qs[:, 32 * chunk + 16 * half:32 * chunk + 16 * half + 16] >> shift) & 3
            out[:, 16 * i:16 * i + 16] = (d * (sc[:, i:i + 1] & 0xF).astype(f32)) * q.astype(f32) - \
                (dmin * (sc[:, i:i + 1] >> 4).astype(f32))
    elif ttype == T_Q3_K:
        hm = raw[:, 0:32].astype(np.int32)
        qs = raw[:, 32:96].astype(np.int32)
        s = raw[:, 96:108].astype(np.int32)
        d = _halves(raw, 108)
        for i in range(16):
            lo = (s[:, i] & 0xF) if i < 8 else (s[:, i - 8] >> 4)
            hi = (s[:, 8 + i % 4] >> (2 * (i // 4))) & 3
            scale = ((lo | (hi << 4)) - 32).astype(f32).reshape(-1, 1)
            chunk, j, half = i // 8, (i % 8) // 2, i % 2
            l = np.arange(16 * half, 16 * half + 16)
            q = (qs[:, 32 * chunk + l] >> (2 * j)) & 3
            high = (hm[:, l] >> (4 * chunk + j)) & 1
            out[:, 16 * i:16 * i + 16] = (d * scale) * (q - 4 * (1 - high)).astype(f32)
    return out.reshape(-1)[:n]


def random_k_blocks(rng, ttype, nblocks):
    """Random quant and scale bytes with small positive fp16 super-block scales."""
    raw = rng.integers(0, 256, (nblocks, K_BYTES[ttype]), dtype=np.uint8)
    scale_offsets = {T_Q2_K: (80, 82), T_Q3_K: (108,), T_Q4_K: (0, 2), T_Q5_K: (0, 2), T_Q6_K: (208,)}[ttype]
    for off in scale_offsets:
        raw[:, off:off + 2] = rng.uniform(1e-3, 5e-2, nblocks).astype(np.float16).view(np.uint8).reshape(-1, 2)
    return raw.tobytes()


def bf16_bits(x):
    # Round to nearest even, as ggml's GGML_FP32_TO_BF16 does for finite values.
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


# ---------------------------------------------------------------- valid fixtures
def make_types(version, alignment):
    rng = np.random.default_rng(7 + version)
    kvs = [
        ("general.architecture", STRING, "llama"),
        ("general.name", STRING, "quantlens fixture v%d" % version),
        ("test.u8", U8, 200), ("test.i8", I8, -100), ("test.u16", U16, 60000), ("test.i16", I16, -30000),
        ("test.u32", U32, 4294967295), ("test.i32", I32, -2000000000), ("test.f32", F32V, 0.25),
        ("test.bool", BOOL, 1), ("test.u64", U64, 2 ** 63 + 5), ("test.i64", I64, -(2 ** 62)),
        ("test.f64", F64V, -1.5e300),
        ("test.long_string", STRING, "x" * 300),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "a", "b"])),
        ("test.u32_array", ARRAY, (U32, [1, 2, 3, 4])),
        ("test.nested", ARRAY, (ARRAY, [(I8, [1, -1]), (I8, [])])),
        ("test.empty_array", ARRAY, (F32V, [])),
    ]
    if alignment != 32:
        kvs.append(("general.alignment", U32, alignment))
    tensors = []
    expected = []

    def add(name, shape, ttype, raw, values):
        tensors.append((name, list(reversed(shape)), ttype, raw))
        expected.append({"name": name, "shape": list(shape), "dtype": TYPE_NAME[ttype], "values": floats(values)})

    a = rng.standard_normal((3, 5)).astype(np.float32)
    add("blk.0.attn_q.weight", (3, 5), T_F32, a.tobytes(), a)
    h = (rng.standard_normal((4, 8)) * 3).astype(np.float16)
    add("blk.0.ffn_up.weight", (4, 8), T_F16, h.tobytes(), h.astype(np.float32))
    src = rng.standard_normal((2, 16)).astype(np.float32)
    bb = bf16_bits(src)
    add("blk.0.ffn_down.weight", (2, 16), T_BF16, bb.tobytes(), (bb.astype(np.uint32) << 16).view(np.float32))
    i8 = np.array([-128, -1, 0, 1, 127, 5, -7], dtype=np.int8)
    add("ints.i8", (7,), T_I8, i8.tobytes(), i8)
    i16 = np.array([[-32768, 0, 32767], [1, 2, 3]], dtype=np.int16)
    add("ints.i16", (2, 3), T_I16, i16.tobytes(), i16)
    i32 = np.array([-(2 ** 31), 0, 16777216, 123456], dtype=np.int32)
    add("ints.i32", (4,), T_I32, i32.tobytes(), i32.astype(np.float32))
    i64 = np.array([-(2 ** 40), 0, 7], dtype=np.int64)
    add("ints.i64", (3,), T_I64, i64.tobytes(), i64.astype(np.float32))
    f64 = np.array([[1e-3, -2.5], [3.25, 1e10]], dtype=np.float64)
    add("blk.0.norm_f64", (2, 2), T_F64, f64.tobytes(), f64.astype(np.float32))
    c3 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    add("conv.weight3d", (2, 3, 4), T_F32, c3.tobytes(), c3)
    c4 = rng.standard_normal((2, 1, 2, 3)).astype(np.float32)
    add("conv.weight4d", (2, 1, 2, 3), T_F32, c4.tobytes(), c4)
    # An i-quant stays opaque: listed with its size, not decoded.
    qk = rng.integers(0, 256, 2 * 66, dtype=np.uint8).tobytes()
    tensors.append(("blk.0.attn_k.weight", [256, 2], T_IQ2_XXS, qk))
    expected.append({"name": "blk.0.attn_k.weight", "shape": [2, 256], "dtype": "IQ2_XXS", "bytes": len(qk)})
    data = gguf_bytes(kvs, tensors, version=version, alignment=alignment)
    return data, expected, kvs


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(BAD, exist_ok=True)
    expected_all = {}
    for version, alignment, fname in [(3, 32, "types_v3.gguf"), (2, 32, "types_v2.gguf"), (3, 64, "align64_v3.gguf")]:
        data, expected, kvs = make_types(version, alignment)
        write(os.path.join(OUT, fname), data)
        expected_all[fname] = {"version": version, "alignment": alignment, "kv_count": len(kvs), "tensors": expected}
    with open(os.path.join(OUT, "types_expected.json"), "w") as f:
        json.dump(expected_all, f, indent=1)

    # Block types: values with outliers, an all-zero block and a constant block.
    rng = np.random.default_rng(42)
    x = rng.standard_normal((4, 64)).astype(np.float32) * 0.1
    x[0, 5] = 1.7
    x[1, 32:64] = 0.0
    x[2, 0:32] = 0.25
    x[3, 40] = -2.0
    blocks = []
    exp_blocks = {}
    for name, ttype, q, dq in [("q8_0.weight", T_Q8_0, lambda v: quantize_q8_0(v)[0], dequantize_q8_0),
                               ("q4_0.weight", T_Q4_0, quantize_q4_0, dequantize_q4_0),
                               ("q4_1.weight", T_Q4_1, quantize_q4_1, dequantize_q4_1),
                               ("q5_0.weight", T_Q5_0, quantize_q5_0, dequantize_q5_0),
                               ("q5_1.weight", T_Q5_1, quantize_q5_1, dequantize_q5_1)]:
        raw = q(x)
        blocks.append((name, [64, 4], ttype, raw))
        exp_blocks[name] = {"shape": [4, 64], "dtype": TYPE_NAME[ttype], "bytes": len(raw), "values": floats(dq(raw, x.size))}
    # k-quants: random bytes (every bit pattern of the packed scales and quants is a valid
    # block), two super-blocks per row. A generator of their own leaves the fixtures below as they were.
    krng = np.random.default_rng(43)
    for name, ttype in [("q2_k.weight", T_Q2_K), ("q3_k.weight", T_Q3_K), ("q4_k.weight", T_Q4_K),
                        ("q5_k.weight", T_Q5_K), ("q6_k.weight", T_Q6_K)]:
        raw = random_k_blocks(krng, ttype, 6)
        blocks.append((name, [512, 3], ttype, raw))
        exp_blocks[name] = {"shape": [3, 512], "dtype": TYPE_NAME[ttype], "bytes": len(raw),
                            "values": floats(dequantize_k(ttype, raw, 3 * 512))}
    write(os.path.join(OUT, "blocks.gguf"), gguf_bytes([("general.architecture", STRING, "test")], blocks))
    with open(os.path.join(OUT, "blocks_expected.json"), "w") as f:
        json.dump(exp_blocks, f, indent=1)

    # Q8_0 reference for the quantizer helper: ties that roundf sends away from zero
    # (block 0 has amax 127 so d = 1 exactly), an all-zero block, negative absmax.
    src = rng.standard_normal((2, 96)).astype(np.float32)
    src[0, 0:32] = np.array([127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 126.5] + list(rng.uniform(-127, 127, 24)), dtype=np.float32)
    src[0, 32:64] = 0.0
    src[1, 10] = -9.0
    raw, qs, dbits = quantize_q8_0(src)
    write(os.path.join(OUT, "q8_0_reference.gguf"),
          gguf_bytes([("general.architecture", STRING, "test")], [("ref.weight", [96, 2], T_Q8_0, raw)]))
    with open(os.path.join(OUT, "q8_0_reference.json"), "w") as f:
        json.dump({
            "rule": "ggml quantize_row_q8_0_ref: per block of 32, d = amax/127, id = d ? 1/d : 0, "
                    "q = roundf(x*id) (half away from zero), d stored as fp16 (round to nearest even); "
                    "dequantized = q * fp16_to_fp32(d)",
            "tensor": "ref.weight", "shape": [2, 96], "block_size": QK,
            "source": floats(src), "int8": [v for blk in qs for v in blk], "scale_fp16_bits": dbits,
            "dequantized": floats(dequantize_q8_0(raw, src.size)),
        }, f, indent=1)

    make_malformed()
    make_real_expected()


# ---------------------------------------------------------------- malformed corpus
def make_malformed():
    good_t = [("w", [32, 2], T_F32, np.arange(64, dtype=np.float32).tobytes())]
    good = gguf_bytes([("general.architecture", STRING, "t")], good_t)
    cases = {}

    def bad(name, data, code):
        write(os.path.join(BAD, name), data)
        cases[name] = code

    bad("truncated_header.gguf", good[:10], "truncated")
    long_kv = gguf_bytes([("general.description", STRING, "d" * 200)], good_t)
    bad("truncated_kv.gguf", long_kv[:120], "truncated")
    bad("truncated_data.gguf", good[:-100], "out-of-bounds")
    bad("tensor_count_2pow60.gguf", header(3, 2 ** 60, 0) + b"\0" * 64, "bad-count")
    bad("kv_count_huge.gguf", header(3, 0, 2 ** 63) + b"\0" * 64, "bad-count")
    bad("key_length_lie.gguf", header(3, 0, 1) + struct.pack("<Q", 2 ** 62) + b"abc" + b"\0" * 32, "truncated")
    bad("array_length_lie.gguf", header(3, 0, 1) + gstr("k") + struct.pack("<IIQ", ARRAY, U32, 2 ** 61) + b"\0" * 32, "truncated")
    bad("string_array_length_lie.gguf", header(3, 0, 1) + gstr("k") + struct.pack("<IIQ", ARRAY, STRING, 2 ** 40) + b"\0" * 64, "truncated")
    deep = struct.pack("<I", ARRAY)
    for _ in range(10):
        deep += struct.pack("<IQ", ARRAY, 1)
    deep += struct.pack("<IQ", U8, 0)
    bad("nested_arrays_deep.gguf", header(3, 0, 1) + gstr("k") + deep, "too-deep")
    bad("unknown_value_type.gguf", header(3, 0, 1) + gstr("k") + struct.pack("<I", 13) + b"\0" * 16, "bad-type")
    bad("bool_value_2.gguf", gguf_bytes([("k", BOOL, 2)], []), "bad-value")
    bad("unknown_ggml_type.gguf", gguf_bytes([], [("w", [32], 99, b"\0" * 128)]), "bad-dtype")
    bad("removed_ggml_type_4.gguf", gguf_bytes([], [("w", [32], 4, b"\0" * 128)]), "bad-dtype")
    bad("huge_dims_overflow.gguf", gguf_bytes([], [("w", [2 ** 40, 2 ** 40], T_F32, b"\0" * 64)]), "bad-shape")
    bad("byte_size_overflow.gguf", gguf_bytes([], [("w", [2 ** 31, 2 ** 31], T_F32, b"\0" * 64)]), "bad-shape")
    bad("dim_above_int64.gguf", gguf_bytes([], [("w", [2 ** 64 - 1], T_F32, b"\0" * 64)]), "bad-shape")
    bad("huge_tensor_small_file.gguf", gguf_bytes([], [("w", [1 << 20, 1 << 20], T_F32, b"\0" * 64)]), "out-of-bounds")
    bad("too_many_dims.gguf", gguf_bytes([], [("w", [1] * 9, T_F32, b"\0" * 64)]), "bad-shape")
    bad("q8_0_row_not_multiple_of_32.gguf", gguf_bytes([], [("w", [48, 2], T_Q8_0, b"\0" * 102)]), "bad-shape")
    bad("bad_alignment_3.gguf", gguf_bytes([("general.alignment", U32, 3)], []), "bad-alignment")
    bad("bad_alignment_0.gguf", gguf_bytes([("general.alignment", U32, 0)], []), "bad-alignment")
    bad("version_1.gguf", b"GGUF" + struct.pack("<III", 1, 0, 0) + b"\0" * 16, "unsupported")
    bad("version_99.gguf", b"GGUF" + struct.pack("<IQQ", 99, 0, 0), "unsupported")
    bad("big_endian.gguf", b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "unsupported")
    bad("duplicate_tensor.gguf", gguf_bytes([], good_t + good_t), "duplicate")
    bad("duplicate_key.gguf", gguf_bytes([("a", U8, 1), ("a", U8, 2)], []), "duplicate")
    bad("empty_tensor_name.gguf", gguf_bytes([], [("", [32], T_F32, b"\0" * 128)]), "bad-name")
    # Offsets patched after writing: misaligned, and past the end of the file.
    t = bytearray(good)
    off_pos = good.index(b"w", 24) + 1 + 4 + 16 + 4
    struct.pack_into("<Q", t, off_pos, 4)
    bad("misaligned_offset.gguf", bytes(t), "misaligned")
    struct.pack_into("<Q", t, off_pos, 2 ** 63)
    bad("offset_past_end.gguf", bytes(t), "out-of-bounds")
    struct.pack_into("<Q", t, off_pos, 2 ** 64 - 32)
    bad("offset_wraps.gguf", bytes(t), "out-of-bounds")
    with open(os.path.join(BAD, "expected.json"), "w") as f:
        json.dump(cases, f, indent=1, sort_keys=True)


# ---------------------------------------------------------------- real file, parsed by hand
def parse_gguf(path):
    b = open(path, "rb").read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def rstr():
        n = rd("<Q")
        nonlocal pos
        s = b[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def rval(t):
        if t == STRING:
            return rstr()
        if t == ARRAY:
            et, n = rd("<I"), rd("<Q")
            return [rval(et) for _ in range(n)]
        return rd(SCALAR_FMT[t])

    assert b[:4] == b"GGUF"
    pos = 4
    version = rd("<I")
    nt, nkv = rd("<Q"), rd("<Q")
    kv = {}
    for _ in range(nkv):
        k = rstr()
        kv[k] = rval(rd("<I"))
    infos = []
    for _ in range(nt):
        name = rstr()
        nd = rd("<I")
        ne = [rd("<Q") for _ in range(nd)]
        infos.append((name, ne, rd("<I"), rd("<Q")))
    align = kv.get("general.alignment", 32)
    start = (pos + align - 1) // align * align
    return version, kv, infos, start, b


def make_real_expected():
    path = os.path.join(SHARED, "stories260K.gguf")
    if not os.path.exists(path):
        print("shared models not found; real_expected.json not refreshed", file=sys.stderr)
        return
    version, kv, infos, start, b = parse_gguf(path)
    tensors = []
    for name, ne, ttype, off in infos:
        assert ttype == T_F32
        shape = list(reversed(ne))
        n = int(np.prod(shape))
        a = np.frombuffer(b, dtype="<f4", count=n, offset=start + off).astype(np.float64)
        tensors.append({"name": name, "shape": shape, "dtype": "F32", "min": float(a.min()), "max": float(a.max()),
                        "mean": float(a.mean()), "std": float(a.std())})
    out = {"file": "stories260K.gguf", "version": version, "kv_count": len(kv), "tensor_count": len(infos),
           "data_start": start, "alignment": kv.get("general.alignment", 32),
           "metadata": {"general.architecture": kv["general.architecture"],
                        "llama.embedding_length": str(kv["llama.embedding_length"]),
                        "tokenizer.ggml.seperator_token_id": str(kv["tokenizer.ggml.seperator_token_id"])},
           "tokens_head": kv["tokenizer.ggml.tokens"][:3], "token_count": len(kv["tokenizer.ggml.tokens"]),
           "tensors": tensors}
    with open(os.path.join(OUT, "real_expected.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
