#!/usr/bin/python3
"""Fixtures for tests/core/tst_quant*.cpp, tst_calibrate.cpp: inputs and what the real
toolchains make of them, computed here with Debian's torch 1.13 and numpy.

Writes tests/data/quant/fixtures.bin (all arrays, little-endian, back to back) and
tests/data/quant/fixtures.json (what each array is). Scales and ranges are stored as
float32 bit patterns (uint32) so the C++ tests can compare them bit for bit.

References:
  seed             the DESIGN.md snippet as torch evaluates it
  torch-symmetric  MinMaxObserver / PerChannelMinMaxObserver (qint8/quint8, symmetric)
                   + torch.quantize_per_tensor / quantize_per_channel
  torch-affine     the same observers, affine; bits < 8 via quant_min/quant_max and
                   torch.fake_quantize_per_tensor_affine (quantize_per_tensor clamps to
                   the full dtype range)
  per group        the per-tensor observer applied to each group of G values
  narrow-symmetric onnxruntime quant_utils.compute_scale_zp + quantize_nparray, in numpy
  q8_0             ggml quantize_row_q8_0_ref, in numpy
  hist-l2          torch HistogramObserver (2048 bins): observed and chosen min/max
  entropy/mse/percentile  pytorch-quantization's HistogramCalibrator functions
                   (_compute_amax_entropy/_mse/_percentile) on the histogram that its
                   calibrate_weights() builds: np.histogram(|w|, 2048, range=(0, max|w|)).
                   Ported to numpy/CPU here (the package is not in Debian).
"""
import json
import os
import sys
from collections import Counter

import numpy as np
import torch

torch.manual_seed(0)
torch.set_num_threads(1)
rng = np.random.default_rng(20261126)
f32 = np.float32
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "quant")

blob = bytearray()


def put(arr):
    arr = np.ascontiguousarray(arr)
    off = len(blob)
    blob.extend(arr.tobytes())
    while len(blob) % 8:
        blob.append(0)
    return {"offset": off, "count": int(arr.size), "dtype": str(arr.dtype)}


def bits(v):
    return int(np.array(v, dtype=np.float32).view(np.uint32))


def bitslist(a):
    return [int(x) for x in np.asarray(a, dtype=np.float32).reshape(-1).view(np.uint32)]


# ---------------------------------------------------------------- inputs
def student_t_weights(shape, std=0.04):
    w = rng.standard_t(3, size=shape)
    w = w / w.std() * std
    w = w.astype(f32)
    flat = w.reshape(-1)
    idx = rng.choice(flat.size, 6, replace=False)
    flat[idx[:3]] = f32([0.74, 0.7391, 0.52])
    flat[idx[3:]] = f32([-0.61, -0.6077, -0.33])
    return w


def ties(n_rows):
    # Values exactly halfway between integers after scaling: with max 127.5 / min -127.5
    # the seed, torch-symmetric and torch-affine scales are all exactly 1.0 (and 2^-7 on
    # the second pair of rows), so x / scale and x * (1/scale) are exact ties.
    base = np.arange(-128, 128, dtype=np.float64) + 0.5
    rows = [base, base[::-1].copy()]
    rows += [base * 2.0 ** -7, (base * 2.0 ** -7)[::-1].copy()]
    return np.stack(rows[:n_rows]).astype(f32)


inputs = {}


def add_input(name, arr, src="F32"):
    if src == "F16":
        raw = arr.astype(np.float16)
        x = raw.astype(f32)
        ref = put(raw.view(np.uint16))
    elif src == "BF16":
        u = np.asarray(arr, dtype=f32).view(np.uint32)
        # round to nearest even into bf16, as torch's .to(torch.bfloat16) does
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        tb = torch.from_numpy(np.asarray(arr, dtype=f32)).to(torch.bfloat16)
        assert np.array_equal(tb.view(torch.int16).numpy().view(np.uint16), r)
        x = (r.astype(np.uint32) << 16).view(f32)
        ref = put(r)
    else:
        x = np.asarray(arr, dtype=f32)
        ref = put(x)
    inputs[name] = {"x": x, "meta": {"source_dtype": src, "shape": list(x.shape), "data": ref}}


