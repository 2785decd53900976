#!/usr/bin/python3
"""Writes the PyTorch checkpoint fixtures for tests/core/tst_pytorch.cpp and tst_pickle.cpp.

Run with Debian's torch 1.13:  /usr/bin/python3 tests/scripts/make_pytorch_fixtures.py

tests/data/pytorch/            real torch.save files + <name>.json with what torch itself reports
                               (names as Quantlens joins them, shapes, dtypes, float64 min/max/mean/std,
                               the first values in row-major order of the logical view)
tests/data/pytorch/real_expected.json   the same for ../shared/models/ggml_mnist_mlp.pt (if present)
tests/data/malformed/pytorch/  lying, truncated, hostile and code-executing checkpoints; every one
                               must be refused. The exec_* ones are proven live here: Python's own
                               pickle.loads of their data.pkl creates a marker file (in a temp dir).
"""
import io
import json
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import OrderedDict

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1] / "data"
OUT = ROOT / "pytorch"
BAD = ROOT / "malformed" / "pytorch"
SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared" / "models" / "ggml_mnist_mlp.pt"

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
          torch.uint8: "U8", torch.bool: "BOOL"}
STORAGE = {torch.float32: "FloatStorage", torch.float64: "DoubleStorage", torch.float16: "HalfStorage",
           torch.bfloat16: "BFloat16Storage", torch.int64: "LongStorage", torch.int32: "IntStorage",
           torch.int16: "ShortStorage", torch.int8: "CharStorage", torch.uint8: "ByteStorage",
           torch.bool: "BoolStorage"}
OPTIMIZER_KEYS = {"optimizer", "optimizer_state_dict", "optimizer_states", "optim"}


# ----------------------------------------------------------------------------------------
# Expected values, computed by torch, named the way the C++ reader names them.

def tensor_entry(name, t, optimizer):
    x = t.detach().to(torch.float64)
    e = {"name": name, "dtype": DTYPES[t.dtype], "shape": list(t.shape),
         "strided": not t.is_contiguous(), "group": "optimizer" if optimizer else "",
         "numel": t.numel(), "storage_offset": t.storage_offset()}
    if t.numel():
        e.update(min=x.min().item(), max=x.max().item(), mean=x.mean().item(),
                 std=x.std(unbiased=False).item(), first=x.flatten()[:8].tolist())
    return e


def is_scalar(v):
    return v is None or isinstance(v, (bool, int, float, str))


def walk(obj, name, optimizer, out):
    if isinstance(obj, torch.Tensor):
        out.append(tensor_entry(name or "tensor", obj, optimizer))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            k = str(k)
            walk(v, f"{name}.{k}" if name else k, optimizer or k in OPTIMIZER_KEYS, out)
    elif isinstance(obj, (list, tuple)) and not all(is_scalar(v) for v in obj):
        for i, v in enumerate(obj):
            walk(v, f"{name}.{i}" if name else str(i), optimizer, out)


