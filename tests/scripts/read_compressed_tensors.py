#!/usr/bin/python3
"""Reads a compressed-tensors checkpoint folder and dequantizes it, as the format's own
sources do, with numpy only (no compressed-tensors / vLLM install is possible here).

  read_compressed_tensors.py DIR [--expect FAKE.safetensors] [--scheme NAME]

Written from neuralmagic/compressed-tensors (read, not copied):
  - config.json "quantization_config": quant_method "compressed-tensors",
    quantization_status "compressed", format, config_groups {name: {targets, weights,
    input_activations, output_activations, format}}, ignore (quantization/quant_config.py,
    compressors/model_compressors/model_compressor.py update_config);
  - int-quantized (compressors/quantized_compressors/naive_quantized.py): <m>.weight int8
    [out, in], <m>.weight_scale [out, 1] (channel) or [1] (tensor); the schemes with
    activations (compressors/format.py picks int-quantized when input_activations is set):
    int8 dynamic per token (INT8_W8A8), dynamic per tensor (quant_args.py allows strategy
    "tensor" with dynamic true), static per tensor;
  - pack-quantized (pack_quantized.py), weight-only (input_activations null: W8A16, W4A16
    in quant_scheme.py): <m>.weight_packed int32 [out, ceil(in / (32/bits))],
    <m>.weight_shape [2]; unpack_from_int32: value i of each int32 is
    (word >> bits*i) & mask at column word*pack_factor + i, minus 2^(bits-1);
  - dequantize (quantization/lifecycle/forward.py _dequantize): x_q.to(scale.dtype),
    minus zero point if any, times scale; for group strategy column j uses scale[:, j // group_size]
    (scale shape [out, in / group_size], lifecycle/initialize.py);
  - static input activations (W8A8 static: input_activations with dynamic false, strategy
    "tensor", int 8 bits): <m>.input_scale [1] in the weight scale's dtype and, when not
    symmetric, <m>.input_zero_point int8 [1] (initialize.py: expected_shape (1,), zp_dtype
    int8; compressors/base.py _remove_symmetric_zp drops the zero point of symmetric
    schemes). fake_quantize_input() is forward_helpers.py _quantize_dequantize: x / scale
    + zero point, clamp to [-128, 127] (helpers.py calculate_range), round half to even
    (torch.round), minus zero point, times scale.
Each config group's scheme is named W<b>A16, W8A8-dynamic-token, W8A8-dynamic-tensor or
W8A8-static; with --scheme NAME every group must be that one.
With --expect, every dequantized weight must equal FAKE.safetensors' tensor bit for bit
(quantlens-cli --fake-quant: Quantlens' own dequantized values), and every other tensor
must equal it too. Exits 1 on any difference, with the tensor and the first index.
tests/scripts/check_ct_static.py imports load() and fake_quantize_input() to check the
static input parameters against Quantlens and PyTorch.
"""
import json
import os
import struct
import sys

