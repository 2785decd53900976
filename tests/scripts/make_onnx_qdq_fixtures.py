#!/usr/bin/python3
"""Writes the ONNX QDQ export fixtures in tests/data/onnx/qdq with Debian's python3-onnx.

One small network that has every weight layout the exporter must place an axis for:
Conv [out, in, kh, kw], MatMul [in, out], Gemm transB=0 [in, out] and Gemm transB=1
[out, in], ending in a Softmax (whose meaning changes at opset 13, so the opset
conversion is exercised):

  convnet_opset11.onnx   opset 11, IR 6, weights also listed as graph inputs (old exporters)
  convnet_opset21.onnx   the same graph at opset 21 / IR 10 (blocked DequantizeLinear);
                         python3-onnx 1.12 knows opsets up to 17, so it is not checked here
                         (onnxruntime runs it in tests/scripts/interop_onnx.sh)
  external/convnet_ext.onnx + convnet_ext.bin   opset 13, the initializers over 100 bytes (the
                         four weights) in external data

  unnamed_matmul.onnx    x [2, 5] -> MatMul with "onnx::MatMul_7" [5, 3]: the name a
                         PyTorch export gives a transposed Linear weight, found as a linear
                         layer from the graph, not the name

Input "x" [1, 1, 6, 6]; output "y" [1, 4]. Weights: numpy's default_rng(18).

Run: /usr/bin/python3 tests/scripts/make_onnx_qdq_fixtures.py  (from anywhere)
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "onnx", "qdq")


def weights():
    rng = np.random.default_rng(18)
    f = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)
    return {
        "conv.weight": f(3, 1, 3, 3),      # Conv: [out, in, kh, kw]
        "conv.bias": f(3),
        "mm.weight": f(48, 32),            # MatMul: [in, out]
        "gemm_a.weight": f(32, 16),        # Gemm transB=0: [in, out]
        "gemm_a.bias": f(16),
        "gemm_b.weight": f(4, 16),         # Gemm transB=1: [out, in]
        "gemm_b.bias": f(4),
    }


def graph(w, inits_as_inputs):
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["cr"]),
        helper.make_node("Flatten", ["cr"], ["f"], axis=1),
    ]
    # Flatten gives [1, 108]; take the first 48 features so MatMul's weight stays small.
    nodes += [
        helper.make_node("Slice", ["f", "s_start", "s_end", "s_axes"], ["fs"]),
        helper.make_node("MatMul", ["fs", "mm.weight"], ["m"], name="mm"),
        helper.make_node("Relu", ["m"], ["mr"]),
        helper.make_node("Gemm", ["mr", "gemm_a.weight", "gemm_a.bias"], ["ga"], transB=0, name="gemm_a"),
        helper.make_node("Relu", ["ga"], ["gar"]),
        helper.make_node("Gemm", ["gar", "gemm_b.weight", "gemm_b.bias"], ["gb"], transB=1, name="gemm_b"),
        helper.make_node("Softmax", ["gb"], ["y"], axis=1),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    inits += [numpy_helper.from_array(np.array([0], np.int64), "s_start"),
              numpy_helper.from_array(np.array([48], np.int64), "s_end"),
              numpy_helper.from_array(np.array([1], np.int64), "s_axes")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])]
    if inits_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    return helper.make_graph(nodes, "convnet", inputs,
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)


def model(g, opset, ir):
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="quantlens-fixtures")
    m.ir_version = ir
    return m


def main():
    os.makedirs(os.path.join(OUT, "external"), exist_ok=True)
    w = weights()

    m11 = model(graph(w, True), 11, 6)
    onnx.checker.check_model(m11, full_check=True)
    onnx.save(m11, os.path.join(OUT, "convnet_opset11.onnx"))

    m21 = model(graph(w, False), 21, 10)
    onnx.save(m21, os.path.join(OUT, "convnet_opset21.onnx"))

    m13 = model(graph(w, False), 13, 7)
    onnx.checker.check_model(m13, full_check=True)
    ext = os.path.join(OUT, "external")
    for f in ("convnet_ext.onnx", "convnet_ext.bin"):
        if os.path.exists(os.path.join(ext, f)):
            os.remove(os.path.join(ext, f))
    onnx.save_model(m13, os.path.join(ext, "convnet_ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="convnet_ext.bin", size_threshold=100)
    onnx.checker.check_model(os.path.join(ext, "convnet_ext.onnx"))
    w7 = (np.random.default_rng(7).standard_normal((5, 3)) * 0.5).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["y"])], "unnamed",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                          [numpy_helper.from_array(w7, "onnx::MatMul_7")])
    mu = model(g, 13, 7)
    onnx.checker.check_model(mu, full_check=True)
    onnx.save(mu, os.path.join(OUT, "unnamed_matmul.onnx"))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
