"""ggml's own quantizer (ggml_quantize_chunk from node-llama-cpp's libggml-base.so, through
ctypes) and a minimal GGUF reader, shared by make_ggml_fixtures.py and the interop checks.

Only the test clients' library is used: nothing is built, nothing downloaded.
"""
import ctypes
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LIB = os.path.join(ROOT, "tests", "clients", "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64",
                   "libggml-base.so")

# The ggml_type ids we write, checked against ggml_type_name() of the loaded library.
TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
         "q4_K": 12, "q5_K": 13, "q6_K": 14, "bf16": 30}
BLOCK = {"f32": 1, "f16": 1, "bf16": 1, "q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "q8_0": 32,
         "q4_K": 256, "q5_K": 256, "q6_K": 256}


class Ggml:
    def __init__(self, path=LIB):
        if not os.path.exists(path):
            raise SystemExit("libggml-base.so not found at %s: install the test clients "
                             "(npm ci --ignore-scripts --no-audit --no-fund --prefix tests/clients)" % path)
        self.lib = ctypes.CDLL(path)
        self.lib.ggml_type_name.restype = ctypes.c_char_p
        self.lib.ggml_type_name.argtypes = [ctypes.c_int]
        self.lib.ggml_row_size.restype = ctypes.c_size_t
        self.lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        self.lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                 ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        for name, tid in TYPES.items():
            got = self.lib.ggml_type_name(tid).decode()
            if got != name:
                raise SystemExit("ggml type %d is %r in this libggml-base.so, expected %r" % (tid, got, name))

    def dequantize(self, tname, raw, n):
        """ggml's own decoding of n values (dequantize_row_*, ggml_fp16/bf16_to_fp32_row)."""
        out = np.zeros(n, dtype=np.float32)
        src = ctypes.create_string_buffer(raw, len(raw))
        if tname == "f32":
            return np.frombuffer(raw[:4 * n], dtype="<f4").copy()
        fn = {"f16": "ggml_fp16_to_fp32_row", "bf16": "ggml_bf16_to_fp32_row"}.get(tname, "dequantize_row_" + tname)
        f = getattr(self.lib, fn)
        f.restype = None
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        f(src, out.ctypes.data, n)
        return out

    def quantize(self, tname, x, row_len):
        """ggml_quantize_chunk(type, x, dst, 0, rows, row_len, NULL): the bytes ggml writes."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        assert x.size % row_len == 0
        rows = x.size // row_len
        size = self.lib.ggml_row_size(TYPES[tname], row_len) * rows
        dst = ctypes.create_string_buffer(size)
        n = self.lib.ggml_quantize_chunk(TYPES[tname], x.ctypes.data, dst, 0, rows, row_len, None)
        assert n == size, (n, size)
        return dst.raw


def read_gguf(path):
    """(kvs as {key: (type, raw value bytes)}, tensors as [(name, ne, type, bytes)], alignment)."""
    with open(path, "rb") as f:
        b = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string():
        nonlocal pos
        n = take("<Q")
        s = b[pos:pos + n]
        pos += n
        return s.decode("utf-8", "surrogateescape")

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(t):
        nonlocal pos
        if t == 8:
            string()
        elif t == 9:
            et, n = take("<I"), take("<Q")
            for _ in range(n):
                skip_value(et)
        else:
            pos += sizes[t]

    assert b[:4] == b"GGUF", path
    pos = 4
    version, nt, nkv = take("<I"), take("<Q"), take("<Q")
    kvs = {}
    alignment = 32
    for _ in range(nkv):
        key = string()
        t = take("<I")
        start = pos
        skip_value(t)
        kvs[key] = (t, b[start:pos])
        if key == "general.alignment":
            alignment = struct.unpack_from("<I", b, start)[0]
    infos = []
    for _ in range(nt):
        name = string()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        t, off = take("<I"), take("<Q")
        infos.append((name, ne, t, off))
    data = (pos + alignment - 1) // alignment * alignment
    tensors = []
    for i, (name, ne, t, off) in enumerate(infos):
        end = infos[i + 1][3] if i + 1 < len(infos) else len(b) - data
        tensors.append((name, ne, t, b[data + off:data + end]))
    return kvs, tensors, alignment