def write_expected(stem, obj, prefix, metadata=None):
    tensors = []
    walk(obj, "", False, tensors)
    doc = {"file": f"{stem}.pt", "prefix": prefix, "tensors": tensors, "metadata": metadata or {}}
    (OUT / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")


def check_roundtrip(path, obj):
    """torch.load of what we wrote gives back the same tensors (guards the fixture itself)."""
    back = torch.load(path)
    a, b = [], []
    walk(obj, "", False, a)
    walk(back, "", False, b)
    assert a == b, f"{path}: torch.load disagrees with the saved object"


def save(stem, obj, metadata=None, via_buffer=True, **kw):
    path = OUT / f"{stem}.pt"
    if via_buffer:  # a buffer gets the default archive name "archive/"
        buf = io.BytesIO()
        torch.save(obj, buf, **kw)
        path.write_bytes(buf.getvalue())
        prefix = "archive/"
    else:  # torch 1.x names the archive after the file's stem
        torch.save(obj, str(path), **kw)
        prefix = f"{stem}/"
    if kw.get("_use_new_zipfile_serialization", True) is False:
        prefix = ""
    else:
        names = zipfile.ZipFile(path).namelist()
        assert f"{prefix}data.pkl" in names, names
    check_roundtrip(path, obj)
    write_expected(stem, obj, prefix, metadata)
    return path


# ----------------------------------------------------------------------------------------
# A tiny pickle assembler (protocol 2, the opcodes torch.save emits) for fixtures that torch
# would never write: lying sizes, hostile globals, deep nesting.

def op_int(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    if -2**31 <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def op_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def op_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_tuple(items):
    return b"(" + b"".join(items) + b"t"


def tensor_ops(key, numel, offset, size, stride, storage="FloatStorage"):
    pid = op_tuple([op_str("storage"), op_global("torch", storage), op_str(key), op_str("cpu"), op_int(numel)])
    args = op_tuple([pid + b"Q", op_int(offset), op_tuple([op_int(s) for s in size]),
                     op_tuple([op_int(s) for s in stride]), b"\x89",
                     op_global("collections", "OrderedDict") + b")R"])
    return op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict_pickle(entries):
    """entries: list of (name, raw value ops)."""
    body = b"".join(op_str(k) + v for k, v in entries)
    return b"\x80\x02" + op_global("collections", "OrderedDict") + b")R(" + body + b"u."


def write_torch_zip(path, prefix, members, compress=False):
    """Members named like torch.save; STORED data aligned to 64 bytes as torch's writer does."""
    with open(path, "wb") as f, zipfile.ZipFile(f, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(prefix + name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            header = 30 + len(info.filename.encode())
            pad = (-(f.tell() + header + 4)) % 64
            info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB" padding record, as torch
            z.writestr(info, data)


def raw(t):
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()


def assembled(path, tensors, prefix="archive/", byteorder=None, swap=False, extra_pickle=None):
    """A state dict of contiguous tensors, one storage each, written by our assembler."""
    entries, members = [], []
    for i, (name, t) in enumerate(tensors):
        entries.append((name, tensor_ops(str(i), t.numel(), 0, list(t.shape),
                                         list(t.stride()), STORAGE[t.dtype])))
        data = t.contiguous()
        if swap and data.element_size() > 1:
            data = raw(data)
            es = t.element_size()
            data = b"".join(data[j:j + es][::-1] for j in range(0, len(data), es))
        else:
            data = raw(data)
        members.append((f"data/{i}", data))
    pkl = extra_pickle if extra_pickle is not None else state_dict_pickle(entries)
    head = [("data.pkl", pkl)]
    if byteorder:
        head.append(("byteorder", byteorder.encode()))
    write_torch_zip(path, prefix, head + members + [("version", b"3\n")])


# ----------------------------------------------------------------------------------------

def good_fixtures():
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    def rnd(*shape, dtype=torch.float32):
        return (torch.randn(*shape, generator=g) * 0.1).to(dtype)

    # BERT-style names (the Hugging Face pytorch_model.bin layout), archive/ prefix.
    bert = OrderedDict()
    bert["bert.embeddings.word_embeddings.weight"] = rnd(32, 16)
    bert["bert.embeddings.LayerNorm.weight"] = torch.ones(16)
    bert["bert.embeddings.LayerNorm.bias"] = torch.zeros(16)
    for part in ("query", "key", "value"):
        bert[f"bert.encoder.layer.0.attention.self.{part}.weight"] = rnd(16, 16)
        bert[f"bert.encoder.layer.0.attention.self.{part}.bias"] = rnd(16)
    bert["bert.encoder.layer.0.attention.output.dense.weight"] = rnd(16, 16)
    bert["bert.encoder.layer.0.attention.output.dense.bias"] = rnd(16)
    bert["bert.encoder.layer.0.intermediate.dense.weight"] = rnd(32, 16)
    bert["bert.encoder.layer.0.intermediate.dense.bias"] = rnd(32)
    bert["bert.encoder.layer.0.output.dense.weight"] = rnd(16, 32)
    bert["bert.encoder.layer.0.output.dense.bias"] = rnd(16)
    bert["bert.pooler.dense.weight"] = rnd(16, 16)
    bert["bert.pooler.dense.bias"] = rnd(16)
    save("bert", bert)

    # The same archive with deflated members: the reader decompresses into owned buffers.
    src = zipfile.ZipFile(OUT / "bert.pt")
    with zipfile.ZipFile(OUT / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as z:
        for n in src.namelist():  # fixed dates keep the fixture byte-identical across runs
            z.writestr(zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0)), src.read(n), zipfile.ZIP_DEFLATED)
    check_roundtrip(OUT / "deflated.pt", bert)
    write_expected("deflated", bert, "archive/")

    # A training checkpoint: model weights, optimizer state (Adam after 3 steps), scalars.
    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 8)).pow(2).sum().backward()
        opt.step()
    ckpt = {"state_dict": net.state_dict(), "epoch": 3, "optimizer": opt.state_dict(),
            "best_acc": 0.875, "arch": "mlp", "flag": True, "note": None}
    save("nested", ckpt, metadata={"epoch": "3", "best_acc": "0.875", "arch": "mlp", "flag": "True",
                                   "note": "None", "optimizer.param_groups.0.lr": "0.01",
                                   "optimizer.param_groups.0.betas": "(0.9, 0.999)",
                                   "optimizer.param_groups.0.params": "[0, 1, 2, 3]"})

    # Non-contiguous views keep their storage and strides through torch.save.
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7.0
    save("transposed", OrderedDict([("fc.weight_t", base.t()), ("fc.cols", base[:, 1:3]),
                                    ("fc.every_other", torch.arange(10.0)[::2])]))

    # Two tensors viewing one storage at different offsets (torch writes the storage once).
    shared_base = rnd(20)
    shared = OrderedDict([("first", shared_base[0:8].view(2, 4)), ("second", shared_base[8:20].view(3, 4))])
    p = save("shared", shared)
    assert len([n for n in zipfile.ZipFile(p).namelist() if "/data/" in n]) == 1

    dt = OrderedDict([
        ("half", rnd(4, 5, dtype=torch.float16)),
        ("bf16", rnd(3, 7, dtype=torch.bfloat16)),
        ("double", rnd(6, dtype=torch.float64)),
        ("long", torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4) * 1000),
        ("int", torch.arange(-3, 3, dtype=torch.int32)),
        ("short", torch.arange(-3, 3, dtype=torch.int16)),
        ("char", torch.arange(-4, 4, dtype=torch.int8)),
        ("byte", torch.arange(250, 256, dtype=torch.uint8)),
        ("mask", torch.tensor([True, False, True, True, False])),
    ])
    save("dtypes", dt)
    # The same values stored big-endian with a byteorder member (torch >= 2.1 writes one).
    assembled(OUT / "bigendian.pt", list(dt.items()), byteorder="big", swap=True)
    write_expected("bigendian", dt, "archive/")
    assembled(OUT / "assembled.pt", list(dt.items()), byteorder="little")
    check_roundtrip(OUT / "assembled.pt", dt)  # proves the assembler writes what torch reads
    write_expected("assembled", dt, "archive/")

    # Pre-1.6 format: a stream of pickles followed by raw storages.
    legacy_base = rnd(6, 4)
    legacy = {"state_dict": OrderedDict([("enc.weight", legacy_base), ("enc.weight_t", legacy_base.t()),
                                         ("enc.half", rnd(3, dtype=torch.float16)),
                                         ("enc.ids", torch.arange(5))]),
              "epoch": 11}
    save("legacy", legacy, metadata={"epoch": "11"}, _use_new_zipfile_serialization=False)

    # A file-saved archive: torch 1.x names the prefix after the file ("custom_prefix/").
    save("custom_prefix", OrderedDict([("layer.weight", rnd(4, 3)), ("layer.bias", rnd(4))]), via_buffer=False)

    # Protocol 4 pickles use FRAME, MEMOIZE, SHORT_BINUNICODE and STACK_GLOBAL instead.
    save("protocol4", {"model": OrderedDict([("enc.weight", rnd(6, 5)), ("enc.bias", rnd(6))]), "step": 12},
         metadata={"step": "12"}, pickle_protocol=4)
    pkl = zipfile.ZipFile(OUT / "protocol4.pt").read("archive/data.pkl")
    assert pkl[:2] == b"\x80\x04" and b"\x93" in pkl and b"\x95" in pkl

    # Values that are not plain tensors: a Parameter, a 0-d tensor, an empty tensor, a tied
    # weight (one tensor under two names), a numpy scalar and a device.
    tied = rnd(5, 2)
    misc = {"param": torch.nn.Parameter(rnd(2, 3)), "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4),
            "tied_a": tied, "tied_b": tied, "np_acc": np.float64(0.625), "np_steps": np.int64(42),
            "device": torch.device("cpu")}
    save("misc", misc, metadata={"np_acc": "0.625", "np_steps": "42", "device": "cpu"})


