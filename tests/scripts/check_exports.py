#!/usr/bin/python3
"""Interop check: reads Quantlens exports with h5py / numpy only and checks them
against the original model.

    check_exports.py MODEL EXPORT [EXPORT ...]

MODEL is the original file (.safetensors, parsed by hand; or .npz / .npy).
Each EXPORT is one of
  - an HDF5 export (.h5 / .hdf5), read with h5py;
  - an int8 safetensors export or a fake-quant safetensors copy (parsed by hand:
    8-byte little-endian header length, JSON header, numpy.frombuffer);
  - an npy-folder export (manifest.json + .npy files read with numpy.load).

For every quantized tensor it checks that the integers lie in [qmin, qmax], that
dequantizing with numpy, (q - zero_point) * scale broadcast as the layout says,
lands within scale/2 of the original value inside the representable range
[(qmin - zp) * scale, (qmax - zp) * scale] (and on the range's edge outside it),
that the mean squared error recomputed here equals the one recorded in the export,
and that biases and non-quantized tensors equal the original. A fake-quant copy is
compared with the numpy dequantization of any int8 export of the same tensors given
on the same command line. Exit status 0 when everything holds, 1 otherwise.

Not part of the C++ test suite: CI runs it from tests/scripts/interop.sh with
Debian's python3-h5py and python3-numpy.
"""
import json
import os
import struct
import sys

import numpy as np

