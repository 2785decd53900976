#!/usr/bin/python3
"""Activation-aware quantization references (issue #19), written with torch 1.13.

Writes into tests/data/activations/:
  gpt2_tiny_acts.safetensors, llama_tiny_acts.safetensors
      for every linear layer of tests/data/encoder/gpt2_tiny.safetensors and llama_tiny.safetensors
      (run through the torch forwards of make_gpt2_fixtures.py / make_llama_fixtures.py over the
      right-padded ids of their *_ref.safetensors), the input X caught by a forward pre-hook,
      padding rows dropped: <layer>.min, <layer>.max (per input channel), <layer>.hessian
      (2 XᵀX, float64), <layer>.tokens
  gptq_ref.safetensors, gptq_ref.json
      GPTQ written from the paper in llm-compressor's order of operations (gptq_quantize.py:
      observer scales from the float weights first, dead columns, dampening 0.01·mean(diag H),
      cholesky -> cholesky_inverse -> upper cholesky, 128-column blocks, actorder="weight"),
      in float64, with Quantlens' torch-symmetric / torch-affine scale rules for the groups.
      Per case: weight, hessian, q (int32), scale, zero_point, and the layer-output SQNR of
      RTN and GPTQ over the X it came from.
  smoothquant_ref.safetensors, smoothquant_ref.json
      a layer with planted activation outliers: smoothing scales and smoothed weights at
      alpha 0.5 (smooth_ln_fcs' formula), and the W8A8 output SQNR (per-token int8
      activations, per-channel int8 weights, torch-symmetric) for several alphas.

Run: /usr/bin/python3 tests/scripts/make_activation_fixtures.py
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_encoder_fixtures import heavy, write_safetensors  # noqa: E402
from make_gpt2_fixtures import Gpt2, read_safetensors  # noqa: E402
from make_llama_fixtures import Llama  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ENC = os.path.join(HERE, "..", "data", "encoder")
OUT = os.path.join(HERE, "..", "data", "activations")


def read_ref_ids(name):
    import struct
    with open(os.path.join(ENC, name + "_ref.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    def get(k):
        a, b = header[k]["data_offsets"]
        return torch.from_numpy(np.frombuffer(data[a:b], dtype="<i8").reshape(header[k]["shape"]).copy())
    return get("input_ids"), get("attention_mask")


def record(model, ids, mask):
    """{hf name: X of the real tokens} from forward pre-hooks on every linear layer."""
    mods = dict(model.named_modules())
    keep = mask.reshape(-1) == 1
    xs, hooks = {}, []
    for hf, path in model.linear_names():
        def hook(_m, inp, hf=hf):
            x = inp[0].reshape(-1, inp[0].shape[-1])
            xs[hf] = x[keep].detach().clone()
        hooks.append(mods[path].register_forward_pre_hook(hook))
    with torch.no_grad():
        model(ids, mask)
    for h in hooks:
        h.remove()
    return xs


def write_acts(name, xs):
    out = []
    for hf, x in xs.items():
        x64 = x.double()
        out += [(hf + ".min", x.min(0).values.numpy()), (hf + ".max", x.max(0).values.numpy()),
                (hf + ".hessian", (2.0 * x64.t() @ x64).numpy()),
                (hf + ".tokens", np.array([x.shape[0]], dtype=np.int64))]
    write_safetensors(os.path.join(OUT, name + "_acts.safetensors"), out)
    print(f"{name}: {len(xs)} layers, {next(iter(xs.values())).shape[0]} real tokens")


def gpt2_tiny():
    w = read_safetensors(os.path.join(ENC, "gpt2_tiny.safetensors"))
    model = Gpt2(50, 24, 32, 2, 2).eval()
    with torch.no_grad():
        for name, t, _ in model.hf_tensors():
            t.copy_(torch.from_numpy(w[name]))
    ids, mask = read_ref_ids("gpt2_tiny")
    return model, record(model, ids, mask)


def llama_tiny():
    w = read_safetensors(os.path.join(ENC, "llama_tiny.safetensors"))
    model = Llama(60, 32, 4, 2, 88, 2, eps=1e-5, theta=10000.0, pairs=False).eval()
    with torch.no_grad():
        for name, t, _ in model.tensors(gguf=False):
            t.copy_(torch.from_numpy(w[name]))
    ids, mask = read_ref_ids("llama_tiny")
    return model, record(model, ids, mask)


# ----------------------------------------------------------------------------- GPTQ
def int_range(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def observer(w32, scheme, bits, group):
    """Quantlens' scale rules (quant/quantize.cpp paramsFromRange), float32, per (row, group)."""
    qmin, qmax = int_range(bits)
    rows, cols = w32.shape
    g = cols if group == 0 else group
    ng = (cols + g - 1) // g
    scale = torch.zeros(rows, ng, dtype=torch.float32)
    zp = torch.zeros(rows, ng, dtype=torch.int32)
    eps = torch.tensor(np.finfo(np.float32).eps)
    for k in range(ng):
        blk = w32[:, k * g:(k + 1) * g]
        lo = torch.clamp(blk.min(1).values, max=0.0)
        hi = torch.clamp(blk.max(1).values, min=0.0)
        if scheme == "torch-symmetric":
            amax = torch.maximum(-lo, hi)
            s = torch.maximum(amax / torch.tensor((qmax - qmin) / 2.0, dtype=torch.float32), eps)
            z = torch.zeros(rows, dtype=torch.int32)
        else:  # torch-affine
            s = torch.maximum((hi - lo) / torch.tensor(float(qmax - qmin), dtype=torch.float32), eps)
            z = torch.clamp(qmin - torch.round(lo / s), qmin, qmax).to(torch.int32)
        scale[:, k], zp[:, k] = s, z
    return scale, zp, g