import numpy as np

ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
             "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def bf16_to_f32(raw):
    return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out, dtypes = {}, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        if info["dtype"] == "BF16":
            arr = bf16_to_f32(buf)  # numpy has no bfloat16; widening is exact
        else:
            arr = np.frombuffer(buf, dtype=ST_DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
        dtypes[name] = info["dtype"]
    return out, dtypes


def fail(msg):
    print("read_compressed_tensors: " + msg, file=sys.stderr)
    sys.exit(1)


def unpack_from_int32(packed, num_bits, shape):
    pack_factor = 32 // num_bits
    mask = (1 << num_bits) - 1
    words = packed.astype(np.int64) & 0xFFFFFFFF  # the int32 bit pattern, unsigned
    rows, cols = words.shape
    unpacked = np.zeros((rows, cols * pack_factor), dtype=np.int64)
    for i in range(pack_factor):
        unpacked[:, i::pack_factor] = (words >> (num_bits * i)) & mask
    unpacked = unpacked[:, :int(shape[1])]
    return (unpacked - (1 << (num_bits - 1))).astype(np.int8)


def dequantize(x_q, scale, args):
    # forward.py _dequantize: in the scale's dtype; BF16 scales were widened exactly to float32.
    x = x_q.astype(scale.dtype)
    strategy = args["strategy"]
    if strategy == "group":
        gs = int(args["group_size"])
        if scale.shape != (x.shape[0], x.shape[1] // gs):
            fail(f"group scale shape {scale.shape} for weight {x.shape} and group size {gs}")
        return x * np.repeat(scale, gs, axis=1)
    if strategy == "channel":
        if scale.shape != (x.shape[0], 1):
            fail(f"channel scale shape {scale.shape} for weight {x.shape}")
        return x * scale
    if strategy == "tensor":
        if scale.shape != (1,):
            fail(f"tensor scale shape {scale.shape}")
        return x * scale
    fail(f"strategy {strategy} is not read here")


def is_static_tensor_input(a):
    return (a is not None and a["dynamic"] is False and a["strategy"] == "tensor" and a["num_bits"] == 8
            and a["type"] == "int")


def fake_quantize_input(x, scale, zero_point):
    """_quantize_dequantize of one layer input with its static per-tensor parameters."""
    x = np.asarray(x, dtype=np.float32)
    s = np.float32(scale)
    scaled = x / s
    if zero_point is not None:
        scaled = scaled + np.float32(zero_point)
    q = np.round(np.clip(scaled, np.float32(-128), np.float32(127)))
    if zero_point is not None:
        q = q - np.float32(zero_point)
    return (q * s).astype(np.float32)


def is_dynamic_input(a, strategy):
    return (a is not None and a["dynamic"] is True and a["strategy"] == strategy and a["num_bits"] == 8
            and a["type"] == "int" and a.get("observer") is None)


def scheme_name(g):
    if g["format"] == "pack-quantized":
        return f"W{g['weights']['num_bits']}A16"
    a = g["input_activations"]
    return "W8A8-static" if is_static_tensor_input(a) else "W8A8-dynamic-" + a["strategy"]


def scheme_for(module, qc):
    if module in qc.get("ignore", []):
        return None
    for g in qc["config_groups"].values():
        t = g["targets"]
        if module in t or "Linear" in t:
            return g
    return None


def load(folder):
    """(quantization_config, modules, dense tensors, static inputs {module: (scale, zero_point or None)})."""
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    qc = config.get("quantization_config")
    if not qc:
        fail("config.json has no quantization_config")
    for k, want in (("quant_method", "compressed-tensors"), ("quantization_status", "compressed")):
        if qc.get(k) != want:
            fail(f"quantization_config.{k} is {qc.get(k)!r}, not {want!r}")
    for name, g in qc["config_groups"].items():
        w = g["weights"]
        if w["type"] != "int" or not w["symmetric"] or w["dynamic"]:
            fail(f"{name}: weights are not static symmetric int")
        if g["format"] == "int-quantized":
            a = g["input_activations"]
            if not (is_dynamic_input(a, "token") or is_dynamic_input(a, "tensor") or is_static_tensor_input(a)):
                fail(f"{name}: int-quantized without dynamic per-token / per-tensor or static per-tensor 8-bit activations")
            if a["symmetric"] is not True and a.get("zp_dtype") not in (None, "torch.int8"):
                fail(f"{name}: input zp_dtype {a.get('zp_dtype')!r}")
            if w["num_bits"] != 8:
                fail(f"{name}: int-quantized with {w['num_bits']}-bit weights")
        elif g["format"] == "pack-quantized":
            if g["input_activations"] is not None:
                fail(f"{name}: pack-quantized with input_activations (Quantlens writes it weight-only)")
            if w["strategy"] not in ("tensor", "channel", "group"):
                fail(f"{name}: pack-quantized strategy {w['strategy']}")
        else:
            fail(f"{name}: format {g['format']} is not read here")
    if qc["format"] not in ("int-quantized", "pack-quantized", "mixed-precision"):
        fail(f"format {qc['format']}")

    tensors, dtypes = read_safetensors(os.path.join(folder, "model.safetensors"))
    modules = sorted({n[: -len(".weight_scale")] for n in tensors if n.endswith(".weight_scale")})
    dense = {}
    inputs = {}
    used = set()
    for m in modules:
        g = scheme_for(m, qc)
        if g is None:
            fail(f"{m} has a weight_scale but no config group matches it")
        args = g["weights"]
        scale = tensors[m + ".weight_scale"]
        used.add(m + ".weight_scale")
        if g["format"] == "int-quantized":
            q = tensors[m + ".weight"]
            if dtypes[m + ".weight"] != "I8":
                fail(f"{m}.weight is {dtypes[m + '.weight']}, not I8")
            used.add(m + ".weight")
        else:
            packed, shape = tensors[m + ".weight_packed"], tensors[m + ".weight_shape"]
            if dtypes[m + ".weight_packed"] != "I32":
                fail(f"{m}.weight_packed is {dtypes[m + '.weight_packed']}, not I32")
            pf = 32 // args["num_bits"]
            if packed.shape != (int(shape[0]), -(-int(shape[1]) // pf)):
                fail(f"{m}.weight_packed shape {packed.shape} for weight_shape {list(shape)}")
            q = unpack_from_int32(packed, args["num_bits"], shape)
            lim = 1 << (args["num_bits"] - 1)
            if q.min() < -lim or q.max() > lim - 1:
                fail(f"{m}: unpacked values outside {args['num_bits']} bits")
            used.update({m + ".weight_packed", m + ".weight_shape"})
        dense[m + ".weight"] = dequantize(q, scale, args)
        a = g["input_activations"]
        has_zp = m + ".input_zero_point" in tensors
        if is_static_tensor_input(a):
            if m + ".input_scale" not in tensors:
                fail(f"{m}: static input activations without {m}.input_scale")
            s_in = tensors[m + ".input_scale"]
            if s_in.shape != (1,) or dtypes[m + ".input_scale"] != dtypes[m + ".weight_scale"]:
                fail(f"{m}.input_scale is {dtypes[m + '.input_scale']} {list(s_in.shape)}, not "
                     f"{dtypes[m + '.weight_scale']} [1]")
            if not (np.isfinite(s_in[0]) and s_in[0] > 0):
                fail(f"{m}.input_scale {s_in[0]} is not a positive number")
            zp = None
            if a["symmetric"]:
                if has_zp:
                    fail(f"{m}: a symmetric input scheme with an input_zero_point (vLLM does not load it)")
            else:
                if not has_zp:
                    fail(f"{m}: an asymmetric input scheme without {m}.input_zero_point")
                zpt = tensors[m + ".input_zero_point"]
                if zpt.shape != (1,) or dtypes[m + ".input_zero_point"] != "I8":
                    fail(f"{m}.input_zero_point is {dtypes[m + '.input_zero_point']} {list(zpt.shape)}, not I8 [1]")
                zp = int(zpt[0])
                used.add(m + ".input_zero_point")
            used.add(m + ".input_scale")
            inputs[m] = (s_in[0], zp)
        elif m + ".input_scale" in tensors or has_zp:
            fail(f"{m}: input_scale/input_zero_point without a static input scheme")
    for n, v in tensors.items():
        if n not in used:
            dense[n] = v
    return qc, modules, dense, inputs


def main():
    args = sys.argv[1:]
    opts = dict(zip(args[1::2], args[2::2]))
    if len(args) % 2 != 1 or not set(opts) <= {"--expect", "--scheme"}:
        fail("usage: read_compressed_tensors.py DIR [--expect FAKE.safetensors] [--scheme NAME]")
    folder = args[0]
    qc, modules, dense, inputs = load(folder)
    schemes = sorted({scheme_name(g) for g in qc["config_groups"].values()})
    print(f"read {folder}: {len(modules)} quantized modules ({qc['format']}, {', '.join(schemes)}), "
          f"{len(dense)} dense tensors" + (f", {len(inputs)} static input scales" if inputs else ""))
    if "--scheme" in opts and schemes != [opts["--scheme"]]:
        fail(f"the config groups are {schemes}, not [{opts['--scheme']!r}]")

    if "--expect" in opts:
        expect, _ = read_safetensors(opts["--expect"])
        if set(expect) != set(dense):
            fail(f"tensor names differ: only in export {sorted(set(dense) - set(expect))[:5]}, "
                 f"only in fake-quant {sorted(set(expect) - set(dense))[:5]}")
        for n in expect:
            a = np.asarray(dense[n], dtype=np.float32) if dense[n].dtype.kind == "f" else dense[n]
            b = expect[n]
            if a.shape != b.shape or not np.array_equal(a.view(np.uint8) if a.dtype == b.dtype else a, b.view(np.uint8) if a.dtype == b.dtype else b):
                diff = np.argwhere(a != b)
                fail(f"{n}: differs from the fake-quant copy (shape {a.shape} vs {b.shape}, first at {diff[0].tolist() if len(diff) else '?'})")
        print(f"all {len(expect)} tensors equal the fake-quant copy bit for bit "
              f"({len(modules)} dequantized here from the compressed-tensors layout)")


if __name__ == "__main__":
    main()
