#!/usr/bin/python3
"""GPT-2 fixtures for the encoder runner and per-layer sensitivity (issue #8, GPT-2 naming).

transformers is not installed here, so the forward is written with torch ops after
transformers 4.x modeling_gpt2.py (eager attention): pre-LayerNorm blocks (ln_1, ln_2, ln_f,
eps 1e-5), learned absolute positions 0..T-1, one fused c_attn projection split into q, k, v,
scores q k^T / sqrt(d) with the causal mask and the padding mask on the keys, gelu_new (the
tanh form). HF stores these projections as Conv1D with weights [in, out]; here they are
nn.Linear modules (weight [out, in]) so that quantize_dynamic quantizes them, and the
checkpoint gets the transpose, as a real GPT-2 checkpoint holds it.

Writes into tests/data/encoder/:
  gpt2_tiny.safetensors, gpt2_tiny_ref.safetensors, gpt2_tiny_ref.json
      a small random GPT-2 (hidden 32, 2 heads, 2 layers), like make_encoder_fixtures.py
  gpt2_capp_ref.safetensors, gpt2_capp_ref.json
      references for ../shared/models/gpt2_capp.safetensors (the model itself is not copied:
      the C++ test reads it from ../shared and skips without it)

Run: /usr/bin/python3 tests/scripts/make_gpt2_fixtures.py
"""
import copy
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_encoder_fixtures import OUT, heavy, metrics, real_metrics, token_cosines, write_safetensors  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "models")


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Block(nn.Module):
    def __init__(self, h, heads, eps):
        super().__init__()
        self.h, self.heads = h, heads
        self.ln_1 = nn.LayerNorm(h, eps=eps)
        self.c_attn = nn.Linear(h, 3 * h)
        self.attn_proj = nn.Linear(h, h)
        self.ln_2 = nn.LayerNorm(h, eps=eps)
        self.c_fc = nn.Linear(h, 4 * h)
        self.mlp_proj = nn.Linear(4 * h, h)

    def forward(self, x, mask):
        b, t, h = x.shape
        d = h // self.heads
        q, k, v = self.c_attn(self.ln_1(x)).split(h, dim=2)
        split = lambda y: y.view(b, t, self.heads, d).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d)
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool)).view(1, 1, t, t)
        w = torch.where(causal, w, torch.full_like(w, torch.finfo(w.dtype).min))
        w = w + (1.0 - mask.view(b, 1, 1, t).to(w.dtype)) * torch.finfo(w.dtype).min
        p = torch.softmax(w, dim=-1)
        a = torch.matmul(p, v).transpose(1, 2).reshape(b, t, h)
        x = x + self.attn_proj(a)
        return x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))


class Gpt2(nn.Module):
    def __init__(self, vocab, maxpos, h, heads, layers, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.wte = nn.Embedding(vocab, h)
        self.wpe = nn.Embedding(maxpos, h)
        self.h = nn.ModuleList([Block(h, heads, eps) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(h, eps=eps)

    def forward(self, ids, mask):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]).unsqueeze(0))
        for blk in self.h:
            x = blk(x, mask)
        return self.ln_f(x)

    # (HF name, tensor as the checkpoint stores it, torch module path or None)
    def hf_tensors(self):
        out = [("transformer.wte.weight", self.wte.weight, None), ("transformer.wpe.weight", self.wpe.weight, None)]
        for i, b in enumerate(self.h):
            p = f"transformer.h.{i}."
            out += [(p + "ln_1.weight", b.ln_1.weight, None), (p + "ln_1.bias", b.ln_1.bias, None)]
            for hf, mod, path in (("attn.c_attn", b.c_attn, f"h.{i}.c_attn"), ("attn.c_proj", b.attn_proj, f"h.{i}.attn_proj")):
                out += [(p + hf + ".weight", mod.weight.t(), path), (p + hf + ".bias", mod.bias, None)]
            out += [(p + "ln_2.weight", b.ln_2.weight, None), (p + "ln_2.bias", b.ln_2.bias, None)]
            for hf, mod, path in (("mlp.c_fc", b.c_fc, f"h.{i}.c_fc"), ("mlp.c_proj", b.mlp_proj, f"h.{i}.mlp_proj")):
                out += [(p + hf + ".weight", mod.weight.t(), path), (p + hf + ".bias", mod.bias, None)]
        out += [("transformer.ln_f.weight", self.ln_f.weight, None), ("transformer.ln_f.bias", self.ln_f.bias, None)]
        return out

    def linear_names(self):
        return [(n[: -len(".weight")], path) for n, _, path in self.hf_tensors() if path is not None]