add_input("transformer", student_t_weights((64, 160)))
nrm = (rng.standard_normal((64, 96)) * 0.02 + 0.004).astype(f32)
add_input("normal", nrm)
add_input("normal_T", np.ascontiguousarray(nrm.T[:, :]))  # [96, 64], per-channel along axis 1
add_input("allzero", np.zeros((4, 8), f32))
add_input("constant", np.full((4, 8), 0.3, f32))
add_input("constant_neg", np.full((3, 5), -0.25, f32))
add_input("positive", (np.abs(rng.standard_normal((8, 40))) * 0.1 + 0.05).astype(f32))
add_input("tiny", (rng.standard_normal((8, 16)) * 1e-30).astype(f32))
add_input("huge", (rng.standard_normal((8, 16)) * 1e30).astype(f32))
add_input("wide", (rng.standard_normal((16, 64)) * 3.0).astype(f32))
add_input("ties", ties(4))
add_input("single_row", (rng.standard_t(4, size=(1, 200)) * 0.05).astype(f32))
add_input("odd_rows", (rng.standard_normal((5, 100)) * 0.03).astype(f32))  # 100 % 32 != 0, % 64 != 0
add_input("f16", (rng.standard_t(3, size=(32, 64)) * 0.03), "F16")
add_input("bf16", (rng.standard_t(3, size=(32, 64)) * 0.03), "BF16")

results = []


def record(inp, scheme, gran, q, scale, zp, axis=0, bits_=8, unsigned=False, reduce=False, calib="minmax"):
    q = np.asarray(q)
    assert q.size == inputs[inp]["x"].size, (inp, scheme, gran)
    qa = q.astype(np.uint8) if unsigned else q.astype(np.int8)
    results.append({
        "input": inp, "scheme": scheme, "granularity": gran, "axis": axis, "bits": bits_,
        "unsigned": unsigned, "reduce_range": reduce, "calib": calib,
        "q": put(qa), "scale_bits": bitslist(scale),
        "zero_point": [int(z) for z in np.asarray(zp).reshape(-1)],
    })


# ---------------------------------------------------------------- seed
def seed_ref(x):
    w = torch.from_numpy(x)
    scale = (w.max() - w.min()) / 255
    q = (w / scale + 0).clamp(-128, 127).round().char()
    return q.numpy(), np.array([scale.item()], f32), [0]


# ---------------------------------------------------------------- torch observers
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver  # noqa: E402


def qrange(bits_, unsigned):
    if unsigned:
        return 0, (1 << bits_) - 1
    return -(1 << (bits_ - 1)), (1 << (bits_ - 1)) - 1


def torch_tensor_ref(x, symmetric, unsigned=False, reduce=False, bits_=8):
    dtype = torch.quint8 if unsigned else torch.qint8
    qs = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    kw = {}
    if bits_ < 8:
        kw = dict(zip(("quant_min", "quant_max"), qrange(bits_, unsigned)))
    obs = MinMaxObserver(dtype=dtype, qscheme=qs, reduce_range=reduce, **kw)
    t = torch.from_numpy(x)
    obs(t)
    s, z = obs.calculate_qparams()
    if bits_ < 8:
        fq = torch.fake_quantize_per_tensor_affine(t, float(s), int(z), obs.quant_min, obs.quant_max)
        q = (fq / float(s)).round().numpy().astype(np.int64) + int(z)
    else:
        tq = torch.quantize_per_tensor(t, float(s), int(z), dtype)
        q = tq.int_repr().numpy()
    return q, s.numpy().astype(f32), z.numpy()


def torch_channel_ref(x, symmetric, axis=0, unsigned=False):
    dtype = torch.quint8 if unsigned else torch.qint8
    qs = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    obs = PerChannelMinMaxObserver(ch_axis=axis, dtype=dtype, qscheme=qs)
    t = torch.from_numpy(x)
    obs(t)
    s, z = obs.calculate_qparams()
    tq = torch.quantize_per_channel(t, s.double(), z, axis, dtype)
    return tq.int_repr().numpy(), s.numpy().astype(f32), z.numpy()


def grouped(x, G, fn):
    # groups of G consecutive values along each row (axis 0 = channels, rows contiguous);
    # a row that is not a multiple of G ends in a shorter group
    R, K = x.shape
    q = np.zeros(x.shape, np.int64)
    scales, zps = [], []
    for r in range(R):
        for g0 in range(0, K, G):
            qq, s, z = fn(np.ascontiguousarray(x[r, g0:g0 + G]))
            q[r, g0:g0 + G] = qq
            scales.append(np.asarray(s, f32).reshape(-1)[0])
            zps.append(int(np.asarray(z).reshape(-1)[0]))
    return q, np.array(scales, f32), zps


