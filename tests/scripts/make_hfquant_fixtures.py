#!/usr/bin/python3
"""Writes tiny quantized Hugging Face checkpoints (compressed-tensors int-quantized and
pack-quantized, GPTQ v1 with desc_act and GPTQ v2 asymmetric), the float weights their
reference dequantization gives, and hostile variants for the malformed corpus.

Run from anywhere with /usr/bin/python3 (numpy, torch 1.13). Neither compressed-tensors
nor auto-gptq / gptqmodel is installable here, so the packing and the dequantization
below are written from the published sources' rules (read, not copied):

compressed-tensors (neuralmagic/compressed-tensors):
  - compressors/quantized_compressors/pack_quantized.py, pack_to_int32 / unpack_from_int32:
    value + 2^(bits-1) as unsigned, 32 // bits values per int32 along the packed dim,
    the first in the lowest bits, the last word of a row zero-padded; asymmetric group
    and channel zero points packed the same way along dim 0 (compress_weight);
  - compressors/quantized_compressors/naive_quantized.py: int-quantized keeps the
    integers in <m>.weight with <m>.weight_scale and <m>.weight_zero_point;
  - quantization/lifecycle/forward.py, dequantize / _process_quantization / _dequantize:
    strategy inferred from the scale's shape, g_idx permutation for group strategy
    (argsort(g_idx), groups of group_size, inverse permutation), and
    (x_q.to(scale.dtype) - zero_point.to(scale.dtype)) * scale computed in the scale's
    dtype: the expected floats of bf16/fp16-scaled layers are rounded to that dtype.

GPTQ (ModelCloud/GPTQModel):
  - gptqmodel/utils/model_dequant.py, convert_gptq_file / unpack_rows / unpack_cols /
    _uses_gptq_v1_qzeros / _correct_gptq_v1_qzeros: qweight int32 [in/pf, out] packed
    along rows, qzeros int32 [groups, out/pf] packed along columns, checkpoint_format
    "gptq" (v1) storing each zero point minus one (the reader adds 1 per field, masked),
    "gptq_v2" storing it as is; weight = (q - zeros[g_idx]) * scales[g_idx] in float32,
    transposed to [out, in].

Outputs (tests/data/hfquant/): ct_int/, ct_pack/, gptq/, gptq_v2/ (config.json +
model.safetensors each) and <name>_ref.safetensors with the expected float32 weight of
every quantized module as <m>.weight. tests/data/malformed/hfquant/<case>/ hold the
hostile variants; tests/core/tst_hfquant.cpp names the reason each must give.
"""
import json
import os
import shutil
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data"))
OUT = os.path.join(DATA, "hfquant")
BAD = os.path.join(DATA, "malformed", "hfquant")
SEEDS = os.path.normpath(os.path.join(HERE, "..", "fuzz", "seeds", "hfquant"))
# tests/fuzz/fuzz_hfquant.cpp: the first byte of an input picks its quantization_config.
FUZZ_CONFIG = {"ct_int": 0, "ct_pack": 1, "gptq": 2, "gptq_v2": 3}

ST_NAME = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int8: "I8",
           torch.int32: "I32", torch.int64: "I64"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors):
    """tensors: list of (name, torch tensor), in file order."""
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_folder(folder, qc, tensors):
    os.makedirs(folder, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "quantization_config": qc}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors)


# ---- compressed-tensors -------------------------------------------------------------

