#!/usr/bin/python3
"""Fixtures for tests/core/tst_dynamiclinear.cpp: PyTorch 1.13 quantize_dynamic outputs.

Run with Debian's python3-torch:  /usr/bin/python3 tests/scripts/make_runner_fixtures.py
Writes tests/data/runner/*.npy and manifest.json. Debian's torch has no fbgemm engine; the
outputs come from the 'onednn' engine (same parameter choice, slightly different arithmetic:
the C++ test states its tolerance). Activation parameters and quantized activations come
from torch.quantize_per_tensor_dynamic, the same ChooseQuantizationParams every engine uses.
"""
import json
import os
import struct

import numpy as np
import torch

torch.backends.quantized.engine = "onednn"
torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "runner")
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "models")
os.makedirs(OUT, exist_ok=True)


def save(name, arr):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(arr))


def formula_weight(out_f, in_f):
    """Trained-looking weights the C++ test regenerates bit for bit (no 2 MB fixture):
    an Irwin-Hall sum of the four bytes of a multiplicative hash (near-Gaussian), scaled by
    2^-12, with about one value in 997 made an 8x outlier. All steps are exact in float32."""
    i = np.arange(out_f * in_f, dtype=np.uint64)
    h = (i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    v = sum(((h >> np.uint64(s)) & np.uint64(0xFF)).astype(np.int64) for s in (0, 8, 16, 24)) - 510
    w = v.astype(np.float32) * np.float32(2.0 ** -12)
    outlier = ((h >> np.uint64(8)) % np.uint64(997)) == 0
    w[outlier] *= np.float32(8.0)
    j = np.arange(out_f, dtype=np.uint64) + np.uint64(7919)
    hb = (j * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    b = ((hb % np.uint64(201)).astype(np.int64) - 100).astype(np.float32) * np.float32(2.0 ** -10)
    return w.reshape(out_f, in_f), b


def activations(rng, m, k, outlier_channels):
    """LayerNorm-output-like rows with a few large channels, as transformer activations have."""
    x = rng.standard_normal((m, k)).astype(np.float32)
    for c, gain in outlier_channels:
        x[:, c] *= gain
    return x


def quantized_linear(w, b):
    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    qm = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
    return lin, qm


def run_case(manifest, layer, lin, qm, x, case):
    xt = torch.from_numpy(x)
    with torch.no_grad():
        y_fp32 = lin(xt).numpy()
        y_int8 = qm(xt).numpy()
    qa = torch.quantize_per_tensor_dynamic(xt, torch.quint8, True)
    save(f"{case}_x.npy", x)
    save(f"{case}_y_fp32.npy", y_fp32)
    save(f"{case}_y_int8_torch.npy", y_int8)
    save(f"{case}_qa.npy", qa.int_repr().numpy().astype(np.uint8))
    manifest["cases"].append({"name": case, "layer": layer, "tokens": int(x.shape[0]),
                              "act_scale": float(qa.q_scale()), "act_zero_point": int(qa.q_zero_point())})


def main():
    rng = np.random.default_rng(20240605)
    manifest = {"engine": torch.backends.quantized.engine, "torch": torch.__version__, "layers": {}, "cases": []}

    # 64 -> 96: stored in full, weights drawn like a trained layer (Kaiming-ish plus outliers).
    w = (rng.standard_normal((96, 64)) * 0.08).astype(np.float32)
    w[rng.integers(0, 96, 6), rng.integers(0, 64, 6)] *= 7.0
    b = (rng.standard_normal(96) * 0.02).astype(np.float32)
    lin, qm = quantized_linear(w, b)
    wq, _ = qm[0]._packed_params._weight_bias()
    save("small_w.npy", w)
    save("small_b.npy", b)
    save("small_wq.npy", wq.int_repr().numpy().astype(np.int8))
    manifest["layers"]["small"] = {"in": 64, "out": 96, "w_scale": float(wq.q_scale()), "source": "npy"}
    for m in (1, 8, 33):
        run_case(manifest, "small", lin, qm, activations(rng, m, 64, [(5, 6.0), (40, 3.0)]), f"small_m{m}")
    # Degenerate activations: an all-zero call (scale 0.1 rule) and a tiny-range call
    # (the 6.1e-5 small-scale rule).
    run_case(manifest, "small", lin, qm, np.zeros((3, 64), np.float32), "small_zeros")
    run_case(manifest, "small", lin, qm, (rng.standard_normal((2, 64)) * 1e-6).astype(np.float32), "small_tiny")
    run_case(manifest, "small", lin, qm, np.abs(rng.standard_normal((4, 64))).astype(np.float32) + 0.5, "small_positive")

    # Per-channel weights (torch's per_channel_dynamic_qconfig: symmetric per output channel,
    # max|w_j| / 127.5) on the same layer and its 33-token input. Appended here without
    # drawing from rng, so every fixture above and below stays as it was.
    qc = torch.ao.quantization.per_channel_dynamic_qconfig
    qpc = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear: qc}, dtype=torch.qint8)
    wpc, _ = qpc[0]._packed_params._weight_bias()
    assert wpc.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
    assert int((wpc.q_per_channel_zero_points() != 0).sum()) == 0
    x33 = np.load(os.path.join(OUT, "small_m33_x.npy"))
    with torch.no_grad():
        y_pc = qpc(torch.from_numpy(x33)).numpy()
    save("small_pc_wq.npy", wpc.int_repr().numpy().astype(np.int8))
    save("small_m33_y_int8_torch_per_channel.npy", y_pc)
    manifest["per_channel"] = {"layer": "small", "case": "small_m33",
                               "w_scales": [float(v) for v in wpc.q_per_channel_scales().tolist()]}

    # 768 -> 768 (DistilBERT-sized): weights regenerated from formula_weight in the test.
    w, b = formula_weight(768, 768)
    lin, qm = quantized_linear(w, b)
    wq, _ = qm[0]._packed_params._weight_bias()
    wqi = wq.int_repr().numpy().astype(np.int64)
    manifest["layers"]["large"] = {"in": 768, "out": 768, "w_scale": float(wq.q_scale()), "source": "formula",
                                   "wq_row_sums": wqi.sum(axis=1).tolist(),
                                   "wq_row_abs_sums": np.abs(wqi).sum(axis=1).tolist()}
    for m in (1, 8, 33):
        run_case(manifest, "large", lin, qm, activations(rng, m, 768, [(17, 8.0), (300, 4.0)]), f"large_m{m}")

    # GPT-2 Conv1D layer from the shared model: [in, out] storage, y = x @ W + b.
    path = os.path.join(SHARED, "gpt2_capp.safetensors")
    if os.path.exists(path):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            base = 8 + n

            def tensor(name):
                e = header[name]
                assert e["dtype"] == "F32"
                lo, hi = e["data_offsets"]
                f.seek(base + lo)
                return np.frombuffer(f.read(hi - lo), dtype="<f4").reshape(e["shape"]).copy()

            w_io = tensor("transformer.h.0.mlp.c_fc.weight")  # [64, 256]
            b = tensor("transformer.h.0.mlp.c_fc.bias")
        x = activations(rng, 5, 64, [(3, 4.0)])
        y = (torch.from_numpy(x) @ torch.from_numpy(w_io) + torch.from_numpy(b)).numpy()
        lin, qm = quantized_linear(np.ascontiguousarray(w_io.T), b)
        with torch.no_grad():
            y_int8 = qm(torch.from_numpy(x)).numpy()
        save("gpt2_c_fc_x.npy", x)
        save("gpt2_c_fc_y_fp32.npy", y)
        save("gpt2_c_fc_y_int8_torch.npy", y_int8)
        wq, _ = qm[0]._packed_params._weight_bias()
        manifest["gpt2_c_fc"] = {"layer": "transformer.h.0.mlp.c_fc", "tokens": 5, "in": 64, "out": 256,
                                 "w_scale": float(wq.q_scale())}

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
