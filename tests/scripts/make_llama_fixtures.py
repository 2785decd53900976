#!/usr/bin/python3
"""Llama fixtures for the runner and per-layer sensitivity (Llama-family decoders).

transformers is not installed here, so the forward is written with torch ops after
transformers 4.x modeling_llama.py (eager attention): token embeddings, per block
x += o_proj(attn(rms_norm(x))) and x += down_proj(silu(gate_proj(h)) * up_proj(h)) with
h = rms_norm(x), a final rms_norm. RMSNorm is x * rsqrt(mean(x^2) + eps) * weight; rotary
position embeddings with base `theta`, positions 0..T-1; grouped-query attention (each
key/value head serves heads / kv_heads query heads); causal mask and padding mask on keys.

Two rotary layouts exist and both are covered:
  * Hugging Face names (model.layers.N.self_attn.q_proj ...): rotate_half, i.e. dimension i
    pairs with i + d/2, angle t * theta^(-2i/d);
  * GGUF names (blk.N.attn_q ...): llama.cpp's LLAMA rope (GGML_ROPE_TYPE_NORM), dimension
    2i pairs with 2i+1 at the same angle. llama.cpp's converter permutes the q and k rows
    of Hugging Face checkpoints so that this gives the same result; llama2.c exports (like
    ../shared/models/stories260K.gguf) are in this layout already.

Writes into tests/data/encoder/:
  llama_tiny.safetensors (+ _ref.*)      random, HF names, hidden 32, 4 heads, 2 kv heads
  llama_gguf_tiny.gguf (+ _ref.*)        other random weights, GGUF names and metadata
  llama3_tiny/ (model.safetensors, config.json, model_ref.*)
                                         HF names with Llama 3.1's rope_scaling in config.json
  llama3_gguf_tiny.gguf (+ _ref.*)       the same scaling as llama.cpp stores it (rope_freqs.weight)
  mistral_tiny/, qwen2_tiny/             Mistral's sliding window; Qwen2's q/k/v biases (both HF names)
  qwen2_gguf_tiny.gguf (+ _ref.*)        Qwen2 in GGUF: blk.N names, biases, the rotary halves
  stories260K_ref.safetensors, _ref.json references for ../shared/models/stories260K.gguf
      (not copied; the C++ test reads it from ../shared and skips without it). The script
      also greedy-decodes a few tokens with that model's output head and prints the text,
      a check of the reference itself: a wrong rotary layout gives no English.

Run: /usr/bin/python3 tests/scripts/make_llama_fixtures.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_encoder_fixtures import OUT, heavy, write_safetensors  # noqa: E402
from make_gpt2_fixtures import references, right_padded, write_refs  # noqa: E402
import make_gguf_fixtures as gg  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "models")


class RMSNorm(nn.Module):
    def __init__(self, h, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(h))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def inv_freq(theta, d, scaling=None):
    """Rotary frequencies theta^(-2i/d), after rope_scaling as transformers 4.x applies it
    (modeling_rope_utils: 'linear' divides by factor; 'llama3' is _compute_llama3_parameters)."""
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    if not scaling:
        return inv
    factor = scaling["factor"]
    if scaling["rope_type"] == "linear":
        return inv / factor
    assert scaling["rope_type"] == "llama3"
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    out = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, out)


def rope(x, inv, pairs):
    """x: [b, heads, t, d]; rotary embedding at positions 0..t-1 with frequencies inv."""
    b, n, t, d = x.shape
    ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)  # [t, d/2]
    cos, sin = ang.cos(), ang.sin()
    if pairs:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).reshape(b, n, t, d)
    x0, x1 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)


class Block(nn.Module):
    def __init__(self, h, heads, kv_heads, inter, eps, inv, pairs, bias=False, window=0):
        super().__init__()
        self.window = window
        self.heads, self.kv_heads, self.d, self.inv, self.pairs = heads, kv_heads, h // heads, inv, pairs
        self.attn_norm = RMSNorm(h, eps)
        self.q = nn.Linear(h, heads * self.d, bias=bias)
        self.k = nn.Linear(h, kv_heads * self.d, bias=bias)
        self.v = nn.Linear(h, kv_heads * self.d, bias=bias)
        self.o = nn.Linear(heads * self.d, h, bias=False)
        self.ffn_norm = RMSNorm(h, eps)
        self.gate = nn.Linear(h, inter, bias=False)
        self.up = nn.Linear(h, inter, bias=False)
        self.down = nn.Linear(inter, h, bias=False)

    def forward(self, x, mask):
        b, t, h = x.shape
        a = self.attn_norm(x)
        q = self.q(a).view(b, t, self.heads, self.d).transpose(1, 2)
        k = self.k(a).view(b, t, self.kv_heads, self.d).transpose(1, 2)
        v = self.v(a).view(b, t, self.kv_heads, self.d).transpose(1, 2)
        q, k = rope(q, self.inv, self.pairs), rope(k, self.inv, self.pairs)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        w = torch.matmul(q, k.transpose(-1, -2)) / (self.d ** 0.5)
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
        if self.window:  # Mistral's sliding window: query i sees keys j with i - window < j <= i
            causal &= torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1 - self.window)
        causal = causal.view(1, 1, t, t)
        w = torch.where(causal, w, torch.full_like(w, torch.finfo(w.dtype).min))
        w = w + (1.0 - mask.view(b, 1, 1, t).to(w.dtype)) * torch.finfo(w.dtype).min
        p = torch.softmax(w, dim=-1)
        x = x + self.o(torch.matmul(p, v).transpose(1, 2).reshape(b, t, h))
        f = self.ffn_norm(x)
        return x + self.down(nn.functional.silu(self.gate(f)) * self.up(f))


class Llama(nn.Module):
    def __init__(self, vocab, h, heads, kv_heads, inter, layers, eps=1e-5, theta=10000.0, pairs=False, bias=False,
                 scaling=None, window=0, gguf_names=None):
        super().__init__()
        # GGUF names go with the adjacent-pair rotary, except in architecture qwen2
        self.eps, self.theta, self.gguf = eps, theta, pairs if gguf_names is None else gguf_names
        self.inv = inv_freq(theta, h // heads, scaling)
        self.embed = nn.Embedding(vocab, h)
        self.blocks = nn.ModuleList([Block(h, heads, kv_heads, inter, eps, self.inv, pairs, bias, window)
                                     for _ in range(layers)])
        self.norm = RMSNorm(h, eps)

    def forward(self, ids, mask):
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x, mask)
        return self.norm(x)

    # (checkpoint name, tensor, torch module path or None) in execution order
    def tensors(self, gguf=None):
        gguf = self.gguf if gguf is None else gguf
        out = [("token_embd.weight" if gguf else "model.embed_tokens.weight", self.embed.weight, None)]
        for i, b in enumerate(self.blocks):
            p = f"blk.{i}." if gguf else f"model.layers.{i}."
            names = (("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                      "ffn_down") if gguf else
                     ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                      "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
            mods = (b.attn_norm, b.q, b.k, b.v, b.o, b.ffn_norm, b.gate, b.up, b.down)
            paths = (None, "q", "k", "v", "o", None, "gate", "up", "down")
            for n, mod, path in zip(names, mods, paths):
                out.append((p + n + ".weight", mod.weight, f"blocks.{i}.{path}" if path else None))
                if path and mod.bias is not None:
                    out.append((p + n + ".bias", mod.bias, None))
        out.append(("output_norm.weight" if gguf else "model.norm.weight", self.norm.weight, None))
        return out

    def linear_names(self):
        return [(n[: -len(".weight")], path) for n, _, path in self.tensors() if path is not None]


def init_weights(model, rng):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.from_numpy((1.0 + 0.2 * (2 * rng.random(p.shape) - 1)).astype(np.float32)))
            elif name.endswith("weight"):
                p.copy_(torch.from_numpy(heavy(rng, tuple(p.shape), 0.3 if "embed" in name else 0.12)))
            else:
                p.copy_(torch.from_numpy((0.05 * (2 * rng.random(p.shape) - 1)).astype(np.float32)))


def gguf_tensor(name, t):
    a = np.ascontiguousarray(t.detach().numpy().astype(np.float32))
    return (name, list(reversed(a.shape)), gg.T_F32, a.astype("<f4").tobytes())


def write_gguf(path, model, cfg, rope_freqs=None, arch="llama"):
    kvs = [("general.architecture", gg.STRING, arch),
           ("general.name", gg.STRING, f"quantlens {arch} fixture"),
           (arch + ".context_length", gg.U32, cfg["max_positions"]),
           (arch + ".embedding_length", gg.U32, cfg["hidden"]),
           (arch + ".block_count", gg.U32, cfg["layers"]),
           (arch + ".feed_forward_length", gg.U32, cfg["intermediate"]),
           (arch + ".attention.head_count", gg.U32, cfg["heads"]),
           (arch + ".attention.head_count_kv", gg.U32, cfg["kv_heads"]),
           (arch + ".attention.layer_norm_rms_epsilon", gg.F32V, model.eps),
           (arch + ".rope.freq_base", gg.F32V, model.theta),
           (arch + ".rope.dimension_count", gg.U32, cfg["hidden"] // cfg["heads"])]
    tensors = [gguf_tensor(n, t) for n, t, _ in model.tensors(gguf=True)]
    if rope_freqs is not None:  # llama.cpp's form of llama3 rope scaling: inv_freq / rope_freqs
        tensors.append(gguf_tensor("rope_freqs.weight", rope_freqs))
    gg.write(path, gg.gguf_bytes(kvs, tensors))


def load_stories(path):
    _, kv, infos, start, b = gg.parse_gguf(path)
    w = {}
    for name, ne, ttype, off in infos:
        assert ttype == gg.T_F32, name
        n = int(np.prod(ne))
        w[name] = np.frombuffer(b, dtype="<f4", count=n, offset=start + off).reshape(list(reversed(ne))).copy()
    return kv, w


def random_model(cfg, seed, **kw):
    """A Llama of cfg's sizes with heavy-tailed random weights, and two right-padded sequences."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = Llama(cfg["vocab"], cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["intermediate"], cfg["layers"],
                  **kw).eval()
    init_weights(model, rng)
    ids, mask = right_padded(rng, cfg["vocab"], [12, 7])
    return model, ids, mask


