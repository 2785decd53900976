#!/usr/bin/python3
"""Compare fixtures: a Hugging Face-named copy of ../shared/models/stories260K.gguf.

llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute) reorders the rows of q_proj
and k_proj within each head so that its LLAMA rope can rotate adjacent pairs; llama2.c exports
such as stories260K.gguf are in that order already. transformers' own converter from Meta's
layout (convert_llama_weights_to_hf.py) undoes it with

    def permute(w, n_heads, dim1=dim, dim2=dim):
        return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)

over num_attention_heads for q and num_key_value_heads for k. This script applies exactly that
(in torch, as transformers does) and renames the tensors to transformers' LlamaForCausalLM
names; `quantlens-cli compare` must pair every tensor with zero error.

Writes tests/data/compare/stories260K_hf.safetensors (float32, 1.2 MB).
Run: /usr/bin/python3 tests/scripts/make_compare_fixtures.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_encoder_fixtures import write_safetensors  # noqa: E402
from make_llama_fixtures import SHARED, load_stories  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "compare")

# transformers' LlamaForCausalLM names for llama.cpp's (gguf-py tensor_mapping.py).
LAYER = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm",
         "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj"}
TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def permute(w, n_heads, dim1, dim2):
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def hf_name(gguf):
    parts = gguf.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{LAYER[parts[2]]}.{parts[3]}"
    return f"{TOP[parts[0]]}.{parts[1]}"


def main():
    path = os.path.join(SHARED, "stories260K.gguf")
    kv, w = load_stories(path)
    heads = int(kv["llama.attention.head_count"])
    kv_heads = int(kv["llama.attention.head_count_kv"])
    out = []
    for name, a in w.items():
        t = torch.from_numpy(a)
        if name.endswith("attn_q.weight"):
            t = permute(t, heads, t.shape[0], t.shape[1])
        elif name.endswith("attn_k.weight"):
            t = permute(t, kv_heads, t.shape[0], t.shape[1])
        out.append((hf_name(name), t.contiguous().numpy().astype(np.float32)))
    os.makedirs(OUT, exist_ok=True)
    write_safetensors(os.path.join(OUT, "stories260K_hf.safetensors"), out, {"format": "pt"})
    print(f"wrote {len(out)} tensors ({heads} heads, {kv_heads} kv heads)")


if __name__ == "__main__":
    main()
