#!/usr/bin/python3
"""Fixtures for the encoder runner and per-layer sensitivity (issue #8).

Builds small BERT, DistilBERT and RoBERTa encoders from plain torch modules (transformers
is not installed here), with Hugging Face tensor names, and writes for each:

  tests/data/encoder/<name>.safetensors      the weights, float32, HF names
  tests/data/encoder/<name>_ref.safetensors  input_ids, attention_mask (int64, [B, T]),
                                             hidden_fp32 and hidden_int8 (float32, [B, T, H])
  tests/data/encoder/<name>_ref.json         config, per-layer sensitivity computed by torch
                                             (over every row, and over the real tokens only)

hidden_int8 is the same model after torch.ao.quantization.quantize_dynamic(model,
{nn.Linear}, dtype=torch.qint8) on the onednn engine (Debian's torch 1.13 has no fbgemm).
The sensitivity rows quantize one nn.Linear at a time (quantize_dynamic with a set of
module names) and report the end-to-end cosine / SQNR of the last hidden state vs fp32.

The forward passes follow transformers 4.x modeling_bert.py / modeling_distilbert.py /
modeling_roberta.py (post-LayerNorm blocks, erf GELU, padding mask on the keys).
safetensors is written by hand: 8-byte little-endian header length, JSON header, raw data.

Run: /usr/bin/python3 tests/scripts/make_encoder_fixtures.py
"""
import copy
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "encoder")