ST_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def read_safetensors(path):
    """Returns (metadata dict, ordered list of (name, dtype, shape, raw bytes))."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(path + ": shorter than 8 bytes")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > len(buf) - 8:
        raise ValueError(path + ": header length beyond the file")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    items = []
    for name, info in header.items():
        b, e = info["data_offsets"]
        items.append((name, info["dtype"], tuple(info["shape"]), data[b:e], b, e))
    # The format's invariants: offsets contiguous from 0 to the end of the buffer.
    at = 0
    for name, _, _, _, b, e in sorted(items, key=lambda it: it[4]):
        if b != at:
            raise ValueError(f"{path}: tensor {name} starts at {b}, expected {at}")
        at = e
    if at != len(data):
        raise ValueError(f"{path}: data ends at {at} but the buffer has {len(data)} bytes")
    return meta, n, [(it[0], it[1], it[2], it[3]) for it in items]


def st_array(dtype, shape, raw):
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=ST_DTYPES[dtype]).reshape(shape)


def load_original(path):
    """name -> (numpy array in its own dtype, safetensors dtype name or None, raw bytes or None)."""
    if path.endswith(".npz"):
        with np.load(path) as z:
            return {k: (z[k], None, None) for k in z.files}
    if path.endswith(".npy"):
        return {"arr_0": (np.load(path), None, None)}
    _, _, items = read_safetensors(path)
    return {name: (st_array(dt, shape, raw), dt, raw) for name, dt, shape, raw in items}


def dequantize(q, scale, zp, axis, group_size, qmin, qmax):
    """(q - zp) * scale in float32, broadcast the way Quantlens lays out scales:
    [1] per tensor (axis -1), [channels] along `axis`, [channels, groups] with groups of
    `group_size` consecutive values of each channel's row (the tensor with the channel
    axis moved to the front and the rest flattened; a vector is one row).
    Returns the dequantized values and, per element, the scale and the representable
    range [(qmin - zp) * scale, (qmax - zp) * scale]."""
    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.asarray(zp, dtype=np.int64)
    if group_size > 0:
        moved = q.reshape(1, -1) if q.ndim <= 1 else np.moveaxis(q, axis, 0)
        channels = moved.shape[0]
        rows = moved.reshape(channels, -1)
        g = np.arange(rows.shape[1]) // group_size
        s = scale.reshape(channels, -1)[:, g]
        z = zp.reshape(channels, -1)[:, g]
        r = rows.astype(np.int64)

        def back(a):
            a = a.reshape(moved.shape)
            return (a if q.ndim <= 1 else np.moveaxis(a, 0, axis)).reshape(q.shape)
    else:
        if axis < 0:
            if scale.size != 1:
                raise ValueError(f"per-tensor export with {scale.size} scales")
            s = np.broadcast_to(scale.reshape(()), q.shape)
            z = np.broadcast_to(zp.reshape(()), q.shape)
        else:
            shape = [1] * q.ndim
            shape[axis] = -1
            s = np.broadcast_to(scale.reshape(shape), q.shape)
            z = np.broadcast_to(zp.reshape(shape), q.shape)
        r = q.astype(np.int64)
        back = lambda a: a
    xhat = (r - z).astype(np.float32) * s
    lo = (qmin - z).astype(np.float32) * s
    hi = (qmax - z).astype(np.float32) * s
    return back(xhat), back(s), back(lo), back(hi)


def spec_key(name, rec):
    """Pairs a fake-quant tensor with the int8 export made with the same settings."""
    return (name, str(rec.get("scheme")), str(rec.get("granularity")), str(rec.get("calib")), int(rec.get("bits", 8)))


def check_record(where, rec, original, dequantized_out):
    """rec: dict with name, q, scale, zero_point, qmin, qmax, axis, group_size, scheme, mse, bias(optional)."""
    name = rec["name"]
    if name not in original:
        fail(f"{where}: {name} is not in the original model")
        return
    x = np.asarray(original[name][0]).astype(np.float32)
    q = np.asarray(rec["q"])
    if q.dtype not in (np.int8, np.uint8):
        fail(f"{where}: {name}: q has dtype {q.dtype}, expected int8 or uint8")
        return
    if q.shape != x.shape:
        fail(f"{where}: {name}: q has shape {q.shape}, the original {x.shape}")
        return
    qmin, qmax = int(rec["qmin"]), int(rec["qmax"])
    if q.size and (int(q.min()) < qmin or int(q.max()) > qmax):
        fail(f"{where}: {name}: integers [{q.min()}, {q.max()}] outside [{qmin}, {qmax}]")
    xhat, s, lo, hi = dequantize(q, rec["scale"], rec["zero_point"], int(rec["axis"]), int(rec["group_size"]), qmin, qmax)
    s = np.abs(s)
    # Half a step inside the representable range, the nearest edge outside it. float32
    # rounding of x/scale adds a relative 1e-6; Q8_0 stores its scale as fp16 after
    # quantizing with the float32 one, which moves q*d by up to |q| * d * 2^-11.
    tol = s * 0.5 * (1 + 1e-5) + np.abs(x) * 1e-6 + 1e-12
    if rec["scheme"] == "q8_0":
        tol = tol + np.abs(q.astype(np.float32)) * s * 2.0 ** -10
    target = np.clip(x, np.minimum(lo, hi), np.maximum(lo, hi))
    err = np.abs(xhat - target)
    bad = err > tol
    inside = np.mean((x >= np.minimum(lo, hi)) & (x <= np.maximum(lo, hi))) if x.size else 1.0
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        fail(f"{where}: {name}: {int(bad.sum())} values off by more than scale/2, first at flat index {i}: "
             f"original {x.ravel()[i]!r}, dequantized {xhat.ravel()[i]!r}, scale {s.ravel()[i]!r}")
    mse = float(np.mean((x.astype(np.float64) - xhat.astype(np.float64)) ** 2)) if x.size else 0.0
    recorded = rec.get("mse")
    if recorded is not None and not np.isclose(mse, float(recorded), rtol=1e-4, atol=1e-15):
        fail(f"{where}: {name}: recomputed MSE {mse!r} differs from the recorded {recorded!r}")
    if rec.get("bias") is not None:
        bias_name = rec.get("bias_name")
        candidates = [bias_name] if bias_name else [name[: -len("weight")] + "bias"] if name.endswith("weight") else []
        ob = next((original[c][0] for c in candidates if c in original), None)
        if ob is None:
            fail(f"{where}: {name}: exported bias has no original to compare with")
        elif not np.array_equal(np.asarray(rec["bias"]), np.asarray(ob).astype(np.float32)):
            fail(f"{where}: {name}: bias differs from the original")
    dequantized_out[spec_key(name, rec)] = xhat
    print(f"ok   {where}: {name} {rec['scheme']} shape {list(q.shape)} scales {np.asarray(rec['scale']).shape} "
          f"max|err| {float(np.max(np.abs(xhat - x))) if x.size else 0:.3g} inside-range {inside:.6f} mse {mse:.3g}")


def records_from_h5(path):
    import h5py

    recs = []
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != "quantlens-int8":
            fail(f"{path}: root attribute format is {f.attrs.get('format')!r}")
        if int(f.attrs.get("format_version", -1)) != 1:
            fail(f"{path}: format_version is {f.attrs.get('format_version')!r}")
        for key in ("source", "source_format"):
            if key not in f.attrs:
                fail(f"{path}: root attribute {key} missing")
        for gname, g in f["tensors"].items():
            a = g.attrs
            for key in ("name", "scheme", "granularity", "axis", "bits", "qmin", "qmax", "calib", "range_lo",
                        "range_hi", "source_dtype", "mse", "sqnr_db"):
                if key not in a:
                    fail(f"{path}: /tensors/{gname} lacks attribute {key}")
            name = a["name"]
            if gname != name.replace("%", "%25").replace("/", "%2F") and gname not in ("%2E", "%2E%2E"):
                fail(f"{path}: group {gname} does not encode name {name}")
            if g["scale"].dtype != np.float32 or g["zero_point"].dtype != np.int32:
                fail(f"{path}: {name}: scale/zero_point dtypes {g['scale'].dtype}/{g['zero_point'].dtype}")
            if g["scale"].shape != g["zero_point"].shape:
                fail(f"{path}: {name}: scale and zero_point shapes differ")
            recs.append({
                "name": name, "q": g["q"][()], "scale": g["scale"][()], "zero_point": g["zero_point"][()],
                "qmin": a["qmin"], "qmax": a["qmax"], "axis": a["axis"], "group_size": a.get("group_size", 0),
                "scheme": a["scheme"], "granularity": a["granularity"], "calib": a["calib"], "bits": a["bits"],
                "mse": a["mse"], "bias": g["bias"][()] if "bias" in g else None,
            })
    return recs


def records_from_npy_folder(path):
    with open(os.path.join(path, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("format") != "quantlens-int8-npy" or manifest.get("format_version") != 1:
        fail(f"{path}: manifest format {manifest.get('format')!r} version {manifest.get('format_version')!r}")
    recs = []
    for t in manifest["tensors"]:
        load = lambda key: np.load(os.path.join(path, t[key]), allow_pickle=False)
        rec = dict(t)
        rec.update(q=load("q"), scale=load("scale"), zero_point=load("zero_point"),
                   bias=load("bias") if t.get("bias") else None)
        if list(rec["scale"].shape) != t["scale_shape"]:
            fail(f"{path}: {t['name']}: scale shape {rec['scale'].shape} but the manifest says {t['scale_shape']}")
        recs.append(rec)
    return recs


def check_safetensors(path, original, dequantized, where):
    meta, header_len, items = read_safetensors(path)
    if header_len % 8:
        fail(f"{path}: header length {header_len} is not a multiple of 8")
    for k, v in meta.items():
        if not isinstance(v, str):
            fail(f"{path}: __metadata__[{k!r}] is not a string")
    kind = meta.get("quantlens_format")
    per_tensor = json.loads(meta.get("quantlens_tensors", "{}"))
    arrays = {name: (dt, shape, raw) for name, dt, shape, raw in items}
    recs = []
    for name, info in per_tensor.items():
        if name not in arrays:
            fail(f"{path}: quantized tensor {name} missing")
            continue
        if kind == "int8":
            dt, shape, raw = arrays[name]
            if dt not in ("I8", "U8"):
                fail(f"{path}: {name} has dtype {dt}")
                continue
            s = arrays.get(name + "_scale")
            z = arrays.get(name + "_zero_point")
            if s is None or z is None or s[0] != "F32" or z[0] != "I32":
                fail(f"{path}: {name}_scale (F32) / {name}_zero_point (I32) missing or mistyped")
                continue
            rec = dict(info)
            rec.update(name=name, q=st_array(dt, shape, raw), scale=st_array(*s), zero_point=st_array(*z))
            recs.append(rec)
        elif kind == "fake-quant":
            dt, shape, raw = arrays[name]
            if dt != "F32":
                fail(f"{path}: fake-quant {name} has dtype {dt}, expected F32")
                continue
            xhat = st_array(dt, shape, raw)
            x = np.asarray(original[name][0]).astype(np.float32)
            mse = float(np.mean((x.astype(np.float64) - xhat.astype(np.float64)) ** 2)) if x.size else 0.0
            if info.get("mse") is not None and not np.isclose(mse, info["mse"], rtol=1e-4, atol=1e-15):
                fail(f"{path}: {name}: fake-quant MSE {mse!r} differs from the recorded {info['mse']!r}")
            ref = dequantized.get(spec_key(name, info))
            if ref is not None:
                diff = np.abs(ref - xhat)
                if (diff > np.spacing(np.abs(ref)) * 2).any():
                    fail(f"{path}: {name}: differs from the int8 export's dequantization by up to {diff.max()!r}")
            print(f"ok   {where}: {name} fake-quant mse {mse:.3g}" + (" (= int8 export, bitwise)" if ref is not None and np.array_equal(ref, xhat) else ""))
        else:
            fail(f"{path}: quantlens_format is {kind!r}")
    # Everything that was not quantized is the original, unchanged.
    derived = set(per_tensor) | {n + "_scale" for n in per_tensor} | {n + "_zero_point" for n in per_tensor}
    for name, (dt, shape, raw) in arrays.items():
        if name in derived:
            continue
        if name not in original:
            fail(f"{path}: {name} is not in the original")
            continue
        arr, odt, oraw = original[name]
        if oraw is not None and odt == dt:
            if raw != oraw:
                fail(f"{path}: {name} differs from the original bytes")
        elif not np.array_equal(st_array(dt, shape, raw).astype(np.float32), np.asarray(arr).astype(np.float32)):
            fail(f"{path}: {name} differs from the original values")
    missing = [n for n in original if n not in arrays]
    if missing:
        fail(f"{path}: {len(missing)} original tensors missing, e.g. {missing[0]}")
    return recs


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    model, exports = argv[1], argv[2:]
    original = load_original(model)
    dequantized = {}
    # int8 exports first, so a fake-quant copy can be compared with their dequantization.
    def is_fake(p):
        return p.endswith(".safetensors") and read_safetensors(p)[0].get("quantlens_format") == "fake-quant"
    ordered = sorted(exports, key=is_fake)
    for path in ordered:
        where = os.path.basename(path.rstrip("/"))
        if os.path.isdir(path):
            recs = records_from_npy_folder(path)
        elif path.endswith((".h5", ".hdf5")):
            recs = records_from_h5(path)
        elif path.endswith(".safetensors"):
            recs = check_safetensors(path, original, dequantized, where)
        else:
            fail(f"{path}: not an export this script knows")
            continue
        if not recs and not path.endswith(".safetensors"):
            fail(f"{path}: no quantized tensors")
        for rec in recs:
            check_record(where, rec, original, dequantized)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all exports check out against", model)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
