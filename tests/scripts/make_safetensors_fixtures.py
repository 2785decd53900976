#!/usr/bin/python3
"""Writes the safetensors fixtures, their expected values and the malformed corpus.

Run from anywhere with /usr/bin/python3 (numpy, torch 1.13). The `safetensors`
package is not available here, and it is not needed: a safetensors file is an
8-byte little-endian header length, a JSON header and the raw little-endian data,
so this script writes the bytes itself, exactly as the format describes.

Expected statistics are computed over the values converted to float32 (what
Tensor::toFloat yields) and accumulated in float64 with the population std.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data"))
OUT = os.path.join(DATA, "safetensors")
BAD = os.path.join(DATA, "malformed", "safetensors")
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "models"))

# safetensors dtype name -> (numpy dtype used to reinterpret the bytes, element bytes)
NP_OF = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "u1",
}
SIZE_OF = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
           "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def as_float32(dtype, raw, shape):
    """The float32 values Tensor::toFloat must produce, from the raw stored bytes."""
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    if dtype == "BOOL":
        return (np.frombuffer(raw, dtype="u1") != 0).astype(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=NP_OF[dtype]).astype(np.float32).reshape(shape)


def stats_and_samples(f32):
    flat = f32.reshape(-1)
    if flat.size == 0:
        return None, []
    x = flat.astype(np.float64)
    stats = {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()), "std": float(x.std())}
    n = flat.size
    idx = sorted({0, n // 3, n // 2, (2 * n) // 3, n - 1})
    return stats, [[int(i), float(flat[i])] for i in idx]


def tensor_entry(name, dtype, shape, raw):
    e = {"name": name, "dtype": dtype, "shape": list(shape), "decodable": dtype in NP_OF or dtype == "BF16"}
    if e["decodable"]:
        e["stats"], e["samples"] = stats_and_samples(as_float32(dtype, raw, shape))
    else:
        e["stats"], e["samples"] = None, []
    return e


def build(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes) in data order -> file bytes."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode()
    if pad:  # the Rust writer pads the header with spaces to a multiple of 8
        hj += b" " * ((8 - len(hj) % 8) % 8)
    return struct.pack("<Q", len(hj)) + hj + b"".join(t[3] for t in tensors)


def raw_header(obj_bytes, data=b""):
    return struct.pack("<Q", len(obj_bytes)) + obj_bytes + data


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def torch_bytes(t):
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
    return t.contiguous().numpy().tobytes()


def fixtures():
    rng = np.random.default_rng(1234)
    g = torch.Generator().manual_seed(1234)
    expected = {}

    # Every decodable dtype, a 0-d scalar, a 0-element tensor and __metadata__.
    w = torch.randn(4, 6, generator=g)
    tensors = [
        ("model.f32.weight", "F32", [4, 6], torch_bytes(w)),
        ("model.f64", "F64", [3, 5], rng.normal(0, 3, (3, 5)).astype("<f8").tobytes()),
        ("model.f16", "F16", [2, 3, 4], rng.normal(0, 1, (2, 3, 4)).astype("<f2").tobytes()),
        ("model.bf16", "BF16", [5, 7], torch_bytes(torch.randn(5, 7, generator=g).to(torch.bfloat16) * 10)),
        ("model.i64", "I64", [6], np.array([-(2**40), -3, 0, 7, 2**33 + 1, 123456789012], "<i8").tobytes()),
        ("model.i32", "I32", [2, 2], np.array([[-2**31, 5], [17, 2**31 - 1]], "<i4").tobytes()),
        ("model.i16", "I16", [5], np.array([-32768, -1, 0, 1, 32767], "<i2").tobytes()),
        ("model.i8", "I8", [3, 3], rng.integers(-128, 128, (3, 3)).astype("i1").tobytes()),
        ("model.u8", "U8", [10], rng.integers(0, 256, 10).astype("u1").tobytes()),
        ("model.u16", "U16", [4], np.array([0, 1, 40000, 65535], "<u2").tobytes()),
        ("model.u32", "U32", [3], np.array([0, 7, 4000000000], "<u4").tobytes()),
        ("model.u64", "U64", [2], np.array([3, 2**63 + 5], "<u8").tobytes()),
        ("model.bool", "BOOL", [7], np.array([1, 0, 0, 1, 1, 0, 1], "u1").tobytes()),
        ("model.scalar", "F32", [], np.array(2.5, "<f4").tobytes()),
        ("model.empty", "F32", [0, 3], b""),
        ("model.empty_f16", "F16", [4, 0], b""),
    ]
    meta = {"format": "pt", "source": "quantlens make_safetensors_fixtures.py"}
    write(os.path.join(OUT, "dtypes.safetensors"), build(tensors, meta))
    expected["dtypes.safetensors"] = {
        "format": "safetensors", "metadata": [[k, v] for k, v in meta.items()],
        "tensors": [tensor_entry(*t) for t in tensors]}

    # float8 is listed (opaque) but not decoded; no metadata; an unpadded header.
    tensors = [
        ("fp8.weight", "F8_E4M3", [4, 4], bytes(range(16))),
        ("fp8.scale", "F32", [1], np.array([0.5], "<f4").tobytes()),
        ("fp8.other", "F8_E5M2", [3], bytes([1, 2, 3])),
    ]
    write(os.path.join(OUT, "float8.safetensors"), build(tensors, None, pad=False))
    expected["float8.safetensors"] = {"format": "safetensors", "metadata": [],
                                      "tensors": [tensor_entry(*t) for t in tensors]}

    # GPT-2 Conv1D naming: the reader marks these [in, out].
    tensors = [
        ("transformer.h.0.attn.c_attn.weight", "F32", [4, 12], torch_bytes(torch.randn(4, 12, generator=g))),
        ("transformer.h.0.attn.c_attn.bias", "F32", [12], torch_bytes(torch.randn(12, generator=g))),
        ("transformer.h.0.mlp.c_fc.weight", "F32", [4, 16], torch_bytes(torch.randn(4, 16, generator=g))),
        ("lm.linear.weight", "F32", [3, 4], torch_bytes(torch.randn(3, 4, generator=g))),
    ]
    write(os.path.join(OUT, "conv1d.safetensors"), build(tensors, {"format": "pt"}))
    e = {"format": "safetensors", "metadata": [["format", "pt"]], "tensors": [tensor_entry(*t) for t in tensors]}
    for t in e["tensors"]:
        t["layout"] = "InOut" if ".c_attn.weight" in t["name"] or ".c_fc.weight" in t["name"] else "Plain"
    expected["conv1d.safetensors"] = e

    # A sharded model as transformers writes it: index + 2 shards.
    s1 = [("embed.weight", "F32", [5, 4], torch_bytes(torch.randn(5, 4, generator=g))),
          ("layers.0.weight", "F16", [4, 4], torch_bytes(torch.randn(4, 4, generator=g).half()))]
    s2 = [("layers.1.weight", "BF16", [4, 4], torch_bytes(torch.randn(4, 4, generator=g).to(torch.bfloat16))),
          ("layers.1.bias", "F32", [4], torch_bytes(torch.randn(4, generator=g)))]
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    write(os.path.join(OUT, "sharded", names[0]), build(s1, {"format": "pt"}))
    write(os.path.join(OUT, "sharded", names[1]), build(s2, {"format": "pt"}))
    total = sum(len(t[3]) for t in s1 + s2)
    index = {"metadata": {"total_size": total},
             "weight_map": {t[0]: names[0] for t in s1} | {t[0]: names[1] for t in s2}}
    write(os.path.join(OUT, "sharded", "model.safetensors.index.json"), json.dumps(index, indent=2).encode() + b"\n")
    expected["sharded/model.safetensors.index.json"] = {
        "format": "safetensors-sharded", "metadata": [["total_size", str(total)], ["format", "pt"]],
        "files": names, "tensors": [tensor_entry(*t) for t in s1 + s2]}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def malformed():
    ok = build([("a", "F32", [2, 2], np.arange(4, dtype="<f4").tobytes())])
    f32x4 = np.arange(4, dtype="<f4").tobytes()

    def hdr(d, data=b""):
        return raw_header(json.dumps(d).encode(), data)

    cases = {
        "empty.safetensors": b"",
        "four_bytes.safetensors": b"\x10\x00\x00\x00",
        "header_past_end.safetensors": struct.pack("<Q", 1000) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        "header_len_2pow63.safetensors": struct.pack("<Q", 2**63) + b'{"a":1}',
        "header_len_200mb.safetensors": struct.pack("<Q", 200_000_000) + b'{}',
        "bad_json.safetensors": raw_header(b'{"a": {"dtype": "F32", "shape": [2,'),
        "json_array.safetensors": raw_header(b'[1, 2, 3]'),
        "json_deep.safetensors": raw_header(b"{" + b'"a":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        "unknown_dtype.safetensors": hdr({"a": {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}}, f32x4),
        "dtype_not_string.safetensors": hdr({"a": {"dtype": 4, "shape": [4], "data_offsets": [0, 16]}}, f32x4),
        "negative_dim.safetensors": hdr({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, f32x4),
        "float_dim.safetensors": hdr({"a": {"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]}}, f32x4),
        "shape_overflow.safetensors": hdr({"a": {"dtype": "F32", "shape": [2**40, 2**40, 2**40], "data_offsets": [0, 16]}}, f32x4),
        "bytes_overflow.safetensors": hdr({"a": {"dtype": "F64", "shape": [2**31, 2**31], "data_offsets": [0, 16]}}, f32x4),
        "offsets_past_end.safetensors": hdr({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, f32x4),
        "offsets_huge.safetensors": hdr({"a": {"dtype": "U8", "shape": [16], "data_offsets": [2**64 - 32, 2**64 - 16]}}, f32x4),
        "offsets_reversed.safetensors": hdr({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}}, f32x4),
        "offsets_not_pair.safetensors": hdr({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0]}}, f32x4),
        "offsets_negative.safetensors": hdr({"a": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}}, f32x4),
        "overlap.safetensors": hdr({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, f32x4),
        "hole.safetensors": hdr({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, f32x4),
        "not_at_zero.safetensors": hdr({"a": {"dtype": "F32", "shape": [3], "data_offsets": [4, 16]}}, f32x4),
        "trailing_bytes.safetensors": ok + b"\0" * 8,
        "offsets_shape_mismatch.safetensors": hdr({"a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 16]}}, f32x4),
        "metadata_not_strings.safetensors": hdr({"__metadata__": {"n": 3},
                                                 "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32x4),
        "entry_not_object.safetensors": hdr({"a": [0, 16]}, f32x4),
        "missing_shape.safetensors": hdr({"a": {"dtype": "F32", "data_offsets": [0, 16]}}, f32x4),
        "block_dtype.safetensors": hdr({"a": {"dtype": "Q8_0", "shape": [32], "data_offsets": [0, 34]}}, b"\0" * 34),
        "truncated_data.safetensors": ok[:-3],
    }
    for name, data in cases.items():
        write(os.path.join(BAD, name), data)

    # Index files: a valid shard sits next to them so only the index is at fault.
    write(os.path.join(BAD, "shard_ok.safetensors"), ok)
    idx = {
        "index_traversal.json": {"weight_map": {"a": "../safetensors/dtypes.safetensors"}},
        "index_absolute.json": {"weight_map": {"a": "/etc/passwd"}},
        "index_missing_tensor.json": {"weight_map": {"a": "shard_ok.safetensors", "zz": "shard_ok.safetensors"}},
        "index_missing_shard.json": {"weight_map": {"a": "no_such_shard.safetensors"}},
        "index_bad_shard.json": {"weight_map": {"a": "trailing_bytes.safetensors"}},
        "index_no_weight_map.json": {"metadata": {"total_size": 16}},
    }
    for name, obj in idx.items():
        write(os.path.join(BAD, name), json.dumps(obj).encode())


def real_expected():
    """Every tensor of the real safetensors files, read by parsing the header by hand."""
    out = {}
    for fname in ["gpt2_capp.safetensors", "silero_vad_16k.safetensors"]:
        with open(os.path.join(SHARED, fname), "rb") as f:
            buf = f.read()
        (n,) = struct.unpack("<Q", buf[:8])
        header = json.loads(buf[8:8 + n])
        meta = header.pop("__metadata__", {})
        items = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
        tensors = []
        for name, info in items:
            b, e = info["data_offsets"]
            tensors.append(tensor_entry(name, info["dtype"], info["shape"], buf[8 + n + b:8 + n + e]))
        out[fname] = {"format": "safetensors", "metadata": [[k, v] for k, v in meta.items()], "tensors": tensors}
    with open(os.path.join(OUT, "real_expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def seeds():
    """Copies the fixtures into tests/fuzz/seeds/safetensors, where CI's bounded fuzz run
    (.ci/run) looks for the seed corpus of fuzz_safetensors."""
    import glob
    import shutil
    dst = os.path.normpath(os.path.join(HERE, "..", "fuzz", "seeds", "safetensors"))
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for pattern in [os.path.join(OUT, "*.safetensors"), os.path.join(OUT, "sharded", "*.safetensors")]:
        for f in sorted(glob.glob(pattern)):
            shutil.copy(f, os.path.join(dst, os.path.basename(f)))
    for f in sorted(glob.glob(os.path.join(BAD, "*.safetensors"))):
        shutil.copy(f, os.path.join(dst, "malformed_" + os.path.basename(f)))


if __name__ == "__main__":
    fixtures()
    malformed()
    seeds()
    if os.path.isdir(SHARED):
        real_expected()
    else:
        print("no ../shared/models: real_expected.json not regenerated", file=sys.stderr)
