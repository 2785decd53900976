"""llama.cpp's own llama_model_quantize (the code behind llama-quantize) from the test clients'
libllama through ctypes: the reference for which ggml type each tensor of a type mix gets.

Only llama_model_quantize_default_params' first two fields are set (nthread, ftype), so the
struct layout beyond them does not matter: the library fills its defaults (no imatrix,
quantize the output tensor, not pure), the same as `llama-quantize IN OUT FTYPE`.
"""
import ctypes
import os
import struct

from ggmlref import LIB, TYPES, read_gguf

BINS = os.path.dirname(LIB)
FTYPES = {"q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17}
NAMES = {v: k for k, v in TYPES.items()}


class _Params(ctypes.Structure):
    # Larger than llama_model_quantize_params in any release: the callee writes its own size
    # through the hidden return pointer, the rest stays unused.
    _fields_ = [("raw", ctypes.c_ubyte * 512)]


_lib = None
_LOG = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_quiet = _LOG(lambda level, text, user: None)


def _llama():
    global _lib
    if _lib is None:
        for name in ("libggml-base.so", "libggml.v0.4.0.so"):
            ctypes.CDLL(os.path.join(BINS, name), mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(os.path.join(BINS, "libllama.v0.4.0.so"))
        lib.llama_model_quantize_default_params.restype = _Params
        lib.llama_model_quantize.restype = ctypes.c_uint32
        lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
        # llama.cpp logs every tensor to stderr; the callers print what matters.
        lib.llama_log_set.argtypes = [_LOG, ctypes.c_void_p]
        lib.llama_log_set(_quiet, None)
        _lib = lib
    return _lib


def quantize(src, dst, mix):
    """llama_model_quantize(src, dst, {nthread 1, ftype}); returns {tensor name: ggml type name}."""
    lib = _llama()
    p = lib.llama_model_quantize_default_params()
    buf = bytearray(bytes(p.raw))
    struct.pack_into("<ii", buf, 0, 1, FTYPES[mix])
    cbuf = (ctypes.c_ubyte * len(buf)).from_buffer(buf)
    rc = lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.addressof(cbuf))
    if rc != 0:
        raise SystemExit("llama_model_quantize(%s, %s) failed with %d" % (src, mix, rc))
    return {name: NAMES.get(t, str(t)) for name, _, t, _ in read_gguf(dst)[1]}