# ---------------------------------------------------------------- onnxruntime narrow symmetric (numpy)
def ort_qmin_qmax(unsigned, reduce):
    if unsigned:
        return (0, 127) if reduce else (0, 255)
    return (-64, 64) if reduce else (-127, 127)


def ort_ref(x, unsigned=False, reduce=False):
    qmin, qmax = ort_qmin_qmax(unsigned, reduce)
    rmin = np.minimum(x.min(), f32(0))
    rmax = np.maximum(x.max(), f32(0))
    absmax = np.maximum(np.abs(rmin), np.abs(rmax))
    rmin, rmax = -absmax, absmax
    dr = np.array(rmax - rmin, dtype=np.float64)
    dq = np.float64(qmax) - np.float64(qmin)
    scale = np.array(dr / dq)
    if scale < np.finfo(f32).tiny:
        scale = np.array(1.0, f32)
        zp = 0
    else:
        zp = int(np.round((qmin + qmax) / np.float64(2.0)))
        scale = scale.astype(f32)
    arr = np.asarray((x.astype(f32) / scale).round() + zp)
    np.clip(arr, qmin, qmax, out=arr)
    return arr.astype(np.int64), np.array([scale], f32), [zp]


# ---------------------------------------------------------------- ggml q8_0 (numpy)
def q8_0_ref(x):
    R, K = x.shape
    q = np.zeros(x.shape, np.int64)
    ds = []
    for r in range(R):
        for b0 in range(0, K, 32):
            blk = x[r, b0:b0 + 32].astype(f32)
            amax = f32(np.max(np.abs(blk))) if blk.size else f32(0)
            d = f32(amax / f32(127))
            idv = f32(f32(1.0) / d) if d != 0 else f32(0)
            v = (blk * idv).astype(f32)
            # roundf: half away from zero; float64 keeps |v| + 0.5 exact
            qq = np.sign(v) * np.floor(np.abs(v.astype(np.float64)) + 0.5)
            q[r, b0:b0 + 32] = qq.astype(np.int64)
            ds.append(np.float16(d).astype(f32))
    return q, np.array(ds, f32), [0] * len(ds)


# ---------------------------------------------------------------- results
for name, inp in inputs.items():
    x = inp["x"]
    record(name, "seed", "tensor", *seed_ref(x))
    record(name, "torch-symmetric", "tensor", *torch_tensor_ref(x, True))
    record(name, "torch-symmetric", "tensor", *torch_tensor_ref(x, True, unsigned=True), unsigned=True)
    record(name, "torch-affine", "tensor", *torch_tensor_ref(x, False))
    record(name, "torch-affine", "tensor", *torch_tensor_ref(x, False, unsigned=True), unsigned=True)
    record(name, "narrow-symmetric", "tensor", *ort_ref(x))
    if name in ("transformer", "normal", "ties", "huge"):
        record(name, "torch-symmetric", "tensor", *torch_tensor_ref(x, True, reduce=True), reduce=True)
        record(name, "torch-affine", "tensor", *torch_tensor_ref(x, False, unsigned=True, reduce=True),
               unsigned=True, reduce=True)
        record(name, "narrow-symmetric", "tensor", *ort_ref(x, unsigned=True), unsigned=True)
        record(name, "narrow-symmetric", "tensor", *ort_ref(x, reduce=True), reduce=True)
        for b in (4, 2):
            record(name, "torch-affine", "tensor", *torch_tensor_ref(x, False, bits_=b), bits_=b)
            record(name, "torch-symmetric", "tensor", *torch_tensor_ref(x, True, bits_=b), bits_=b)
        record(name, "torch-symmetric", "tensor", *torch_tensor_ref(x, True, unsigned=True, bits_=4),
               unsigned=True, bits_=4)
    if x.ndim == 2:
        axis = 1 if name == "normal_T" else 0
        record(name, "torch-symmetric", "channel", *torch_channel_ref(x, True, axis), axis=axis)
        record(name, "torch-affine", "channel", *torch_channel_ref(x, False, axis), axis=axis)
        record(name, "torch-affine", "channel", *torch_channel_ref(x, False, axis, unsigned=True), axis=axis,
               unsigned=True)
        if axis == 0:
            record(name, "q8_0", "tensor", *q8_0_ref(x))
            for G in ((32, 64) if name in ("transformer", "odd_rows") else (32,)):
                record(name, "torch-symmetric", "group:%d" % G,
                       *grouped(x, G, lambda v: torch_tensor_ref(v, True)))
                record(name, "torch-affine", "group:%d" % G,
                       *grouped(x, G, lambda v: torch_tensor_ref(v, False)))
                record(name, "narrow-symmetric", "group:%d" % G, *grouped(x, G, ort_ref))
                record(name, "seed", "group:%d" % G, *grouped(x, G, seed_ref))