def fake_quant_column(w64, scale, zp, bits):
    """torch's quantize_per_channel arithmetic: nearbyint(x * (1/scale)) + zp, clamped; float32."""
    qmin, qmax = int_range(bits)
    inv = torch.tensor(1.0, dtype=torch.float32) / scale
    q = torch.clamp(torch.round(w64.float() * inv) + zp.float(), qmin, qmax)
    return q.to(torch.int32), ((q - zp.float()) * scale).to(w64.dtype)


def gptq_reference(W32, H, scheme, bits, group, actorder, blocksize=128, percdamp=0.01, dtype=torch.float64):
    """dtype: of the weights, Hessian and updates (llm-compressor: float32)."""
    scale, zp, g = observer(W32, scheme, bits, group)
    W = W32.to(dtype).clone()
    H = H.to(dtype).clone()
    cols = W.shape[1]
    g_idx = torch.arange(cols) // g
    perm = torch.arange(cols)
    if actorder:  # "weight": scales first, then permute; stable order for equal diagonals
        perm = torch.sort(torch.diag(H), descending=True, stable=True).indices
        W, H, g_idx = W[:, perm], H[perm][:, perm], g_idx[perm]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols)
    H[idx, idx] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    Q = torch.zeros(W.shape, dtype=torch.int32)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            k = int(g_idx[i1 + i])
            qi, q = fake_quant_column(w, scale[:, k], zp[:, k], bits)
            Q[:, i1 + i] = qi
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    Qout = torch.zeros_like(Q)
    Qout[:, perm] = Q
    return Qout, scale, zp, g


def dequant(Q, scale, zp, g):
    k = torch.arange(Q.shape[1]) // g
    return (Q.float() - zp[:, k].float()) * scale[:, k]


def out_sqnr(X, W, Wq):
    y = X.double() @ W.double().t()
    e = X.double() @ (W.double() - Wq.double()).t()
    return float(10 * torch.log10((y * y).sum() / (e * e).sum()))