def real_expected():
    if not SHARED.exists():
        print("skipping real_expected.json:", SHARED, "not found")
        return
    sd = torch.load(SHARED, map_location="cpu")
    tensors = []
    walk(sd, "", False, tensors)
    doc = {"file": SHARED.name, "prefix": "mnist/", "tensors": tensors, "metadata": {}}
    (OUT / "real_expected.json").write_text(json.dumps(doc, indent=1) + "\n")


# ----------------------------------------------------------------------------------------

def exec_pickle(callee_ops, arg_ops):
    """An OrderedDict whose one value is callee(*args): the classic pickle exploit."""
    return (b"\x80\x02" + op_global("collections", "OrderedDict") + b")R(" + op_str("weight") +
            callee_ops + op_tuple(arg_ops) + b"Ru.")


def prove_live(name, pkl, marker):
    """Python's unrestricted unpickler really runs this payload (so our refusal matters)."""
    import pickle
    with tempfile.TemporaryDirectory() as d:
        old = os.getcwd()
        os.chdir(d)
        try:
            class Unpickler(pickle.Unpickler):
                def persistent_load(self, pid):  # what torch.load does, minus the zip
                    return torch.FloatStorage(16)
            try:
                Unpickler(io.BytesIO(pkl)).load()
            except Exception:
                pass
            for _ in range(50):
                if os.path.exists(marker):
                    break
                time.sleep(0.05)
            assert os.path.exists(marker), f"{name}: payload did not run under pickle.loads"
        finally:
            os.chdir(old)


