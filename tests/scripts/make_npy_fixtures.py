#!/usr/bin/python3
"""Writes the .npy/.npz fixtures, their expected values and the malformed corpus.

Run with /usr/bin/python3 (numpy). Files are written by numpy itself (np.save,
np.lib.format.write_array, np.savez, np.savez_compressed); the malformed ones are
numpy output edited byte by byte.

Expected statistics are over the values converted to float32 (what Tensor::toFloat
yields), accumulated in float64 with the population std; samples are row-major (C
order) flat indices, so Fortran-ordered files check the strides too.
"""
import io
import json
import os
import struct
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data"))
OUT = os.path.join(DATA, "npy")
BAD = os.path.join(DATA, "malformed", "npy")
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "models"))

DTYPE_NAME = {"f2": "F16", "f4": "F32", "f8": "F64", "i1": "I8", "i2": "I16", "i4": "I32", "i8": "I64",
              "u1": "U8", "u2": "U16", "u4": "U32", "u8": "U64", "b1": "BOOL"}


def entry(name, a):
    a = np.asarray(a)
    code = a.dtype.kind + str(a.dtype.itemsize)
    e = {"name": name, "dtype": DTYPE_NAME[code], "shape": list(a.shape), "decodable": True,
         "bigEndian": a.dtype.byteorder == ">",
         "fortran": bool(a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous)}
    flat = np.ascontiguousarray(a).reshape(-1).astype(np.float32)
    if flat.size == 0:
        e["stats"], e["samples"] = None, []
        return e
    x = flat.astype(np.float64)
    e["stats"] = {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()), "std": float(x.std())}
    n = flat.size
    e["samples"] = [[int(i), float(flat[i])] for i in sorted({0, 1 % n, n // 3, n // 2, (2 * n) // 3, n - 1})]
    return e


def save(name, a, version=None):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        if version is None:
            np.save(f, a, allow_pickle=False)
        else:
            np.lib.format.write_array(f, a, version=version, allow_pickle=False)
    # The file must read back as the array we describe.
    back = np.load(path, allow_pickle=False)
    assert back.dtype == a.dtype and back.shape == a.shape and np.array_equal(back, a)
    return path


def fix_timestamps(path):
    """np.savez stamps members with the current time; zero the DOS date/time fields in
    the local and central headers so re-running the script gives identical bytes."""
    with open(path, "rb") as f:
        zb = bytearray(f.read())
    for sig, at in ((b"PK\x03\x04", 10), (b"PK\x01\x02", 12)):
        i = zb.find(sig)
        while i >= 0:
            struct.pack_into("<HH", zb, i + at, 0, (1 << 5) | 1)  # 00:00:00, 1980-01-01
            i = zb.find(sig, i + 4)
    with open(path, "wb") as f:
        f.write(zb)


def fixtures():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(4321)
    expected = {}

    def one(fname, a, version=None):
        save(fname, a, version)
        expected[fname] = {"format": "npy", "tensors": [entry(os.path.splitext(fname)[0], a)]}

    one("c_f4.npy", rng.normal(0, 1, (3, 4)).astype("<f4"))
    one("fortran_f8.npy", np.asfortranarray(rng.normal(5, 2, (3, 4, 2))))
    one("fortran_be_i4.npy", np.asfortranarray(rng.integers(-1000, 1000, (4, 5)).astype(">i4")))
    one("be_f4.npy", rng.normal(0, 1, (5, 3)).astype(">f4"))
    one("be_i2.npy", np.array([-32768, -2, 0, 3, 32767, 1000, -1000], ">i2"))
    one("scalar_f8.npy", np.array(1728.94))
    one("empty_f4.npy", np.zeros((0, 3), "<f4"))
    one("v2_f4.npy", rng.normal(0, 1, (6, 2)).astype("<f4"), version=(2, 0))
    one("v3_u2.npy", np.arange(10, dtype="<u2") * 6000, version=(3, 0))
    one("f2.npy", rng.normal(0, 4, (2, 5)).astype("<f2"))
    one("i1.npy", np.array([-128, -1, 0, 1, 127], "i1"))
    one("i8.npy", np.array([-(2**62), -7, 0, 2**40 + 3], "<i8"))
    one("u1.npy", rng.integers(0, 256, (4, 4)).astype("u1"))
    one("u4.npy", np.array([0, 1, 2**32 - 1], "<u4"))
    one("u8.npy", np.array([0, 2**64 - 1], "<u8"))
    one("b1.npy", np.array([[True, False, True], [False, False, True]]))
    one("be_f8_3d.npy", rng.normal(0, 1, (2, 3, 4)).astype(">f8"))

    arrays = {"weight": rng.normal(0, 0.1, (8, 4)).astype("<f4"), "bias": rng.normal(0, 1, 8).astype("<f4"),
              "step": np.array(7, "<i8"), "mask": rng.integers(0, 2, 6).astype(bool),
              "fortran": np.asfortranarray(rng.normal(0, 1, (3, 2)).astype("<f8")),
              "nested/name": np.arange(5, dtype=">i2")}
    # Same order the zip will hold them in (numpy writes in dict order).
    for fname, fn, method in [("stored.npz", np.savez, zipfile.ZIP_STORED),
                              ("deflated.npz", np.savez_compressed, zipfile.ZIP_DEFLATED)]:
        path = os.path.join(OUT, fname)
        fn(path, **arrays)
        fix_timestamps(path)
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist()]
            assert all(i.compress_type == method for i in z.infolist())
        expected[fname] = {"format": "npz",
                           "tensors": [entry(n[:-4], arrays[n[:-4]]) for n in names]}
    # Highly compressible: far beyond 64x its archive size, still legitimate.
    path = os.path.join(OUT, "zeros_deflated.npz")
    np.savez_compressed(path, zeros=np.zeros((512, 512), "<f4"))
    fix_timestamps(path)
    expected["zeros_deflated.npz"] = {"format": "npz", "tensors": [entry("zeros", np.zeros((512, 512), "<f4"))]}
    # Positional names.
    path = os.path.join(OUT, "positional.npz")
    np.savez(path, np.arange(3, dtype="<f4"), np.ones((2, 2), "<f2"))
    fix_timestamps(path)
    expected["positional.npz"] = {"format": "npz", "tensors": [entry("arr_0", np.arange(3, dtype="<f4")),
                                                               entry("arr_1", np.ones((2, 2), "<f2"))]}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def npy_bytes(a, version=(1, 0)):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, version=version, allow_pickle=False)
    return buf.getvalue()


def with_header(header, data=b"", version=(1, 0)):
    """A .npy image with the given header text, padded the way numpy pads it."""
    h = header.encode("latin1")
    pre = 10 if version == (1, 0) else 12
    h += b" " * ((64 - (pre + len(h) + 1) % 64) % 64) + b"\n"
    lenfield = struct.pack("<H", len(h)) if version == (1, 0) else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes(version) + lenfield + h + data


def zip_bytes(members, method=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=method)
    return bytearray(buf.getvalue())


def patch_sizes(zb, name, size):
    """Rewrites a member's uncompressed size in both its local and central headers."""
    n = name.encode()
    lh = zb.find(b"PK\x03\x04")
    while lh >= 0:
        nlen = struct.unpack_from("<H", zb, lh + 26)[0]
        if zb[lh + 30:lh + 30 + nlen] == n:
            struct.pack_into("<I", zb, lh + 22, size)
        lh = zb.find(b"PK\x03\x04", lh + 4)
    ch = zb.find(b"PK\x01\x02")
    while ch >= 0:
        nlen = struct.unpack_from("<H", zb, ch + 28)[0]
        if zb[ch + 46:ch + 46 + nlen] == n:
            struct.pack_into("<I", zb, ch + 24, size)
        ch = zb.find(b"PK\x01\x02", ch + 4)
    return bytes(zb)


def malformed():
    os.makedirs(BAD, exist_ok=True)
    f4 = np.arange(12, dtype="<f4").reshape(3, 4)
    good = npy_bytes(f4)
    cases = {
        "truncated_magic.npy": b"\x93NUM",
        "magic_only.npy": b"\x93NUMPY\x01\x00",
        "bad_version.npy": b"\x93NUMPY\x07\x00" + good[8:],
        "header_len_past_end.npy": b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + good[10:200],
        "v2_header_len_4gb.npy": b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{" + b" " * 50,
        "bad_dict.npy": with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), ", f4.tobytes()),
        "dict_eval.npy": with_header("{'descr': '<f4', 'fortran_order': __import__('os'), 'shape': (3, 4), }", f4.tobytes()),
        "dict_extra_key.npy": with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'x': 1, }", f4.tobytes()),
        "dict_missing_shape.npy": with_header("{'descr': '<f4', 'fortran_order': False, }", f4.tobytes()),
        "dict_duplicate_key.npy": with_header("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", f4.tobytes()),
        "unknown_descr.npy": with_header("{'descr': '<c8', 'fortran_order': False, 'shape': (3, 4), }", f4.tobytes() * 2),
        "object_descr.npy": with_header("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", b"\0" * 24),
        "structured_descr.npy": with_header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", b"\0" * 12),
        "no_byteorder_multibyte.npy": with_header("{'descr': '|f4', 'fortran_order': False, 'shape': (3, 4), }", f4.tobytes()),
        "negative_dim.npy": with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 4), }", f4.tobytes()),
        "shape_overflow.npy": with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776, 1099511627776), }", f4.tobytes()),
        "dim_overflow.npy": with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", f4.tobytes()),
        "bytes_overflow.npy": with_header("{'descr': '<f8', 'fortran_order': True, 'shape': (4294967296, 4294967296), }", f4.tobytes()),
        "data_truncated.npy": good[:-5],
        "fortran_truncated.npy": npy_bytes(np.asfortranarray(f4))[:-4],
    }
    for name, data in cases.items():
        with open(os.path.join(BAD, name), "wb") as f:
            f.write(data)

    # npz: a member that claims 2 GiB; a truncated archive; a member that is bad .npy.
    small = npy_bytes(np.arange(64, dtype="<f4"))
    zb = zip_bytes([("a.npy", small)], zipfile.ZIP_DEFLATED)
    cases = {
        "member_claims_huge.npz": patch_sizes(zb, "a.npy", 0x7FFFFFFF),
        "member_size_lies_small.npz": patch_sizes(zb, "a.npy", 16),
        "stored_size_mismatch.npz": patch_sizes(zip_bytes([("a.npy", small)]), "a.npy", len(small) + 100),
        "truncated.npz": bytes(zip_bytes([("a.npy", small), ("b.npy", small)]))[:180],
        "member_bad_npy.npz": bytes(zip_bytes([("ok.npy", small), ("bad.npy", good[:-5])])),
        "member_bad_crc.npz": None,
    }
    # A non-recursive zip bomb in miniature: 200 central entries share one deflated
    # 1 MiB member, so each passes a per-member size bound.
    zb = bytes(zip_bytes([("00000.npy", npy_bytes(np.zeros(262144, "<f4")))], zipfile.ZIP_DEFLATED))
    cd, eocd = zb.find(b"PK\x01\x02"), zb.find(b"PK\x05\x06")
    entries = b"".join(zb[cd:eocd].replace(b"00000.npy", b"%05d.npy" % i) for i in range(200))
    cases["overlapping_members.npz"] = zb[:cd] + entries + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 200, 200,
                                                                      len(entries), cd, 0)
    z = bytearray(zip_bytes([("a.npy", small)]))
    data_at = z.find(small)
    z[data_at + len(small) - 1] ^= 0xFF  # payload corrupted, CRC now wrong
    cases["member_bad_crc.npz"] = bytes(z)
    for name, data in cases.items():
        with open(os.path.join(BAD, name), "wb") as f:
            f.write(data)