def gptq_cases(gpt2_xs, gpt2_model):
    rng = np.random.default_rng(19)
    X = torch.from_numpy(rng.standard_normal((512, 256)).astype(np.float32))
    X[:, [7, 90, 200]] *= 20.0  # outlier channels
    X[:, 5] = 0.0              # a dead input
    W = torch.from_numpy(heavy(rng, (64, 256), 0.05))
    Hs = 2.0 * X.double().t() @ X.double()
    proj = gpt2_model.h[0].mlp_proj
    Xg = gpt2_xs["transformer.h.0.mlp.c_proj"]
    Wg, Hg = proj.weight.detach().clone(), 2.0 * Xg.double().t() @ Xg.double()
    # (case, layer, weight, hessian, X, scheme, bits, group, actorder)
    cases = [
        ("sym4_g128", "synthetic", W, Hs, X, "torch-symmetric", 4, 128, False),
        ("sym4_channel_actorder", "synthetic", W, Hs, X, "torch-symmetric", 4, 0, True),
        ("affine3_g64_actorder", "synthetic", W, Hs, X, "torch-affine", 3, 64, True),
        ("gpt2_tiny_c_proj_sym4_g32", "gpt2_tiny_c_proj", Wg, Hg, Xg, "torch-symmetric", 4, 32, False),
    ]
    tensors = [("synthetic.weight", W.numpy()), ("synthetic.hessian", Hs.numpy()),
               ("gpt2_tiny_c_proj.weight", Wg.numpy()), ("gpt2_tiny_c_proj.hessian", Hg.numpy())]
    meta = []
    for name, layer, Wc, Hc, Xc, scheme, bits, group, actorder in cases:
        Q, scale, zp, g = gptq_reference(Wc, Hc, scheme, bits, group, actorder)
        scale_r, zp_r, _ = observer(Wc, scheme, bits, group)
        qmin, qmax = int_range(bits)
        k = torch.arange(Wc.shape[1]) // g
        Qr = torch.clamp(torch.round(Wc * (1.0 / scale_r[:, k])) + zp_r[:, k].float(), qmin, qmax).to(torch.int32)
        rtn = out_sqnr(Xc, Wc, dequant(Qr, scale_r, zp_r, g))
        gq = out_sqnr(Xc, Wc, dequant(Q, scale, zp, g))
        # small integers are exact in float32
        tensors += [(name + ".q", Q.numpy().astype(np.float32)), (name + ".scale", scale.numpy()),
                    (name + ".zero_point", zp.numpy().astype(np.float32))]
        meta.append({"name": name, "layer": layer, "scheme": scheme, "bits": bits, "group": group, "actorder": actorder,
                     "rtn_output_sqnr_db": rtn, "gptq_output_sqnr_db": gq})
        print(f"gptq {name}: output SQNR RTN {rtn:.2f} dB, GPTQ {gq:.2f} dB")
    write_safetensors(os.path.join(OUT, "gptq_ref.safetensors"), tensors)
    with open(os.path.join(OUT, "gptq_ref.json"), "w") as f:
        json.dump({"torch": torch.__version__, "cases": meta}, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------------- SmoothQuant
def fq_sym8(x, dim):
    """torch-symmetric int8 fake quant per row (dim=1) of x, float32, as quantize_per_channel."""
    amax = torch.maximum(-torch.clamp(x.min(dim).values, max=0), torch.clamp(x.max(dim).values, min=0))
    s = torch.maximum(amax / torch.tensor(127.5, dtype=torch.float32), torch.tensor(np.finfo(np.float32).eps))
    inv = (torch.tensor(1.0, dtype=torch.float32) / s).unsqueeze(1)
    q = torch.clamp(torch.round(x * inv), -128, 127)
    return q * s.unsqueeze(1)


def w8a8_sqnr(X, W, s):
    Xs, Ws = (X, W) if s is None else (X / s, W * s)
    y = X @ W.t()
    yq = fq_sym8(Xs, 1) @ fq_sym8(Ws, 1).t()
    return float(10 * torch.log10((y.double() ** 2).sum() / ((y.double() - yq.double()) ** 2).sum()))


def smoothquant_case():
    rng = np.random.default_rng(23)
    X = torch.from_numpy(rng.standard_normal((256, 64)).astype(np.float32))
    X[:, [3, 17, 40]] *= 50.0  # planted outlier channels, as LLM.int8 sees them
    W = torch.from_numpy(heavy(rng, (48, 64), 0.05))
    act = X.abs().max(0).values
    wmax = W.abs().max(0).values.clamp(min=1e-5)
    s = (act.pow(0.5) / wmax.pow(0.5)).clamp(min=1e-5)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    sweep = []
    for a in alphas:
        sa = (act.pow(a) / wmax.pow(1 - a)).clamp(min=1e-5)
        sweep.append({"alpha": a, "sqnr_db": w8a8_sqnr(X, W, sa)})
    base = w8a8_sqnr(X, W, None)
    write_safetensors(os.path.join(OUT, "smoothquant_ref.safetensors"),
                      [("x", X.numpy()), ("weight", W.numpy()), ("scales_alpha_0.5", s.numpy()),
                       ("weight_smoothed_alpha_0.5", (W * s).numpy())])
    with open(os.path.join(OUT, "smoothquant_ref.json"), "w") as f:
        json.dump({"torch": torch.__version__, "no_smoothing_sqnr_db": base, "sweep": sweep}, f, indent=1)
        f.write("\n")
    print("smoothquant W8A8 SQNR: none %.2f dB; " % base + ", ".join(f"a={p['alpha']}: {p['sqnr_db']:.2f}" for p in sweep))


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    gmodel, gxs = gpt2_tiny()
    write_acts("gpt2_tiny", gxs)
    _, lxs = llama_tiny()
    write_acts("llama_tiny", lxs)
    gptq_cases(gxs, gmodel)
    smoothquant_case()


if __name__ == "__main__":
    main()