def pack_to_int32(value, bits, packed_dim=1):
    """pack_quantized.py pack_to_int32, same rule, numpy."""
    v = (value.astype(np.int64) + (1 << (bits - 1))).astype(np.uint32)
    if packed_dim == 0:
        v = v.T
    rows, cols = v.shape
    pf = 32 // bits
    padded = -(-cols // pf) * pf
    v = np.pad(v, ((0, 0), (0, padded - cols)))
    v = v.reshape(rows, padded // pf, pf)
    packed = np.zeros((rows, padded // pf), dtype=np.uint32)
    for i in range(pf):
        packed |= v[:, :, i] << np.uint32(bits * i)
    packed = packed.view(np.int32)
    if packed_dim == 0:
        packed = packed.T
    return torch.from_numpy(np.ascontiguousarray(packed))


def unpack_from_int32(value, bits, shape, packed_dim=1):
    """pack_quantized.py unpack_from_int32, same rule: the reference reader's unpacking."""
    pf = 32 // bits
    mask = (1 << bits) - 1
    v = value.numpy().view(np.uint32).astype(np.int64)
    if packed_dim == 1:
        u = np.zeros((v.shape[0], v.shape[1] * pf), dtype=np.int64)
        for i in range(pf):
            u[:, i::pf] = (v >> (bits * i)) & mask
        u = u[:, :shape[1]]
    else:
        u = np.zeros((v.shape[0] * pf, v.shape[1]), dtype=np.int64)
        for i in range(pf):
            u[i::pf, :] = (v >> (bits * i)) & mask
        u = u[:shape[0], :]
    return torch.from_numpy((u - (1 << (bits - 1))).astype(np.int8))


def ct_dequantize(x_q, scale, zero_point=None, g_idx=None):
    """forward.py dequantize() with args inferred from the scale's shape, then
    _process_quantization(do_quantize=False) and _dequantize, in the scale's dtype."""
    def _deq(xq, s, z):
        d = xq.to(s.dtype)
        if z is not None:
            d = d - z.to(s.dtype)
        return d * s

    if scale.ndim <= 1 or scale.shape[1] == 1:  # tensor or channel
        return _deq(x_q, scale, zero_point)
    rows, cols = x_q.shape
    if scale.shape[0] == 1 or scale.shape[0] == rows:  # group
        group_size = int(cols / scale.shape[1])
        x = x_q
        column_order = g_idx is None or bool((g_idx == -1).any())
        if not column_order:
            perm = torch.argsort(g_idx)
            x = x.index_select(-1, perm)
        x = x.unflatten(-1, (-(-x.shape[-1] // group_size), group_size))
        out = _deq(x, scale.unsqueeze(-1), zero_point.unsqueeze(-1) if zero_point is not None else None)
        out = out.flatten(start_dim=-2).to(scale.dtype)
        if not column_order:
            out = out.index_select(-1, torch.argsort(perm))
        return out
    raise ValueError("block strategy not used in these fixtures")


def quantize_sym(w, bits, group):
    """Any integer codes will do (the codes are the input here); symmetric absmax."""
    qmax = (1 << (bits - 1)) - 1
    out_, in_ = w.shape
    g = in_ if group is None else group
    ws = w.reshape(out_, in_ // g, g)
    s = np.abs(ws).max(axis=2) / qmax
    s[s == 0] = 1
    q = np.clip(np.round(ws / s[:, :, None]), -qmax - 1, qmax).astype(np.int8).reshape(out_, in_)
    return q, s


def make_ct_int(rng):
    tensors, ref = [], []
    qc = {"quant_method": "compressed-tensors", "format": "int-quantized", "quantization_status": "compressed",
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
              "num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "group_size": None},
              "input_activations": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token",
                                    "dynamic": True}}},
          "ignore": ["lm_head"]}
    tensors.append(("model.norm.weight", torch.from_numpy(rng.standard_normal(24).astype(np.float32))))
    # per channel, bfloat16 scales: the reference result is rounded to bfloat16
    w = rng.standard_normal((16, 24)).astype(np.float32)
    q, s = quantize_sym(w, 8, None)
    qt, st = torch.from_numpy(q), torch.from_numpy(s.astype(np.float32)).to(torch.bfloat16)
    tensors += [("model.layers.0.mlp.up_proj.weight", qt), ("model.layers.0.mlp.up_proj.weight_scale", st)]
    ref.append(("model.layers.0.mlp.up_proj.weight", ct_dequantize(qt, st).float()))
    # per tensor, float32 scale [1]
    w = rng.standard_normal((8, 24)).astype(np.float32)
    q, s = quantize_sym(w.reshape(1, -1), 8, None)
    qt, st = torch.from_numpy(q.reshape(8, 24)), torch.tensor([float(s[0, 0])], dtype=torch.float32)
    tensors += [("model.layers.0.self_attn.k_proj.weight", qt), ("model.layers.0.self_attn.k_proj.weight_scale", st)]
    ref.append(("model.layers.0.self_attn.k_proj.weight", ct_dequantize(qt, st).float()))
    # group 8, asymmetric with int8 zero points, float16 scales
    w = rng.standard_normal((12, 24)).astype(np.float32)
    q = rng.integers(-128, 128, size=(12, 24)).astype(np.int8)
    s = (rng.random((12, 3)) * 0.02 + 0.001).astype(np.float16)
    z = rng.integers(-20, 20, size=(12, 3)).astype(np.int8)
    qt, st, zt = torch.from_numpy(q), torch.from_numpy(s), torch.from_numpy(z)
    tensors += [("model.layers.0.mlp.down_proj.weight", qt), ("model.layers.0.mlp.down_proj.weight_scale", st),
                ("model.layers.0.mlp.down_proj.weight_zero_point", zt)]
    ref.append(("model.layers.0.mlp.down_proj.weight", ct_dequantize(qt, st, zt).float()))
    return qc, tensors, ref


def make_ct_pack(rng):
    tensors, ref = [], []
    weights = lambda sym, strategy, group, actorder=None: {
        "num_bits": 4, "type": "int", "symmetric": sym, "strategy": strategy, "group_size": group, "actorder": actorder}
    qc = {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
          "config_groups": {
              "group_0": {"targets": ["Linear"], "weights": weights(True, "group", 32), "format": "pack-quantized"},
              "group_1": {"targets": ["model.layers.0.mlp.gate_proj"], "weights": weights(True, "channel", None)},
              "group_2": {"targets": ["re:.*down_proj$"], "weights": weights(False, "group", 32, "group")}},
          "ignore": ["lm_head"]}

    def add(mod, q, scale, zp=None, g_idx=None, packed_zp=False):
        tensors.append((mod + ".weight_packed", pack_to_int32(q, 4)))
        tensors.append((mod + ".weight_shape", torch.tensor(list(q.shape), dtype=torch.int64)))
        tensors.append((mod + ".weight_scale", scale))
        zt = None
        if zp is not None:
            zt = torch.from_numpy(zp)
            tensors.append((mod + ".weight_zero_point", pack_to_int32(zp, 4, packed_dim=0) if packed_zp else zt))
        if g_idx is not None:
            tensors.append((mod + ".weight_g_idx", g_idx))
        # the reference reader: unpack what was written, then dequantize
        packed = dict(tensors)[mod + ".weight_packed"]
        x_q = unpack_from_int32(packed, 4, q.shape)
        if packed_zp:
            zt = unpack_from_int32(dict(tensors)[mod + ".weight_zero_point"], 4, (q.shape[0], scale.shape[-1]), packed_dim=0)
        ref.append((mod + ".weight", ct_dequantize(x_q, scale, zt, g_idx).float()))

    # group 32, symmetric, float16 scales, 96 inputs (3 groups)
    w = rng.standard_normal((16, 96)).astype(np.float32)
    q, s = quantize_sym(w, 4, 32)
    add("model.layers.0.mlp.up_proj", q, torch.from_numpy(s.astype(np.float16)))
    # per channel, bfloat16 scales, 36 inputs: the last int32 of each row is padded
    w = rng.standard_normal((10, 36)).astype(np.float32)
    q, s = quantize_sym(w, 4, None)
    add("model.layers.0.mlp.gate_proj", q, torch.from_numpy(s.astype(np.float32)).to(torch.bfloat16))
    # group 32, asymmetric (zero points packed along dim 0), activation order g_idx,
    # 12 outputs (the zero-point words are padded), float32 scales
    q = rng.integers(-8, 8, size=(12, 64)).astype(np.int8)
    s = (rng.random((12, 2)) * 0.1 + 0.01).astype(np.float32)
    z = rng.integers(-8, 8, size=(12, 2)).astype(np.int8)
    g_idx = torch.from_numpy((rng.permutation(64) // 32).astype(np.int32))
    add("model.layers.0.mlp.down_proj", q, torch.from_numpy(s), z, g_idx, packed_zp=True)
    tensors.append(("model.norm.weight", torch.ones(16)))
    return qc, tensors, ref


# ---- GPTQ ---------------------------------------------------------------------------

def pack_rows(values, bits):
    """The inverse of model_dequant.py unpack_rows: input rows packed into int32 words."""
    pf = 32 // bits
    v = values.astype(np.uint32)
    out = np.zeros((v.shape[0] // pf, v.shape[1]), dtype=np.uint32)
    for i in range(pf):
        out |= v[i::pf, :] << np.uint32(bits * i)
    return torch.from_numpy(out.view(np.int32))


def pack_cols(values, bits):
    """model_dequant.py pack_cols: columns packed into int32 words."""
    pf = 32 // bits
    v = values.astype(np.uint32)
    out = np.zeros((v.shape[0], v.shape[1] // pf), dtype=np.uint32)
    for i in range(pf):
        out |= v[:, i::pf] << np.uint32(bits * i)
    return torch.from_numpy(out.view(np.int32))


def unpack(packed, bits, dim):
    pf = 32 // bits
    mask = (1 << bits) - 1
    v = packed.numpy().view(np.uint32).astype(np.int64)
    if dim == 0:
        u = np.zeros((v.shape[0] * pf, v.shape[1]), dtype=np.int64)
        for i in range(pf):
            u[i::pf, :] = (v >> (bits * i)) & mask
    else:
        u = np.zeros((v.shape[0], v.shape[1] * pf), dtype=np.int64)
        for i in range(pf):
            u[:, i::pf] = (v >> (bits * i)) & mask
    return u


def gptq_reference(qweight, qzeros, scales, g_idx, bits, v1):
    """model_dequant.py convert_gptq_file: v1 zero correction per field, float32 math."""
    zeros = unpack(qzeros, bits, 1)
    if v1:
        zeros = (zeros + 1) & ((1 << bits) - 1)
    w = torch.from_numpy(unpack(qweight, bits, 0)).to(torch.float32)
    gi = g_idx.to(torch.long)
    sf = scales.to(torch.float32)[gi]
    zf = torch.from_numpy(zeros).to(torch.float32)[gi]
    return ((w - zf) * sf).t().contiguous()


def make_gptq(rng, v1, sym, desc_act, bits=4):
    tensors, ref = [], []
    qc = {"quant_method": "gptq", "bits": bits, "group_size": 32, "desc_act": desc_act, "sym": sym,
          "true_sequential": True, "checkpoint_format": "gptq" if v1 else "gptq_v2"}
    maxq = (1 << bits) - 1
    for mod, out_, in_ in (("model.layers.0.self_attn.q_proj", 16, 64), ("model.layers.0.mlp.down_proj", 24, 96)):
        groups = in_ // 32
        q = rng.integers(0, maxq + 1, size=(in_, out_)).astype(np.uint32)
        if sym:
            zeros = np.full((groups, out_), 1 << (bits - 1), dtype=np.int64)
        else:
            zeros = rng.integers(0, maxq + 1, size=(groups, out_)).astype(np.int64)
            zeros[0, :4] = 0  # stored as 0 - 1 = 15 in v1: the per-field wrap matters
        stored = (zeros - 1) & maxq if v1 else zeros
        scales = torch.from_numpy((rng.random((groups, out_)) * 0.02 + 0.001).astype(np.float16))
        g = np.arange(in_) // 32
        if desc_act:
            g = g[rng.permutation(in_)]
        g_idx = torch.from_numpy(g.astype(np.int32))
        qweight, qzeros = pack_rows(q, bits), pack_cols(stored.astype(np.uint32), bits)
        tensors += [(mod + ".qweight", qweight), (mod + ".qzeros", qzeros), (mod + ".scales", scales),
                    (mod + ".g_idx", g_idx), (mod + ".bias", torch.zeros(out_, dtype=torch.float16))]
        ref.append((mod + ".weight", gptq_reference(qweight, qzeros, scales, g_idx, bits, v1)))
    return qc, tensors, ref


# ---- hostile variants ---------------------------------------------------------------

def replace(tensors, name, value):
    return [(n, value if n == name else t) for n, t in tensors]


def make_bad(ct_pack, gptq, ct_int):
    if os.path.isdir(BAD):
        shutil.rmtree(BAD)
    qc, t, _ = ct_pack
    up = "model.layers.0.mlp.up_proj"
    packed = dict(t)[up + ".weight_packed"]
    write_folder(os.path.join(BAD, "ct_truncated_packed"), qc, replace(t, up + ".weight_packed", packed[:, :-1].contiguous()))
    scale = dict(t)[up + ".weight_scale"]
    write_folder(os.path.join(BAD, "ct_scale_shape"), qc,
                 replace(t, up + ".weight_scale", torch.cat([scale, scale[:, :2]], dim=1).contiguous()))
    write_folder(os.path.join(BAD, "ct_weight_shape_huge"), qc,
                 replace(t, up + ".weight_shape", torch.tensor([1 << 40, 96], dtype=torch.int64)))
    write_folder(os.path.join(BAD, "ct_missing_scale"), qc, [(n, x) for n, x in t if n != up + ".weight_scale"])
    dn = "model.layers.0.mlp.down_proj"
    g = dict(t)[dn + ".weight_g_idx"].clone()
    g[5] = 7
    write_folder(os.path.join(BAD, "ct_gidx_range"), qc, replace(t, dn + ".weight_g_idx", g))
    qc2, t2, _ = ct_int
    kp = "model.layers.0.self_attn.k_proj"
    write_folder(os.path.join(BAD, "ct_int_scale_dtype"), qc2, replace(t2, kp + ".weight_scale", torch.tensor([3], dtype=torch.int32)))
    qc3, t3, _ = gptq
    q = "model.layers.0.self_attn.q_proj"
    g = dict(t3)[q + ".g_idx"].clone()
    g[3] = 2  # two groups of 32 inputs
    write_folder(os.path.join(BAD, "gptq_gidx_range"), qc3, replace(t3, q + ".g_idx", g))
    g = dict(t3)[q + ".g_idx"].clone()
    g[3] = -1
    write_folder(os.path.join(BAD, "gptq_gidx_negative"), qc3, replace(t3, q + ".g_idx", g))
    qz = dict(t3)[q + ".qzeros"]
    write_folder(os.path.join(BAD, "gptq_qzeros_shape"), qc3, replace(t3, q + ".qzeros", qz[:, :1].contiguous()))
    write_folder(os.path.join(BAD, "gptq_gidx_length"), qc3, replace(t3, q + ".g_idx", dict(t3)[q + ".g_idx"][:63].contiguous()))
    write_folder(os.path.join(BAD, "gptq_bits"), dict(qc3, bits=3), t3)
    write_folder(os.path.join(BAD, "gptq_format"), dict(qc3, checkpoint_format="marlin"), t3)
    os.makedirs(os.path.join(BAD, "config_not_object"), exist_ok=True)
    write_folder(os.path.join(BAD, "config_not_object"), "gptq", t3)


def main():
    rng = np.random.default_rng(20)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    made = {}
    for name, make in (("ct_int", lambda: make_ct_int(rng)), ("ct_pack", lambda: make_ct_pack(rng)),
                       ("gptq", lambda: make_gptq(rng, v1=True, sym=True, desc_act=True)),
                       ("gptq_v2", lambda: make_gptq(rng, v1=False, sym=False, desc_act=False))):
        qc, tensors, ref = make()
        write_folder(os.path.join(OUT, name), qc, tensors)
        write_safetensors(os.path.join(OUT, name + "_ref.safetensors"), ref)
        made[name] = (qc, tensors, ref)
        print(f"{name}: {len(tensors)} tensors, {len(ref)} quantized weights")
    # Older AutoGPTQ checkpoints: settings in quantize_config.json (no checkpoint_format:
    # v1), none in config.json. Same tensors and reference as gptq/.
    legacy = os.path.join(OUT, "gptq_legacy")
    os.makedirs(legacy)
    with open(os.path.join(legacy, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, f, indent=1)
    with open(os.path.join(legacy, "quantize_config.json"), "w") as f:
        json.dump({"bits": 4, "group_size": 32, "desc_act": True, "sym": True, "static_groups": False}, f, indent=1)
    write_safetensors(os.path.join(legacy, "model.safetensors"), made["gptq"][1])
    write_safetensors(os.path.join(OUT, "gptq_legacy_ref.safetensors"), made["gptq"][2])
    # A compressed-tensors format this reader does not decode (marlin-24 also names its
    # codes weight_packed): its tensors must stay listed as stored, not be misread.
    qc = json.loads(json.dumps(made["ct_pack"][0]))
    qc["format"] = "marlin-24"
    for g in qc["config_groups"].values():
        g["format"] = "marlin-24"
    write_folder(os.path.join(OUT, "ct_other_format"), qc, made["ct_pack"][1])
    make_bad(made["ct_pack"], made["gptq"], made["ct_int"])
    print("malformed:", sorted(os.listdir(BAD)))
    write_seeds()


def write_seeds():
    """Fuzz seeds: the selector byte of the fixture's config, then its model.safetensors."""
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    os.makedirs(SEEDS)
    folders = [(n, os.path.join(OUT, n), FUZZ_CONFIG[n]) for n in FUZZ_CONFIG]
    for case in sorted(os.listdir(BAD)):
        kind = "ct_int" if case.startswith("ct_int") else "ct_pack" if case.startswith("ct_") else "gptq"
        folders.append(("malformed_" + case, os.path.join(BAD, case), FUZZ_CONFIG[kind]))
    for name, folder, sel in folders:
        with open(os.path.join(folder, "model.safetensors"), "rb") as f:
            body = f.read()
        with open(os.path.join(SEEDS, name + ".bin"), "wb") as f:
            f.write(bytes([sel]) + body)


if __name__ == "__main__":
    main()
