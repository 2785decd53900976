#!/usr/bin/python3
"""Writes tests/data/export/*.npy with numpy's own np.save.

tst_exportnpy checks that Quantlens's npy writer produces these files byte for byte
(same header dict, same padding to 64 bytes, same data). Run with /usr/bin/python3.
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "data", "export"))

# name -> array; the values are simple formulas the C++ test recomputes.
ARRAYS = {
    "f32_2x3": (np.arange(6, dtype=np.float32) * 0.5 - 1.0).reshape(2, 3),
    "i8_4": np.array([-128, -1, 0, 127], dtype=np.int8),
    "u8_scalar": np.array(200, dtype=np.uint8),
    "i32_1x2x1": np.array([-7, 123456], dtype=np.int32).reshape(1, 2, 1),
    "f32_0x3": np.zeros((0, 3), dtype=np.float32),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, a in ARRAYS.items():
        np.save(os.path.join(OUT, name + ".npy"), a)
    print("wrote", len(ARRAYS), "files to", OUT)


if __name__ == "__main__":
    main()