# ----------------------------------------------------------------------------- safetensors
def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, np.ndarray). Offsets are contiguous in list order."""
    dt = {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("float64"): "F64"}
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # alignment padding, as the Rust writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------------------- weights
def heavy(rng, shape, std):
    """Student-t(4) scaled to `std`: heavy tails like trained transformer weights."""
    t = rng.standard_t(4, size=shape)
    return (t * std / math.sqrt(2.0)).astype(np.float32)


# ----------------------------------------------------------------------------- modules
def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class Attention(nn.Module):
    def __init__(self, h, heads, distil):
        super().__init__()
        self.h, self.heads, self.distil = h, heads, distil
        self.q, self.k, self.v, self.o = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)

    def forward(self, x, mask):
        b, t, h = x.shape
        d = h // self.heads
        split = lambda y: y.view(b, t, self.heads, d).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        if self.distil:  # modeling_distilbert: q = q / sqrt(d) before the product
            scores = torch.matmul(q / math.sqrt(d), k.transpose(2, 3))
        else:  # modeling_bert: (q k^T) / sqrt(d)
            scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d)
        keymask = (mask == 0).view(b, 1, 1, t)
        scores = scores.masked_fill(keymask, torch.finfo(scores.dtype).min)
        p = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(p, v).transpose(1, 2).reshape(b, t, h)
        return self.o(ctx)


class Layer(nn.Module):
    def __init__(self, h, heads, inter, eps, distil):
        super().__init__()
        self.attn = Attention(h, heads, distil)
        self.ln1 = nn.LayerNorm(h, eps=eps)
        self.fc1, self.fc2 = nn.Linear(h, inter), nn.Linear(inter, h)
        self.ln2 = nn.LayerNorm(h, eps=eps)

    def forward(self, x, mask):
        a = self.ln1(self.attn(x, mask) + x)
        return self.ln2(self.fc2(gelu(self.fc1(a))) + a)


class Encoder(nn.Module):
    """family: 'bert' | 'distilbert' | 'roberta'."""

    def __init__(self, family, vocab, maxpos, h, heads, inter, layers):
        super().__init__()
        self.family = family
        self.eps = 1e-5 if family == "roberta" else 1e-12
        self.pad = 1 if family == "roberta" else 0
        self.word = nn.Embedding(vocab, h)
        self.pos = nn.Embedding(maxpos, h)
        self.tok_type = nn.Embedding(1 if family == "roberta" else 2, h) if family != "distilbert" else None
        self.ln = nn.LayerNorm(h, eps=self.eps)
        self.layers = nn.ModuleList([Layer(h, heads, inter, self.eps, family == "distilbert") for _ in range(layers)])

    def position_ids(self, ids):
        if self.family == "roberta":
            # modeling_roberta.create_position_ids_from_input_ids: padding_idx + running count
            m = ids.ne(self.pad).long()
            return torch.cumsum(m, dim=1) * m + self.pad
        return torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)

    def forward(self, ids, mask):
        x = self.word(ids) + self.pos(self.position_ids(ids))
        if self.tok_type is not None:
            x = x + self.tok_type(torch.zeros_like(ids))
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x, mask)
        return x

    # Hugging Face names, in the order a checkpoint lists them.
    def hf_names(self):
        f = self.family
        pre = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert."}[f]
        out = [(pre + "embeddings.word_embeddings.weight", self.word.weight),
               (pre + "embeddings.position_embeddings.weight", self.pos.weight)]
        if self.tok_type is not None:
            out.append((pre + "embeddings.token_type_embeddings.weight", self.tok_type.weight))
        out += [(pre + "embeddings.LayerNorm.weight", self.ln.weight), (pre + "embeddings.LayerNorm.bias", self.ln.bias)]
        for i, L in enumerate(self.layers):
            if f == "distilbert":
                p = f"{pre}transformer.layer.{i}."
                mods = [("attention.q_lin", L.attn.q), ("attention.k_lin", L.attn.k), ("attention.v_lin", L.attn.v),
                        ("attention.out_lin", L.attn.o), ("sa_layer_norm", L.ln1), ("ffn.lin1", L.fc1),
                        ("ffn.lin2", L.fc2), ("output_layer_norm", L.ln2)]
            else:
                p = f"{pre}encoder.layer.{i}."
                mods = [("attention.self.query", L.attn.q), ("attention.self.key", L.attn.k),
                        ("attention.self.value", L.attn.v), ("attention.output.dense", L.attn.o),
                        ("attention.output.LayerNorm", L.ln1), ("intermediate.dense", L.fc1),
                        ("output.dense", L.fc2), ("output.LayerNorm", L.ln2)]
            for n, m in mods:
                out += [(p + n + ".weight", m.weight), (p + n + ".bias", m.bias)]
        return out

    # HF prefix of every Linear -> the torch module path quantize_dynamic knows it by.
    def linear_names(self):
        return [(n[: -len(".weight")], self._module_path(t)) for n, t in self.hf_names()
                if n.endswith(".weight") and t.dim() == 2 and "embeddings" not in n]

    def _module_path(self, param):
        for path, p in self.named_parameters():
            if p is param:
                return path[: -len(".weight")]
        raise KeyError


def init_weights(model, rng, outlier_layer=None):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                std = 0.05 if ("word" in name or "pos" in name or "type" in name) else 0.04
                p.copy_(torch.from_numpy(heavy(rng, tuple(p.shape), std)))
            elif "ln" in name and name.endswith("weight"):
                p.copy_(torch.from_numpy((1.0 + 0.1 * (2 * rng.random(p.shape) - 1)).astype(np.float32)))
            else:
                p.copy_(torch.from_numpy((0.05 * (2 * rng.random(p.shape) - 1)).astype(np.float32)))
        if outlier_layer is not None:
            # A few weights 100x the typical size: the per-tensor scale grows with them and
            # the rest of the matrix collapses onto a handful of int8 levels.
            w = dict(model.named_parameters())[outlier_layer + ".weight"]
            flat = w.view(-1)
            idx = rng.choice(flat.numel(), size=4, replace=False)
            for j, i in enumerate(idx):
                flat[int(i)] = (4.0 if j % 2 == 0 else -3.5)


# ----------------------------------------------------------------------------- metrics
def metrics(ref, y):
    r, q = ref.double().reshape(-1), y.double().reshape(-1)
    cos = float(torch.dot(r, q) / (r.norm() * q.norm()))
    err = float(((r - q) ** 2).sum())
    sqnr = float(10 * math.log10(float((r ** 2).sum()) / err)) if err > 0 else float("inf")
    return cos, sqnr, float((r - q).abs().max())


def real_metrics(ref, y, mask):
    """metrics() over the real tokens only (mask 1), as Quantlens scores sensitivity."""
    keep = mask.reshape(-1).bool()
    h = ref.shape[-1]
    c, s, e = metrics(ref.reshape(-1, h)[keep], y.reshape(-1, h)[keep])
    return {"cosine": c, "sqnr_db": s, "max_abs_error": e}


def token_cosines(ref, y):
    r, q = ref.double().reshape(-1, ref.shape[-1]), y.double().reshape(-1, y.shape[-1])
    return (r * q).sum(1) / (r.norm(dim=1) * q.norm(dim=1))


def make_inputs(family, vocab, rng, lengths):
    pad = 1 if family == "roberta" else 0
    t = max(lengths)
    ids = np.full((len(lengths), t), pad, dtype=np.int64)
    mask = np.zeros((len(lengths), t), dtype=np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(3, vocab, size=n)  # never a special/pad id
        mask[b, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def build(name, family, h, heads, inter, layers, vocab=100, maxpos=64, seed=0, outlier_layer=None):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = Encoder(family, vocab, maxpos, h, heads, inter, layers).eval()
    init_weights(model, rng, outlier_layer)
    ids, mask = make_inputs(family, vocab, rng, [12, 7])

    with torch.no_grad():
        fp32 = model(ids, mask)
        qall = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
        int8 = qall(ids, mask)
        sens = []
        for hf, path in model.linear_names():
            one = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {path}, dtype=torch.qint8)
            y = one(ids, mask)
            c, s, e = metrics(fp32, y)
            sens.append({"name": hf, "cosine": c, "sqnr_db": s, "max_abs_error": e,
                         "real_tokens": real_metrics(fp32, y, mask)})

    cos, sqnr, maxerr = metrics(fp32, int8)
    write_safetensors(os.path.join(OUT, name + ".safetensors"),
                      [(n, t.detach().numpy().astype(np.float32)) for n, t in model.hf_names()],
                      {"format": "pt"})
    write_safetensors(os.path.join(OUT, name + "_ref.safetensors"),
                      [("input_ids", ids.numpy()), ("attention_mask", mask.numpy()),
                       ("hidden_fp32", fp32.numpy()), ("hidden_int8", int8.numpy())])
    ref = {"family": family, "hidden": h, "heads": heads, "intermediate": inter, "layers": layers,
           "vocab": vocab, "max_positions": maxpos, "layer_norm_eps": model.eps,
           "engine": torch.backends.quantized.engine, "torch": torch.__version__,
           "int8_vs_fp32": {"cosine": cos, "sqnr_db": sqnr, "max_abs_error": maxerr,
                            "min_token_cosine": float(token_cosines(fp32, int8).min())},
           "outlier_layer": next((hf for hf, p in model.linear_names() if p == outlier_layer), None),
           "sensitivity": sens}
    with open(os.path.join(OUT, name + "_ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    worst = min(sens, key=lambda r: r["cosine"])
    print(f"{name}: int8 cosine {cos:.6f} sqnr {sqnr:.2f} dB maxerr {maxerr:.4g}; most sensitive {worst['name']}")


def main():
    torch.backends.quantized.engine = "onednn"
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    build("bert_tiny", "bert", h=64, heads=4, inter=256, layers=2, seed=1)
    build("distilbert_tiny", "distilbert", h=48, heads=4, inter=192, layers=2, seed=2)
    build("roberta_tiny", "roberta", h=32, heads=2, inter=128, layers=2, maxpos=66, seed=3)
    build("distilbert_outlier", "distilbert", h=32, heads=2, inter=128, layers=2, seed=4,
          outlier_layer="layers.0.attn.v")


if __name__ == "__main__":
    main()