def write_hf(name, model, config=None):
    """<name>.safetensors with Hugging Face names, and config.json beside it when given."""
    os.makedirs(os.path.dirname(os.path.join(OUT, name)), exist_ok=True)
    write_safetensors(os.path.join(OUT, name + ".safetensors"),
                      [(n, t.detach().contiguous().numpy().astype(np.float32)) for n, t, _ in model.tensors(gguf=False)],
                      {"format": "pt"})
    if config is not None:
        with open(os.path.join(OUT, os.path.dirname(name), "config.json"), "w") as f:
            json.dump(config, f, indent=1)
            f.write("\n")


def main():
    torch.backends.quantized.engine = "onednn"
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)

    cfg = {"hidden": 32, "heads": 4, "kv_heads": 2, "intermediate": 88, "layers": 2, "vocab": 60,
           "max_positions": 2048}
    for name, gguf, seed in (("llama_tiny", False, 7), ("llama_gguf_tiny", True, 8)):
        # The GGUF one says its own base and eps in the metadata, where eps is a float32.
        model, ids, mask = random_model(cfg, seed, eps=float(np.float32(1e-5)) if gguf else 1e-5,
                                        theta=500000.0 if gguf else 10000.0, pairs=gguf)
        fp32, int8, sens = references(model, ids, mask)
        if gguf:
            write_gguf(os.path.join(OUT, name + ".gguf"), model, cfg)
        else:
            write_hf(name, model)
        write_refs(name, model, cfg, ids, mask, fp32, int8, sens, family="llama", rope_theta=model.theta)

    # Llama 3.1-style rope_scaling, shrunk so that it reaches these tiny heads (d = 8: the
    # wavelengths 6.3, 63, 628 and 6283 are one high, one medium and two low frequencies
    # against an original context of 64).
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    for name, gguf, seed in (("llama3_tiny/model", False, 10), ("llama3_gguf_tiny", True, 11)):
        eps = float(np.float32(1e-5))
        model, ids, mask = random_model(cfg, seed, eps=eps, pairs=gguf, scaling=scaling)
        fp32, int8, sens = references(model, ids, mask)
        if gguf:
            write_gguf(os.path.join(OUT, name + ".gguf"), model, cfg,
                       rope_freqs=inv_freq(model.theta, model.blocks[0].d) / model.inv)
        else:
            write_hf(name, model, {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                   "hidden_size": cfg["hidden"], "num_attention_heads": cfg["heads"],
                                   "num_key_value_heads": cfg["kv_heads"], "rms_norm_eps": eps,
                                   "rope_theta": model.theta, "max_position_embeddings": 256,
                                   "rope_scaling": scaling})
        write_refs(name, model, dict(cfg, max_positions=256 if not gguf else cfg["max_positions"]), ids, mask, fp32,
                   int8, sens, family="llama", rope_theta=model.theta, rope_scaling=scaling)

    # Mistral (sliding window 6: 12-token rows past 5 lose their first keys, and every padding
    # row of the 7-token sequence still sees a real token) and Qwen2 (q/k/v biases, theta 1e6,
    # eps 1e-6, and a sliding_window its use_sliding_window switches off).
    for name, seed, extra, hf in (
            ("mistral_tiny/model", 12, {"window": 6},
             {"model_type": "mistral", "sliding_window": 6, "rope_theta": 10000.0, "rms_norm_eps": 1e-5}),
            ("qwen2_tiny/model", 13, {"bias": True, "theta": 1e6, "eps": 1e-6},
             {"model_type": "qwen2", "sliding_window": 6, "use_sliding_window": False, "max_window_layers": 1,
              "rope_theta": 1e6, "rms_norm_eps": 1e-6})):
        model, ids, mask = random_model(cfg, seed, **extra)
        fp32, int8, sens = references(model, ids, mask)
        write_hf(name, model, dict(hf, hidden_size=cfg["hidden"], num_attention_heads=cfg["heads"],
                                   num_key_value_heads=cfg["kv_heads"], max_position_embeddings=256))
        write_refs(name, model, dict(cfg, max_positions=256), ids, mask, fp32, int8, sens, family="llama",
                   rope_theta=model.theta, sliding_window=extra.get("window", 0))

    # Qwen2 as llama.cpp stores it: GGUF names and metadata under "qwen2.", q/k/v biases, and
    # the rotary halves (its converter does not permute q and k; LLAMA_ROPE_TYPE_NEOX).
    model, ids, mask = random_model(cfg, 14, eps=float(np.float32(1e-6)), theta=1e6, pairs=False, bias=True,
                                    gguf_names=True)
    fp32, int8, sens = references(model, ids, mask)
    write_gguf(os.path.join(OUT, "qwen2_gguf_tiny.gguf"), model, cfg, arch="qwen2")
    write_refs("qwen2_gguf_tiny", model, cfg, ids, mask, fp32, int8, sens, family="llama", rope_theta=model.theta)

    path = os.path.join(SHARED, "stories260K.gguf")
    if not os.path.exists(path):
        print(f"{path} not found: stories260K references not written")
        return
    kv, w = load_stories(path)
    cfg = {"hidden": int(kv["llama.embedding_length"]), "heads": int(kv["llama.attention.head_count"]),
           "kv_heads": int(kv["llama.attention.head_count_kv"]), "intermediate": int(kv["llama.feed_forward_length"]),
           "layers": int(kv["llama.block_count"]), "vocab": int(w["token_embd.weight"].shape[0]),
           "max_positions": int(kv["llama.context_length"])}
    eps = float(np.float32(kv["llama.attention.layer_norm_rms_epsilon"]))
    model = Llama(cfg["vocab"], cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["intermediate"], cfg["layers"],
                  eps=eps, theta=float(kv.get("llama.rope.freq_base", 10000.0)), pairs=True).eval()
    with torch.no_grad():
        for name, t, _ in model.tensors(gguf=True):
            t.copy_(torch.from_numpy(w[name]))
    # Greedy continuation of "<s> Once upon a time" with the model's own output head: only a
    # correct forward (rotary layout, GQA, norms) makes it read as a story.
    tokens = kv["tokenizer.ggml.tokens"]
    lookup = {s: i for i, s in enumerate(tokens)}
    prompt = [1] + [lookup[p] for p in ("▁Once", "▁upon", "▁a", "▁time") if p in lookup]
    seq = list(prompt)
    head = torch.from_numpy(w["output.weight"])
    with torch.no_grad():
        for _ in range(24):
            ids = torch.tensor([seq])
            h = model(ids, torch.ones_like(ids))
            seq.append(int((h[0, -1] @ head.t()).argmax()))
    print("stories260K greedy:", "".join(tokens[i] for i in seq[1:]).replace("▁", " "))

    ids, mask = right_padded(np.random.default_rng(9), cfg["vocab"], [20, 11])
    fp32, int8, sens = references(model, ids, mask)
    write_refs("stories260K", model, cfg, ids, mask, fp32, int8, sens, family="llama", rope_theta=model.theta)


if __name__ == "__main__":
    main()
