#!/usr/bin/python3
"""The fake-quant float model ONNX Runtime's QDQ output is compared with.

  onnx_fake_quant_model.py SRC.onnx FAKE.safetensors OUT.onnx [QDQ.onnx]

Writes SRC.onnx with every initializer named in FAKE.safetensors (quantlens-cli's
--fake-quant: the quantized tensors as Quantlens dequantizes them, float32) replaced by
those values, in the initializer's own dtype; everything else is loaded and saved by
python3-onnx as it is (external data inline). With QDQ.onnx it also runs onnx.checker
(full_check) on the exported model when python3-onnx knows its opset, and prints what
it checked. The safetensors file is parsed by hand (8-byte length, JSON header, data),
so this needs only onnx and numpy.
"""
import json
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper

ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "U8": np.uint8,
             "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + a:base + b], dtype=ST_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def main():
    src, fake, out = sys.argv[1:4]
    values = read_safetensors(fake)
    m = onnx.load(src)
    replaced = 0
    for i, t in enumerate(m.graph.initializer):
        if t.name in values and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            orig = numpy_helper.to_array(t)
            v = values[t.name]
            if orig.shape != v.shape:
                sys.exit(f"{t.name}: fake-quant shape {v.shape} is not the model's {orig.shape}")
            if not np.array_equal(v.astype(orig.dtype), numpy_helper.to_array(t)):
                replaced += 1
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(v.astype(orig.dtype), t.name))
    onnx.save(m, out)
    print(f"fake-quant model: {replaced} initializers replaced -> {out}")
    if len(sys.argv) > 4:
        qdq = sys.argv[4]
        q = onnx.load(qdq)
        opset = max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx"))
        known = onnx.defs.onnx_opset_version()
        if opset <= known:
            onnx.checker.check_model(qdq, full_check=True)
            print(f"onnx.checker (full_check, onnx {onnx.__version__}): {qdq} passes (opset {opset})")
        else:
            print(f"onnx.checker: skipped for {qdq}: opset {opset} is newer than python3-onnx {onnx.__version__} knows ({known})")


if __name__ == "__main__":
    main()
