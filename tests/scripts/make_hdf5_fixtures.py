#!/usr/bin/python3
"""Writes the HDF5 fixtures in tests/data/hdf5 and tests/data/malformed/hdf5.

Files are written with h5py (the library Keras 2 used), expected values come from
the numpy arrays they were made from, and the real Keras files' statistics are
computed with h5py + numpy in float64 (population std).

Run: /usr/bin/python3 tests/scripts/make_hdf5_fixtures.py  (from anywhere)
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "hdf5")
BAD = os.path.join(DATA, "malformed", "hdf5")
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "models")

DTYPE_NAME = {"float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8", "int16": "I16", "int32": "I32",
              "int64": "I64", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL"}


def floats(a):
    return [float(v) for v in np.asarray(a).astype(np.float32).reshape(-1)]


def entry(name, arr, layout="plain", group=""):
    return {"name": name, "shape": list(arr.shape), "dtype": DTYPE_NAME[arr.dtype.name], "values": floats(arr),
            "layout": layout, "group": group}


def visit_datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def make_keras():
    rng = np.random.default_rng(11)
    path = os.path.join(OUT, "keras_like.h5")
    config = '{"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [' + ", ".join(
        '{"class_name": "Dense", "config": {"name": "dense_%d", "units": 3}}' % i for i in range(8)) + "]}}"
    exp = []
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.3.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = config.encode()
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([b"dense_1", b"dropout_1", b"lstm_1"], dtype="|S9")
        k = rng.standard_normal((4, 3)).astype(np.float32)
        b = rng.standard_normal(3).astype(np.float32)
        g = mw.create_group("dense_1").create_group("dense_1")
        g.create_dataset("kernel:0", data=k)
        g.create_dataset("bias:0", data=b)
        d = mw.create_group("dropout_1")
        d.attrs["weight_names"] = np.zeros(0, dtype=np.float64)
        lk = rng.standard_normal((2, 8)).astype(np.float32)
        lr = rng.standard_normal((2, 8)).astype(np.float32)
        lg = mw.create_group("lstm_1").create_group("lstm_1")
        lg.create_dataset("kernel:0", data=lk)
        lg.create_dataset("recurrent_kernel:0", data=lr)
        it = np.array(7500, dtype=np.int64)
        m0 = rng.standard_normal((4, 3)).astype(np.float32)
        ow = f.create_group("optimizer_weights").create_group("training").create_group("Adam")
        ow.create_dataset("iterations:0", data=it)
        ow.create_dataset("Variable:0", data=m0)
        arrays = {"model_weights/dense_1/dense_1/kernel:0": (k, "inout", ""),
                  "model_weights/dense_1/dense_1/bias:0": (b, "plain", ""),
                  "model_weights/lstm_1/lstm_1/kernel:0": (lk, "inout", ""),
                  "model_weights/lstm_1/lstm_1/recurrent_kernel:0": (lr, "inout", ""),
                  "optimizer_weights/training/Adam/iterations:0": (it, "plain", "optimizer"),
                  "optimizer_weights/training/Adam/Variable:0": (m0, "plain", "optimizer")}
        order = visit_datasets(f)
    exp = [entry(n, *arrays[n]) for n in order]
    meta = {"keras_version": "2.3.0", "backend": "tensorflow", "model_config": config[:200] + "\u2026"}
    return {"format": "keras-h5", "tensors": exp, "metadata": meta}


def make_types():
    rng = np.random.default_rng(12)
    path = os.path.join(OUT, "types.h5")
    arrays = {
        "f16": (rng.standard_normal((2, 3)) * 10).astype(np.float16),
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": np.array([1e-300, -2.5, 1e30], dtype=np.float64),
        "ints/i8": np.array([-128, 0, 127], dtype=np.int8),
        "ints/i16": np.array([-32768, 1, 32767], dtype=np.int16),
        "ints/i32": np.array([[-(2 ** 31), 5], [6, 2 ** 31 - 1]], dtype=np.int32),
        "ints/i64": np.array([-(2 ** 40), 2 ** 40], dtype=np.int64),
        "ints/u8": np.array([0, 255], dtype=np.uint8),
        "ints/u16": np.array([0, 65535], dtype=np.uint16),
        "ints/u32": np.array([0, 2 ** 32 - 1], dtype=np.uint32),
        "ints/u64": np.array([0, 2 ** 64 - 1], dtype=np.uint64),
        "flags": np.array([True, False, True, True], dtype=bool),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "nested/a/b/deep": rng.standard_normal((2, 2, 2)).astype(np.float32),
        "compressed": np.tile(np.arange(64, dtype=np.float32), (64, 1)),
        "big_endian": np.array([1.5, -2.25], dtype=">f4"),
    }
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "quantlens fixture"
        f.attrs["version"] = 3
        f.attrs["scales"] = np.array([0.5, 0.25, 0.125, 1.0], dtype=np.float32)
        for name, arr in arrays.items():
            if name == "compressed":
                f.create_dataset(name, data=arr, chunks=(16, 16), compression="gzip", compression_opts=9, shuffle=True)
            else:
                f.create_dataset(name, data=arr)
        f.create_dataset("note", data="hello from h5py")  # a variable-length string: metadata
        f.create_dataset("fixed_note", data=np.bytes_(b"fixed bytes"))
        f.create_dataset("records", data=np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]))  # compound: skipped
        order = visit_datasets(f)
    exp = [entry(n, arrays[n].astype(arrays[n].dtype.newbyteorder("="))) for n in order if n in arrays]
    meta = {"title": "quantlens fixture", "version": "3", "scales": "[4 numbers: 0.5, 0.25, 0.125, ...]",
            "note": "hello from h5py", "fixed_note": "fixed bytes", "skipped datasets": "records (compound)"}
    return {"format": "hdf5", "tensors": exp, "metadata": meta}


def make_malformed():
    # Not wiped: fuzz-found inputs and libhdf5_bugs/ live here too and are kept.
    os.makedirs(BAD, exist_ok=True)
    cases = {}
    # Found by tests/fuzz/fuzz_hdf5: SIGSEGV in libhdf5's H5HG_read while reading a
    # variable-length string attribute, before those reads moved into a child process.
    if os.path.exists(os.path.join(BAD, "fuzz_libhdf5_global_heap_segv.h5")):
        cases["fuzz_libhdf5_global_heap_segv.h5"] = "bad-hdf5"
    # Found by tests/fuzz/fuzz_hdf5: a group that links back to itself; libhdf5's H5Lvisit
    # follows it with ever longer paths for minutes unless the reader stops it.
    if os.path.exists(os.path.join(BAD, "fuzz_libhdf5_group_cycle.h5")):
        cases["fuzz_libhdf5_group_cycle.h5"] = "bad-hdf5"
    good = open(os.path.join(OUT, "types.h5"), "rb").read()

    def bad(name, data, code):
        with open(os.path.join(BAD, name), "wb") as f:
            f.write(data)
        cases[name] = code

    bad("truncated_half.h5", good[:len(good) // 2], "bad-hdf5")
    bad("truncated_superblock.h5", good[:20], "bad-hdf5")
    bad("signature_only.h5", good[:8], "bad-hdf5")
    g = bytearray(good)
    for i in range(8, 64):
        g[i] ^= 0x5A
    bad("corrupted_superblock.h5", bytes(g), "bad-hdf5")
    rnd = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    bad("garbage_after_signature.h5", good[:8] + rnd, "bad-hdf5")

    def h5(name, code, fn):
        p = os.path.join(BAD, name)
        with h5py.File(p, "w") as f:
            fn(f)
        cases[name] = code

    # A chunked dataset that was never written: HDF5 would hand back 4 TiB of fill value.
    h5("huge_unwritten_dataset.h5", "too-large", lambda f: f.create_dataset("w", shape=(2 ** 40, 1), dtype="f4", chunks=(1024, 1)))
    # 64 MiB of zeros gzip to a few KB: more than 64x the file.
    h5("compression_bomb.h5", "too-large", lambda f: f.create_dataset(
        "w", data=np.zeros((4096, 4096), dtype=np.float32), chunks=(1024, 1024), compression="gzip", compression_opts=9))
    h5("only_compound.h5", "no-tensors", lambda f: f.create_dataset("r", data=np.zeros(2, dtype=[("a", "<i4")])))
    h5("only_strings.h5", "no-tensors", lambda f: f.create_dataset("s", data="text"))
    h5("external_link_only.h5", "no-tensors", lambda f: f.__setitem__("ext", h5py.ExternalLink("/etc/passwd", "/x")))
    h5("external_raw_data.h5", "no-tensors", lambda f: f.create_dataset(
        "w", shape=(4,), dtype="u1", external=[("/etc/hostname", 0, 4)]))
    h5("long_double.h5", "no-tensors", lambda f: f.create_dataset("ld", data=np.zeros(2, dtype=np.longdouble)))

    # Dims patched after writing: 2^62 x 2^62 overflows int64 element counts.
    p = os.path.join(BAD, "dims_overflow.h5")
    with h5py.File(p, "w") as f:
        f.create_dataset("w", shape=(123456789, 987654321), dtype="f4", chunks=(1, 1024), maxshape=(None, None))
    b = bytearray(open(p, "rb").read())
    for old in (123456789, 987654321):
        ob = old.to_bytes(8, "little")
        assert b.count(ob) >= 1, old
        b = b.replace(ob, (2 ** 62).to_bytes(8, "little"))
    with open(p, "wb") as f:
        f.write(bytes(b))
    cases["dims_overflow.h5"] = "bad-shape"

    # A contiguous dataset's raw-data address patched to lie past the end of the file: the
    # reader uses contiguous data in place, so it must check the address against the file.
    p = os.path.join(BAD, "data_past_eof.h5")
    with h5py.File(p, "w") as f:
        offset = f.create_dataset("w", data=np.arange(1024, dtype="<f4")).id.get_offset()
    b = bytearray(open(p, "rb").read())
    # Layout message v3, class 1 (contiguous): address, then size.
    msg = bytes([3, 1]) + offset.to_bytes(8, "little") + (4096).to_bytes(8, "little")
    assert b.count(msg) == 1, offset
    b = b.replace(msg, bytes([3, 1]) + (len(b) + 4096).to_bytes(8, "little") + (4096).to_bytes(8, "little"))
    with open(p, "wb") as f:
        f.write(bytes(b))
    cases["data_past_eof.h5"] = "truncated"
    with open(os.path.join(BAD, "expected.json"), "w") as f:
        json.dump(cases, f, indent=1, sort_keys=True)


def make_real_expected():
    out = {}
    for fname in ["hls4ml_mnist_mlp_weights.h5", "hls4ml_lstm_model.h5"]:
        path = os.path.join(SHARED, fname)
        if not os.path.exists(path):
            print("shared models not found; real_expected.json not refreshed", file=sys.stderr)
            return
        tensors = []
        with h5py.File(path, "r") as f:
            for n in visit_datasets(f):
                a = f[n][()]
                a64 = np.asarray(a).astype(np.float64)
                leaf = n.rsplit("/", 1)[-1].split(":")[0]
                tensors.append({"name": n, "shape": list(np.shape(a)), "dtype": DTYPE_NAME[np.asarray(a).dtype.name],
                                "min": float(a64.min()), "max": float(a64.max()), "mean": float(a64.mean()),
                                "std": float(a64.std()),
                                "layout": "inout" if a64.ndim == 2 and leaf in ("kernel", "recurrent_kernel") else "plain",
                                "group": "optimizer" if n.startswith("optimizer_weights/") else ""})
            meta = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()
                    if k in ("keras_version", "backend")}
        out[fname] = {"format": "keras-h5", "tensors": tensors, "metadata": meta}
    with open(os.path.join(OUT, "real_expected.json"), "w") as f:
        json.dump(out, f, indent=1)


def main():
    os.makedirs(OUT, exist_ok=True)
    exp = {"keras_like.h5": make_keras(), "types.h5": make_types()}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1, ensure_ascii=False)
    make_malformed()
    make_real_expected()


if __name__ == "__main__":
    main()