def init_weights(model, rng):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                p.copy_(torch.from_numpy(heavy(rng, tuple(p.shape), 0.08 if "wte" in name or "wpe" in name else 0.06)))
            elif "ln" in name and name.endswith("weight"):
                p.copy_(torch.from_numpy((1.0 + 0.1 * (2 * rng.random(p.shape) - 1)).astype(np.float32)))
            else:
                p.copy_(torch.from_numpy((0.05 * (2 * rng.random(p.shape) - 1)).astype(np.float32)))


def right_padded(rng, vocab, lengths):
    t = max(lengths)
    ids = np.zeros((len(lengths), t), dtype=np.int64)
    mask = np.zeros((len(lengths), t), dtype=np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(3, vocab, size=n)
        mask[b, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def references(model, ids, mask):
    with torch.no_grad():
        fp32 = model(ids, mask)
        int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)(ids, mask)
        sens = []
        for hf, path in model.linear_names():
            one = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {path}, dtype=torch.qint8)
            y = one(ids, mask)
            c, s, e = metrics(fp32, y)
            sens.append({"name": hf, "cosine": c, "sqnr_db": s, "max_abs_error": e,
                         "real_tokens": real_metrics(fp32, y, mask)})
    return fp32, int8, sens


def write_refs(name, model, cfg, ids, mask, fp32, int8, sens, family="gpt2", **extra):
    cos, sqnr, maxerr = metrics(fp32, int8)
    write_safetensors(os.path.join(OUT, name + "_ref.safetensors"),
                      [("input_ids", ids.numpy()), ("attention_mask", mask.numpy()),
                       ("hidden_fp32", fp32.numpy()), ("hidden_int8", int8.numpy())])
    ref = dict(cfg, family=family, layer_norm_eps=model.eps, **extra, engine=torch.backends.quantized.engine,
               torch=torch.__version__,
               int8_vs_fp32={"cosine": cos, "sqnr_db": sqnr, "max_abs_error": maxerr,
                             "min_token_cosine": float(token_cosines(fp32, int8).min())},
               outlier_layer=None, sensitivity=sens)
    with open(os.path.join(OUT, name + "_ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    worst = min(sens, key=lambda r: r["cosine"])
    print(f"{name}: int8 cosine {cos:.6f} sqnr {sqnr:.2f} dB maxerr {maxerr:.4g}; most sensitive {worst['name']}")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32"
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"]).copy()
    return out


def main():
    torch.backends.quantized.engine = "onednn"
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)

    rng = np.random.default_rng(5)
    torch.manual_seed(5)
    cfg = {"hidden": 32, "heads": 2, "intermediate": 128, "layers": 2, "vocab": 50, "max_positions": 24}
    model = Gpt2(cfg["vocab"], cfg["max_positions"], cfg["hidden"], cfg["heads"], cfg["layers"]).eval()
    init_weights(model, rng)
    ids, mask = right_padded(rng, cfg["vocab"], [12, 7])
    fp32, int8, sens = references(model, ids, mask)
    write_safetensors(os.path.join(OUT, "gpt2_tiny.safetensors"),
                      [(n, t.detach().contiguous().numpy().astype(np.float32)) for n, t, _ in model.hf_tensors()],
                      {"format": "pt"})
    write_refs("gpt2_tiny", model, cfg, ids, mask, fp32, int8, sens)

    capp = os.path.join(SHARED, "gpt2_capp.safetensors")
    if not os.path.exists(capp):
        print(f"{capp} not found: gpt2_capp references not written")
        return
    w = read_safetensors(capp)
    # n_embd 64, n_layer 4, n_head 4, n_positions 512, vocab 53 (SOURCES.md: its config.json)
    cfg = {"hidden": 64, "heads": 4, "intermediate": 256, "layers": 4, "vocab": 53, "max_positions": 512}
    model = Gpt2(cfg["vocab"], cfg["max_positions"], cfg["hidden"], cfg["heads"], cfg["layers"]).eval()
    with torch.no_grad():
        for name, t, path in model.hf_tensors():
            src = torch.from_numpy(w[name])
            # Linear weights are views (.t()) of the module parameter: copy through the view.
            t.copy_(src)
    ids, mask = right_padded(np.random.default_rng(6), cfg["vocab"], [16, 9])
    fp32, int8, sens = references(model, ids, mask)
    write_refs("gpt2_capp", model, cfg, ids, mask, fp32, int8, sens)


if __name__ == "__main__":
    main()