# ---------------------------------------------------------------- HistogramObserver (hist-l2)
from torch.ao.quantization.observer import HistogramObserver  # noqa: E402

hist_obs = []
for name in ("transformer", "normal", "positive", "wide", "single_row", "odd_rows", "f16", "ties"):  # "huge": torch fails (int(1e30) in histc)
    x = inputs[name]["x"]
    for dtype, qs in ((torch.quint8, torch.per_tensor_affine), (torch.qint8, torch.per_tensor_symmetric)):
        obs = HistogramObserver(dtype=dtype, qscheme=qs)
        obs(torch.from_numpy(x))
        new_min, new_max = obs._non_linear_param_search()
        s, z = obs.calculate_qparams()
        hist_obs.append({
            "input": name, "unsigned": dtype == torch.quint8,
            "symmetric": qs == torch.per_tensor_symmetric,
            "min_bits": bits(obs.min_val.item()), "max_bits": bits(obs.max_val.item()),
            "new_min_bits": bits(new_min.item()), "new_max_bits": bits(new_max.item()),
            "scale_bits": bits(s.item()), "zero_point": int(z.item()),
        })


# ---------------------------------------------------------------- pytorch-quantization calibrators
def calib_hist(x):
    a = np.abs(x.astype(f32))
    return np.histogram(a, bins=2048, range=(0, a.max()))


def entropy_np(pk, qk):
    # scipy.stats.entropy(pk, qk): normalise both, sum rel_entr
    pk = np.asarray(pk, np.float64)
    qk = np.asarray(qk, np.float64)
    pk = pk / pk.sum()
    qk = qk / qk.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(pk > 0, np.where(qk > 0, pk * np.log(pk / qk), np.inf), 0.0)
    return r.sum()


def amax_entropy(hist, edges, num_bits=8, unsigned=False, stride=1, start_bin=128):
    bins = hist[:]
    bins[0] = bins[1]
    total_data = np.sum(bins)
    divergences = []
    nbins = 1 << (num_bits - 1 + int(unsigned))
    stop = len(bins)
    new_density_counts = np.zeros(nbins, dtype=np.float64)
    for i in range(start_bin, stop + 1, stride):
        new_density_counts.fill(0)
        space = np.linspace(0, i, num=nbins + 1)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density_counts[digitized] += bins[idx]
        counter = Counter(digitized_space)
        for key, val in counter.items():
            if key != -1:
                new_density_counts[key] = new_density_counts[key] / val
        new_density = np.zeros(i, dtype=np.float64)
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density[idx] = new_density_counts[digitized]
        reference_density = np.array(bins[:len(digitized_space)])
        reference_density[-1] += np.sum(bins[i:])
        divergences.append(entropy_np(reference_density, new_density))
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return f32(edges[last_argmin * stride + start_bin])


def fake_tensor_quant(inputs_, amax, num_bits=8, unsigned=False, narrow_range=True):
    max_bound = torch.tensor((2.0 ** (num_bits - 1 + int(unsigned))) - 1.0)
    min_bound = 0 if unsigned else (-max_bound if narrow_range else -max_bound - 1)
    scale = max_bound / amax
    if amax <= 1.0 / (1 << 24):
        scale = torch.zeros_like(scale)
    outputs = torch.clamp((inputs_ * scale).round_(), float(min_bound), max_bound.item())
    return outputs / scale


def amax_mse(hist, edges, num_bits=8, unsigned=False, stride=1, start_bin=128):
    counts = torch.from_numpy(hist[:]).float()
    edges = torch.from_numpy(edges[:]).float()
    centers = (edges[1:] + edges[:-1]) / 2
    mses = []
    arguments = []
    for i in range(start_bin, len(centers), stride):
        amax = centers[i]
        qc = fake_tensor_quant(centers, amax, num_bits, unsigned)
        mses.append(((qc - centers) ** 2 * counts).mean().item())
        arguments.append(i)
    return centers[arguments[int(np.argmin(mses))]].item()


