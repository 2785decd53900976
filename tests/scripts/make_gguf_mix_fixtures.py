#!/usr/bin/python3
"""tests/data/gguf/mix_expected.json: the ggml type llama.cpp's own llama_model_quantize
(node-llama-cpp's libllama through ctypes, llamaquant.py) gives each tensor for the
type mixes q4_k_s, q4_k_m, q5_k_s, q5_k_m, on three Llama models:
- stories260K (../shared/models): rows of 64 and 172, so the fallbacks decide;
- llama256 (make_llama256_gguf.py, 2 layers, rows of 256/512): the k-quants apply;
- llama256x12tied: 12 layers (use_more_bits picks layers 0, 3, 6, 9, 10, 11) and no
  output.weight, so token_embd is quantized as the output.
Each model is recorded by tensor names, shapes (numpy order) and the metadata the rules
read, so tst_ggufmix needs neither Python nor the models.

Run: /usr/bin/python3 tests/scripts/make_gguf_mix_fixtures.py
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamaquant  # noqa: E402
import make_llama256_gguf  # noqa: E402
from ggmlref import ROOT, read_gguf  # noqa: E402

STORIES = os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf")
OUT = os.path.join(ROOT, "tests", "data", "gguf", "mix_expected.json")
KEYS = ("general.architecture", "llama.block_count", "llama.attention.head_count", "llama.attention.head_count_kv")


def describe(path):
    kvs, tensors, _ = read_gguf(path)
    meta = {}
    for k in KEYS:
        t, raw = kvs[k]
        meta[k] = raw[8:].decode() if t == 8 else str(int.from_bytes(raw, "little"))
    return meta, [[n, list(reversed(ne))] for n, ne, _, _ in tensors]


def main():
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        l256 = os.path.join(tmp, "l256.gguf")
        make_llama256_gguf.main(l256)
        x12 = os.path.join(tmp, "l256x12.gguf")
        make_llama256_gguf.main(x12, 256, 512, 12, 4, tied=True)
        for key, path in (("stories260K", STORIES), ("llama256", l256), ("llama256x12tied", x12)):
            meta, tensors = describe(path)
            mixes = {}
            for mix in llamaquant.FTYPES:
                mixes[mix] = llamaquant.quantize(path, os.path.join(tmp, "out.gguf"), mix)
            models[key] = {"metadata": meta, "tensors": tensors, "types": mixes}
            print(key, {m: sorted(set(t.values())) for m, t in mixes.items()})
    with open(OUT, "w") as f:
        json.dump({"source": "llama_model_quantize from node-llama-cpp 3.21.1's libllama (llama.cpp tag v0.4.0 "
                             "bundle), nthread 1, no imatrix", "models": models}, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
