#!/usr/bin/python3
"""Writes the ONNX fixtures in tests/data/onnx and tests/data/malformed/onnx.

Valid models are built with the onnx package (helper, numpy_helper, external_data_helper)
and pass onnx.checker; expected values come from the numpy arrays they were made from.
Corner cases the onnx package never writes (unpacked repeated fields) and the malformed
corpus are encoded by hand with the small protobuf encoder below.

Run: /usr/bin/python3 tests/scripts/make_onnx_fixtures.py  (from anywhere)
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "onnx")
BAD = os.path.join(DATA, "malformed", "onnx")
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "models")

DTYPE_NAME = {TensorProto.FLOAT: "F32", TensorProto.UINT8: "U8", TensorProto.INT8: "I8", TensorProto.UINT16: "U16",
              TensorProto.INT16: "I16", TensorProto.INT32: "I32", TensorProto.INT64: "I64", TensorProto.BOOL: "BOOL",
              TensorProto.FLOAT16: "F16", TensorProto.DOUBLE: "F64", TensorProto.UINT32: "U32",
              TensorProto.UINT64: "U64", TensorProto.BFLOAT16: "BF16"}


def floats(a):
    return [float(v) for v in np.asarray(a).astype(np.float32).reshape(-1)]


# ---------------------------------------------------------------- tiny protobuf encoder
def varint(v):
    v &= (1 << 64) - 1
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def tag(num, wire):
    return varint((num << 3) | wire)


def f_varint(num, v):
    return tag(num, 0) + varint(v)


def f_len(num, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return tag(num, 2) + varint(len(payload)) + payload


def f_fixed32(num, raw4):
    return tag(num, 5) + raw4


def model_with_initializers(*tensors, extra_graph=b""):
    graph = b"".join(f_len(5, t) for t in tensors) + extra_graph + f_len(2, "g")
    return f_varint(1, 8) + f_len(7, graph) + f_len(8, f_varint(2, 17))


def tensor(name, dims, dtype, body=b"", packed_dims=True):
    out = b""
    if packed_dims:
        if dims:
            out += f_len(1, b"".join(varint(d) for d in dims))
    else:
        out += b"".join(f_varint(1, d) for d in dims)
    if dtype is not None:
        out += f_varint(2, dtype)
    return out + body + f_len(8, name)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- valid fixtures
def make_typed():
    rng = np.random.default_rng(3)
    inits = []
    expected = []

    def add(t, values, layout="plain"):
        inits.append(t)
        expected.append({"name": t.name, "shape": list(t.dims), "dtype": DTYPE_NAME[t.data_type],
                         "values": floats(values), "layout": layout, "raw": t.HasField("raw_data")})

    w = rng.standard_normal((3, 4)).astype(np.float32)
    add(numpy_helper.from_array(w, "fc.weight"), w)
    b = rng.standard_normal(3).astype(np.float32)
    add(helper.make_tensor("fc.bias", TensorProto.FLOAT, [3], b.tolist()), b)
    ids = np.array([-(2 ** 40), -1, 0, 7, 2 ** 33], dtype=np.int64)
    add(helper.make_tensor("ids", TensorProto.INT64, [5], ids.tolist()), ids)
    q = np.array([[-128, -1, 0], [1, 64, 127]], dtype=np.int8)
    add(helper.make_tensor("q.weight", TensorProto.INT8, [2, 3], q.reshape(-1).tolist()), q)
    u8 = np.array([0, 1, 200, 255], dtype=np.uint8)
    add(helper.make_tensor("u8", TensorProto.UINT8, [4], u8.tolist()), u8)
    i16 = np.array([-32768, 5, 32767], dtype=np.int16)
    add(helper.make_tensor("i16", TensorProto.INT16, [3], i16.tolist()), i16)
    u16 = np.array([0, 65535], dtype=np.uint16)
    add(helper.make_tensor("u16", TensorProto.UINT16, [2], u16.tolist()), u16)
    i32 = np.array([-(2 ** 31), 3, 2 ** 31 - 1], dtype=np.int32)
    add(helper.make_tensor("i32", TensorProto.INT32, [3], i32.tolist()), i32)
    u32 = np.array([0, 2 ** 32 - 1], dtype=np.uint32)
    add(helper.make_tensor("u32", TensorProto.UINT32, [2], u32.tolist()), u32)
    u64 = np.array([0, 2 ** 64 - 1], dtype=np.uint64)
    add(helper.make_tensor("u64", TensorProto.UINT64, [2], u64.tolist()), u64)
    bo = np.array([True, False, True], dtype=bool)
    add(helper.make_tensor("flags", TensorProto.BOOL, [3], bo.tolist()), bo)
    h = (rng.standard_normal((2, 2)) * 5).astype(np.float16)
    ht = helper.make_tensor("h", TensorProto.FLOAT16, [2, 2], h)
    assert len(ht.int32_data) == 4 and not ht.HasField("raw_data")
    add(ht, h)
    bfb = np.array([0x3F80, 0xC040, 0x0000, 0x7F7F], dtype=np.uint16)  # 1, -3, 0, ~3.39e38
    bft = TensorProto()
    bft.name, bft.data_type = "bf", TensorProto.BFLOAT16
    bft.dims.extend([4])
    bft.int32_data.extend(int(v) for v in bfb)
    add(bft, (bfb.astype(np.uint32) << 16).view(np.float32))
    d = np.array([1e-300, -2.5], dtype=np.float64)
    add(helper.make_tensor("d", TensorProto.DOUBLE, [2], d.tolist()), d)
    # raw_data for the narrower types too (numpy_helper writes raw little-endian).
    for name, arr in [("raw.i8", np.array([-5, 0, 9], dtype=np.int8)),
                      ("raw.f16", np.array([0.5, -65504, 1e-7], dtype=np.float16)),
                      ("raw.bool", np.array([False, True], dtype=bool)),
                      ("raw.f64", np.array([[1.25, -1e10]], dtype=np.float64)),
                      ("scalar", np.array(4.5, dtype=np.float32))]:
        add(numpy_helper.from_array(arr, name), arr)
    mm = rng.standard_normal((4, 6)).astype(np.float32)
    add(numpy_helper.from_array(mm, "proj.weight"), mm, "inout")  # MatMul B: [in, out]
    g0 = rng.standard_normal((6, 5)).astype(np.float32)
    add(numpy_helper.from_array(g0, "gemm0.weight"), g0, "inout")  # Gemm transB=0
    g1 = rng.standard_normal((5, 6)).astype(np.float32)
    add(numpy_helper.from_array(g1, "gemm1.weight"), g1)  # Gemm transB=1: [out, in]
    strings = helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"])
    inits.append(strings)

    sub_w = np.array([1.0, 2.0], dtype=np.float32)
    then_g = helper.make_graph([helper.make_node("Add", ["x_sub", "sub.w"], ["y_then"])], "then",
                               [], [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, [2])],
                               [numpy_helper.from_array(sub_w, "sub.w")])
    else_g = helper.make_graph([helper.make_node("Identity", ["x_sub"], ["y_else"])], "else",
                               [], [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, [2])])
    expected.append({"name": "sub.w", "shape": [2], "dtype": "F32", "values": floats(sub_w), "layout": "plain", "raw": True})

    nodes = [
        helper.make_node("MatMul", ["x", "proj.weight"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Gemm", ["h2", "gemm0.weight"], ["h3"], transB=0),
        helper.make_node("Relu", ["h3"], ["h4"]),
        helper.make_node("Gemm", ["h4", "gemm1.weight"], ["h5"], transB=1),
        helper.make_node("Relu", ["h5"], ["h6"]),
        helper.make_node("ReduceSum", ["h6"], ["c"], keepdims=0),
        helper.make_node("Cast", ["c"], ["cb"], to=TensorProto.BOOL),
        helper.make_node("Identity", ["h6"], ["x_sub"]),
        helper.make_node("If", ["cb"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.5], dtype=np.float32), "sp"),
                                       numpy_helper.from_array(np.array([2], dtype=np.int64), "sp.idx"), [4])
    graph = helper.make_graph(nodes, "typed_graph", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], inits,
                              sparse_initializer=[sparse])
    model = helper.make_model(graph, producer_name="quantlens-fixture", producer_version="1.0",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"author": "make_onnx_fixtures.py"})
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "typed.onnx"))
    ops = "Relu\u00d73, Gemm\u00d72, Identity\u00d72, Add\u00d71, Cast\u00d71, If\u00d71, MatMul\u00d71, ReduceSum\u00d71"
    meta = {"ir_version": "8", "producer": "quantlens-fixture 1.0", "opset": "ai.onnx 13", "graph": "typed_graph",
            "author": "make_onnx_fixtures.py", "ops": ops, "skipped (string initializers)": "labels",
            "sparse initializers (not decoded)": "sp"}
    return {"tensors": expected, "metadata": meta}


def make_external():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((8, 16)).astype(np.float32)
    bvec = rng.standard_normal(8).astype(np.float32)
    i8 = rng.integers(-128, 128, (4, 4), dtype=np.int8)
    inits = [numpy_helper.from_array(a, "lin.weight"), numpy_helper.from_array(bvec, "lin.bias"),
             numpy_helper.from_array(i8, "q8")]
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "lin.weight", "lin.bias"], ["y"], transB=1)], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(graph, producer_name="quantlens-fixture", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    d = os.path.join(OUT, "external")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights/external.bin", size_threshold=0)
    os.makedirs(os.path.join(d, "weights"))
    onnx.save(model, os.path.join(d, "external.onnx"))
    onnx.checker.check_model(os.path.join(d, "external.onnx"))
    back = onnx.load(os.path.join(d, "external.onnx"))
    exp = []
    for t in back.graph.initializer:
        arr = numpy_helper.to_array(t)
        exp.append({"name": t.name, "shape": list(t.dims), "dtype": DTYPE_NAME[t.data_type], "values": floats(arr)})
    return {"tensors": exp}


def make_unpacked():
    # proto2-style writers emit one field per value; dims and float_data unpacked here.
    vals = np.array([1.5, -2.0, 0.25, 8.0, -0.125, 3.0], dtype=np.float32)
    body = b"".join(f_fixed32(4, struct.pack("<f", v)) for v in vals)
    t = tensor("unpacked.weight", [2, 3], TensorProto.FLOAT, body, packed_dims=False)
    i8 = b"".join(f_varint(5, v) for v in [-3, 4, 127])
    t2 = tensor("unpacked.i8", [3], TensorProto.INT8, i8, packed_dims=False)
    write(os.path.join(OUT, "unpacked.onnx"), model_with_initializers(t, t2))
    return {"tensors": [{"name": "unpacked.weight", "shape": [2, 3], "dtype": "F32", "values": floats(vals)},
                        {"name": "unpacked.i8", "shape": [3], "dtype": "I8", "values": [-3.0, 4.0, 127.0]}]}


# ---------------------------------------------------------------- malformed corpus
def make_malformed():
    shutil.rmtree(BAD, ignore_errors=True)
    os.makedirs(BAD)
    cases = {}

    def bad(name, data, code):
        write(os.path.join(BAD, name), data)
        cases[name] = code

    good = model_with_initializers(tensor("w", [2, 2], 1, f_len(9, np.ones(4, np.float32).tobytes())))
    bad("truncated.onnx", good[:len(good) // 2], "truncated")
    bad("varint_overflow.onnx", b"\x08" + b"\xff" * 11, "bad-varint")
    bad("varint_10th_byte_too_big.onnx", b"\x08" + b"\xff" * 9 + b"\x02", "bad-varint")
    bad("length_past_end.onnx", f_varint(1, 8) + tag(7, 2) + varint(1000) + b"\0" * 10, "truncated")
    bad("length_2pow63.onnx", f_varint(1, 8) + tag(7, 2) + varint(2 ** 63) + b"\0" * 10, "truncated")
    bad("wrong_wire_type_ir_version.onnx", f_varint(1, 8) + f_len(1, b"x"), "bad-wire-type")
    bad("group_wire_type.onnx", f_varint(1, 8) + tag(7, 3) + b"\0" * 8, "bad-wire-type")
    bad("field_number_zero.onnx", f_varint(1, 8) + b"\x00\x00", "bad-field")
    # Subgraph in subgraph in ... 70 deep (node -> attribute -> graph).
    g = f_len(2, "leaf")
    for _ in range(70):
        g = f_len(1, f_len(4, "If") + f_len(5, f_len(1, "then_branch") + f_len(6, g)))
    bad("nesting_too_deep.onnx", f_varint(1, 8) + f_len(7, g), "too-deep")
    bad("not_a_model.onnx", f_varint(1, 8), "bad-model")
    bad("raw_length_mismatch.onnx", model_with_initializers(tensor("w", [1000, 1000], 1, f_len(9, b"\0" * 16))), "bad-length")
    bad("huge_dims_overflow.onnx", model_with_initializers(tensor("w", [2 ** 40, 2 ** 40], 1, f_len(9, b"\0" * 16))), "bad-shape")
    bad("byte_size_overflow.onnx", model_with_initializers(tensor("w", [2 ** 31, 2 ** 31], 1, f_len(9, b"\0" * 16))), "bad-shape")
    bad("negative_dim.onnx", model_with_initializers(tensor("w", [-1, 4], 1, f_len(9, b"\0" * 16))), "bad-shape")
    bad("unknown_dtype.onnx", model_with_initializers(tensor("w", [4], 999, f_len(9, b"\0" * 16))), "bad-dtype")
    bad("missing_dtype.onnx", model_with_initializers(tensor("w", [4], None, f_len(9, b"\0" * 16))), "bad-dtype")
    bad("typed_count_mismatch.onnx", model_with_initializers(
        tensor("w", [10], 1, f_len(4, np.ones(3, np.float32).tobytes()))), "bad-length")
    bad("huge_dims_no_data.onnx", model_with_initializers(tensor("w", [1 << 30, 1 << 30], 1, b"")), "bad-length")
    bad("packed_float_bad_length.onnx", model_with_initializers(tensor("w", [2], 1, f_len(4, b"\0" * 7))), "bad-length")
    bad("int8_value_out_of_range.onnx", model_with_initializers(tensor("w", [2], 3, f_len(5, varint(1) + varint(300)))), "bad-value")
    bad("raw_and_typed.onnx", model_with_initializers(
        tensor("w", [1], 1, f_len(9, b"\0" * 4) + f_len(4, b"\0" * 4))), "bad-data")
    bad("unnamed_initializer.onnx", f_varint(1, 8) + f_len(7, f_len(5, f_len(1, varint(1)) + f_varint(2, 1) + f_len(9, b"\0" * 4))), "bad-name")

    def ext(name, kv, dims=(4,), dtype=1):
        body = f_varint(14, 1) + b"".join(f_len(13, f_len(1, k) + f_len(2, v)) for k, v in kv)
        bad(name, model_with_initializers(tensor("w", list(dims), dtype, body)), "bad-external")

    write(os.path.join(BAD, "ext_weights.bin"), np.arange(4, dtype=np.float32).tobytes())
    ext("external_path_traversal.onnx", [("location", "../onnx/ext_weights.bin")])
    ext("external_path_traversal_nested.onnx", [("location", "sub/../../ext_weights.bin")])
    ext("external_absolute_path.onnx", [("location", "/etc/passwd")])
    ext("external_missing_file.onnx", [("location", "no_such_file.bin")])
    ext("external_no_location.onnx", [("offset", "0")])
    ext("external_offset_past_end.onnx", [("location", "ext_weights.bin"), ("offset", "8")])
    ext("external_length_mismatch.onnx", [("location", "ext_weights.bin"), ("length", "12")])
    ext("external_offset_not_a_number.onnx", [("location", "ext_weights.bin"), ("offset", "-4")])
    ext("external_huge_dims.onnx", [("location", "ext_weights.bin")], dims=(1 << 20, 1 << 20))
    ext("external_is_directory.onnx", [("location", ".")])
    with open(os.path.join(BAD, "expected.json"), "w") as f:
        json.dump(cases, f, indent=1, sort_keys=True)


# ---------------------------------------------------------------- real file
def make_real_expected():
    path = os.path.join(SHARED, "burn_mnist.onnx")
    if not os.path.exists(path):
        print("shared models not found; real_expected.json not refreshed", file=sys.stderr)
        return
    m = onnx.load(path)
    tensors = []
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t).astype(np.float64)
        tensors.append({"name": t.name, "shape": list(t.dims), "dtype": DTYPE_NAME[t.data_type],
                        "min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()), "std": float(a.std())})
    hist = {}
    for n in m.graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    ops = ", ".join("%s\u00d7%d" % (k, v) for k, v in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))
    out = {"file": "burn_mnist.onnx", "metadata": {
        "ir_version": str(m.ir_version), "producer": (m.producer_name + " " + m.producer_version).strip(),
        "opset": ", ".join("%s %d" % (o.domain or "ai.onnx", o.version) for o in m.opset_import), "ops": ops},
        "tensors": tensors}
    with open(os.path.join(OUT, "real_expected.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)


def main():
    os.makedirs(OUT, exist_ok=True)
    exp = {"typed.onnx": make_typed(), "external/external.onnx": make_external(), "unpacked.onnx": make_unpacked()}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1, ensure_ascii=False)
    make_malformed()
    make_real_expected()


if __name__ == "__main__":
    main()