def real_expected():
    out = {}
    fname = "mlx_cvae_mnist.npz"
    path = os.path.join(SHARED, fname)
    with zipfile.ZipFile(path) as z:
        names = [i.filename for i in z.infolist()]
    with np.load(path, allow_pickle=False) as npz:
        out[fname] = {"format": "npz", "tensors": [entry(n[:-4], npz[n[:-4]]) for n in names]}
    with open(os.path.join(OUT, "real_expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def seeds():
    """Copies the fixtures into tests/fuzz/seeds/npy, where CI's bounded fuzz run
    (.ci/run) looks for the seed corpus of fuzz_npy."""
    import glob
    import shutil
    dst = os.path.normpath(os.path.join(HERE, "..", "fuzz", "seeds", "npy"))
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for pattern in [os.path.join(OUT, "*.np?")]:
        for f in sorted(glob.glob(pattern)):
            shutil.copy(f, os.path.join(dst, os.path.basename(f)))
    for f in sorted(glob.glob(os.path.join(BAD, "*"))):
        shutil.copy(f, os.path.join(dst, "malformed_" + os.path.basename(f)))


if __name__ == "__main__":
    fixtures()
    malformed()
    seeds()
    if os.path.isdir(SHARED):
        real_expected()
    else:
        print("no ../shared/models: real_expected.json not regenerated", file=sys.stderr)