def malformed():
    BAD.mkdir(parents=True, exist_ok=True)
    for f in BAD.glob("*"):
        f.unlink()
    w = torch.arange(16, dtype=torch.float32)
    w_raw = raw(w)

    def ckpt(name, pkl, members=(("data/0", w_raw),), prefix="archive/", compress=False):
        write_torch_zip(BAD / name, prefix, [("data.pkl", pkl)] + list(members) + [("version", b"3\n")], compress)

    good = state_dict_pickle([("w", tensor_ops("0", 16, 0, [4, 4], [4, 1]))])

    # Code execution: each would create a marker file in the current directory.
    payloads = {
        "exec_posix_system.pt": (op_global("posix", "system"), [op_str("touch quantlens_pwned_posix_system")],
                                 "quantlens_pwned_posix_system", "posix.system"),
        "exec_os_system.pt": (op_global("os", "system"), [op_str("touch quantlens_pwned_os_system")],
                              "quantlens_pwned_os_system", "os.system"),
        "exec_builtins_eval.pt": (op_global("builtins", "eval"),
                                  [op_str("open('quantlens_pwned_builtins_eval', 'w').close()")],
                                  "quantlens_pwned_builtins_eval", "builtins.eval"),
        "exec_subprocess_popen.pt": (op_global("subprocess", "Popen"),
                                     [b"(" + op_str("touch") + op_str("quantlens_pwned_subprocess_popen") + b"l"],
                                     "quantlens_pwned_subprocess_popen", "subprocess.Popen"),
        "exec_stack_global_exec.pt": (op_str("builtins") + op_str("exec") + b"\x93",
                                      [op_str("open('quantlens_pwned_stack_global_exec', 'w').close()")],
                                      "quantlens_pwned_stack_global_exec", "builtins.exec"),
    }
    manifest = {}
    for fname, (callee, args, marker, glob) in payloads.items():
        pkl = exec_pickle(callee, args)
        prove_live(fname, pkl, marker)
        ckpt(fname, pkl)
        manifest[fname] = {"global": glob, "marker": marker}
    # Hidden after a valid tensor, and inside _rebuild_from_type_v2 where a tensor is expected.
    pkl = state_dict_pickle([("w", tensor_ops("0", 16, 0, [4, 4], [4, 1])),
                             ("x", op_global("posix", "system") + op_tuple([op_str("touch quantlens_pwned_after_tensor")]) + b"R")])
    prove_live("exec_after_tensor.pt", pkl, "quantlens_pwned_after_tensor")
    ckpt("exec_after_tensor.pt", pkl)
    manifest["exec_after_tensor.pt"] = {"global": "posix.system", "marker": "quantlens_pwned_after_tensor"}
    # Legacy stream whose main pickle runs the payload.
    magic = b"\x80\x02" + op_int(0x1950a86a20f9469cfc6c) + b"."
    legacy_exec = (magic + b"\x80\x02" + op_int(1001) + b"." + b"\x80\x02}." +
                   exec_pickle(op_global("posix", "system"), [op_str("touch quantlens_pwned_legacy")]) +
                   b"\x80\x02]." )
    (BAD / "exec_legacy_posix_system.pt").write_bytes(legacy_exec)
    manifest["exec_legacy_posix_system.pt"] = {"global": "posix.system", "marker": "quantlens_pwned_legacy"}
    (BAD / "exec_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    # Truncations.
    bert = (OUT / "bert.pt").read_bytes()
    (BAD / "truncated_zip.pt").write_bytes(bert[: len(bert) * 6 // 10])
    ckpt("truncated_pickle.pt", good[:good.index(b"storage") + 3])  # inside BINUNICODE
    ckpt("pickle_without_stop.pt", good[:-1])
    ckpt("unknown_opcode.pt", good[:2] + b"\xff" + good[2:])
    ckpt("inst_opcode.pt", b"\x80\x02(iposix\nsystem\n.")
    # The deep ones are deflated (the reader inflates data.pkl like any member) to stay small.
    ckpt("deep_marks.pt", b"\x80\x02" + b"(" * 100000 + b"N" + b"t" * 100000 + b".", compress=True)
    ckpt("deep_lists_stack.pt", b"\x80\x02" + b"]" * 200000 + b"a" * 199999 + b".", compress=True)
    # Deep nesting through the memo keeps the stack at two entries.
    deep = b"\x80\x02]q\x00" + b"]q\x01a0h\x01" * 100000 + b"0h\x00."
    ckpt("deep_nesting_memo.pt", deep, compress=True)
    # Dicts nested 5000 deep under empty keys: names stay short, so the depth limit must act.
    deep_dicts = b"\x80\x02}q\x00" + b"X\x00\x00\x00\x00}q\x01s0h\x01" * 5000 + b"0h\x00."
    ckpt("deep_nesting_empty_keys.pt", deep_dicts, compress=True)
    ckpt("huge_memo_get.pt", b"\x80\x02j\xff\xff\xff\xff.")
    ckpt("huge_memo_put.pt", b"\x80\x02]r\xff\xff\xff\xff.")
    ckpt("cyclic_list.pt", state_dict_pickle([("w", tensor_ops("0", 16, 0, [4, 4], [4, 1])),
                                              ("loop", b"]q\x05h\x05a")]))
    ckpt("cyclic_dict.pt", b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.")
    ckpt("stack_underflow.pt", b"\x80\x02a.")
    ckpt("setitem_on_list.pt", b"\x80\x02]K\x01K\x02s.")
    ckpt("huge_string_length.pt", b"\x80\x02X\xff\xff\xff\x7f" + b"a" * 10 + b".")
    ckpt("huge_frame.pt", b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.")
    ckpt("empty_checkpoint.pt", b"\x80\x02}X\x05\x00\x00\x00epochK\x03s.", members=())

    # Storage problems.
    ckpt("storage_key_missing.pt", state_dict_pickle([("w", tensor_ops("7", 16, 0, [4, 4], [4, 1]))]))
    ckpt("storage_too_small.pt", good, members=(("data/0", w_raw[:40]),))
    ckpt("storage_key_path.pt", state_dict_pickle([("w", tensor_ops("../../etc/passwd", 16, 0, [4, 4], [4, 1]))]))
    ckpt("storage_type_unknown.pt", state_dict_pickle([("w", tensor_ops("0", 16, 0, [4, 4], [4, 1], "ComplexFloatStorage"))]))
    for name, (numel, off, size, stride) in {
        "negative_size.pt": (16, 0, [-1, 4], [4, 1]),
        "overflow_size.pt": (16, 0, [2**62, 2**62], [1, 1]),
        "bigint_size.pt": (16, 0, [2**70, 1], [1, 1]),
        "negative_stride.pt": (16, 0, [4, 4], [4, -1]),
        "overflow_stride.pt": (16, 0, [4, 4], [2**62, 1]),
        "stride_out_of_bounds.pt": (16, 0, [4, 4], [8, 1]),
        "offset_out_of_bounds.pt": (16, 100, [2, 2], [2, 1]),
        "offset_plus_size_overrun.pt": (16, 10, [4, 4], [4, 1]),
        "negative_offset.pt": (16, -4, [2, 2], [2, 1]),
        "negative_numel.pt": (-5, 0, [2, 2], [2, 1]),
        "huge_numel.pt": (2**62, 0, [2, 2], [2, 1]),
        "rank_mismatch.pt": (16, 0, [4, 4], [1]),
    }.items():
        ckpt(name, state_dict_pickle([("w", tensor_ops("0", numel, off, size, stride))]))

    # Zip-level lies.
    ckpt("bad_byteorder.pt", good)
    z = (BAD / "bad_byteorder.pt")
    write_torch_zip(z, "archive/", [("data.pkl", good), ("byteorder", b"middle"), ("data/0", w_raw), ("version", b"3\n")])
    write_torch_zip(BAD / "no_data_pkl.pt", "archive/", [("data/0", w_raw), ("version", b"3\n")])
    write_torch_zip(BAD / "two_data_pkl.pt", "", [("a/data.pkl", good), ("b/data.pkl", good), ("a/data/0", w_raw)])
    # A STORED member whose central and local headers claim ~4 GB.
    ckpt("member_claims_gigabytes.pt", good, members=(("data/0", w_raw),))
    patch_sizes(BAD / "member_claims_gigabytes.pt", "archive/data/0", 0xF0000000, 0xF0000000)
    # A deflated member claiming ~4 GB from a few compressed bytes.
    write_torch_zip(BAD / "deflate_claims_gigabytes.pt", "archive/",
                    [("data.pkl", good), ("data/0", w_raw), ("version", b"3\n")], compress=True)
    patch_sizes(BAD / "deflate_claims_gigabytes.pt", "archive/data/0", None, 0xF0000000)

    # Legacy-format problems.
    legacy = (OUT / "legacy.pt").read_bytes()
    (BAD / "legacy_truncated.pt").write_bytes(legacy[:-20])
    (BAD / "legacy_bad_magic.pt").write_bytes(b"\x80\x02" + op_int(12345) + b"." + legacy[legacy.index(b".") + 1:])
    (BAD / "legacy_bad_protocol.pt").write_bytes(magic + b"\x80\x02" + op_int(999) + b"." + b"\x80\x02}.")
    (BAD / "legacy_storage_lies.pt").write_bytes(
        magic + b"\x80\x02" + op_int(1001) + b"." + b"\x80\x02}." +
        state_dict_pickle([("w", tensor_ops("k", 16, 0, [4, 4], [4, 1]))]) +
        b"\x80\x02]X\x01\x00\x00\x00ka." + struct.pack("<q", 2**60) + w_raw)


def patch_sizes(path, member, comp, size):
    """Rewrites the sizes of one member in both its local and central headers."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    i = data.find(b"PK\x01\x02")
    while i >= 0:
        n = struct.unpack_from("<H", data, i + 28)[0]
        if bytes(data[i + 46:i + 46 + n]) == name:
            if comp is not None:
                struct.pack_into("<I", data, i + 20, comp)
            struct.pack_into("<I", data, i + 24, size)
            local = struct.unpack_from("<I", data, i + 42)[0]
            if comp is not None:
                struct.pack_into("<I", data, local + 18, comp)
            struct.pack_into("<I", data, local + 22, size)
        i = data.find(b"PK\x01\x02", i + 4)
    path.write_bytes(bytes(data))


if __name__ == "__main__":
    assert torch.__version__.startswith("1.13"), torch.__version__
    good_fixtures()
    real_expected()
    malformed()
    total = sum(f.stat().st_size for f in OUT.glob("*")) + sum(f.stat().st_size for f in BAD.glob("*"))
    print(f"wrote {len(list(OUT.glob('*')))} fixtures and {len(list(BAD.glob('*')))} malformed files, {total} bytes")