def amax_percentile(hist, edges, percentile):
    total = hist.sum()
    cdf = np.cumsum(hist / total)
    idx = np.searchsorted(cdf, percentile / 100)
    return f32(edges[idx])


calibs = []
for name in ("transformer", "normal", "positive", "single_row", "f16", "odd_rows"):
    x = inputs[name]["x"]
    h, e = calib_hist(x)
    calibs.append({"input": name, "method": "entropy", "symmetric": True,
                   "amax_bits": bits(amax_entropy(h.copy(), e))})
    calibs.append({"input": name, "method": "mse-trt", "symmetric": True,
                   "amax_bits": bits(amax_mse(h.copy(), e))})
    for p in (99.99, 99.9, 99.0, 100.0):
        calibs.append({"input": name, "method": "percentile", "percentile": p, "symmetric": True,
                       "amax_bits": bits(amax_percentile(h.copy(), e, p))})
        lo, hi = np.percentile(x.reshape(-1).astype(np.float64), [100 - p, p])
        calibs.append({"input": name, "method": "percentile", "percentile": p, "symmetric": False,
                       "lo_bits": bits(lo), "hi_bits": bits(hi)})

# ---------------------------------------------------------------- histograms (numpy)
histograms = []
for name, bins, lo, hi in (("transformer", 2048, None, None), ("transformer", 64, -0.1, 0.1),
                           ("normal", 100, -0.05, 0.07), ("wide", 7, -3.3, 2.9), ("ties", 255, -127.5, 127.5),
                           ("ties", 16, 0.0, 1.0), ("f16", 33, -0.02, 0.05)):
    x = inputs[name]["x"].reshape(-1)
    if lo is None:
        lo, hi = float(x.min()), float(x.max())
    counts, _ = np.histogram(x, bins=bins, range=(lo, hi))
    histograms.append({"input": name, "bins": bins, "lo": lo, "hi": hi, "counts": [int(c) for c in counts],
                       "below": int((x < lo).sum()), "above": int((x > hi).sum())})
a = np.abs(inputs["transformer"]["x"].reshape(-1))
counts, _ = np.histogram(a, bins=2048, range=(0, a.max()))
histograms.append({"input": "transformer", "abs": True, "bins": 2048, "lo": 0.0, "hi": float(a.max()),
                   "counts": [int(c) for c in counts], "below": 0, "above": 0})

# ---------------------------------------------------------------- metrics and stats (numpy, float64)
metrics = []
for name in ("transformer", "normal", "odd_rows"):
    x = inputs[name]["x"]
    t = torch.from_numpy(x)
    obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    obs(t)
    s_, z_ = obs.calculate_qparams()
    xhat = torch.quantize_per_tensor(t, float(s_), int(z_), torch.qint8).dequantize().numpy()
    xd, yd = x.astype(np.float64), xhat.astype(np.float64)
    err = xd - yd

    def m(xr, yr):
        e = xr - yr
        return {"mse": float((e ** 2).mean()), "sqnr_db": float(10 * np.log10((xr ** 2).sum() / (e ** 2).sum())),
                "cosine": float((xr * yr).sum() / (np.sqrt((xr ** 2).sum()) * np.sqrt((yr ** 2).sum()))),
                "max_abs_error": float(np.abs(e).max())}
    rows = [m(xd[r], yd[r]) for r in range(x.shape[0])]
    metrics.append({"input": name, "xhat": put(xhat.astype(f32)), "all": m(xd.reshape(-1), yd.reshape(-1)),
                    "rows": rows, "stats": {"min": float(xd.min()), "max": float(xd.max()), "mean": float(xd.mean()),
                                            "std": float(xd.std())}})

manifest = {
    "generator": "tests/scripts/make_quant_fixtures.py",
    "torch": torch.__version__, "numpy": np.__version__,
    "inputs": {k: v["meta"] for k, v in inputs.items()},
    "results": results, "histogram_observer": hist_obs, "calibrators": calibs,
    "histograms": histograms, "metrics": metrics,
}
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "fixtures.bin"), "wb") as fh:
    fh.write(bytes(blob))
with open(os.path.join(OUT, "fixtures.json"), "w") as fh:
    json.dump(manifest, fh, indent=None, separators=(",", ":"))
    fh.write("\n")
print("wrote %d bytes of arrays, %d results, %d histogram observers, %d calibrator values"
      % (len(blob), len(results), len(hist_obs), len(calibs)), file=sys.stderr)
