#!/usr/bin/env bash
# Interop: exports written by quantlens-cli are read by real clients — h5dump for the
# HDF5 layout, Debian's python3-h5py/python3-numpy (tests/scripts/check_exports.py)
# for every format — on a real model. Run by .ci/run as: bash tests/scripts/interop.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
cli="$build/app/quantlens-cli"
model=${QUANTLENS_INTEROP_MODEL:-../shared/models/gpt2_capp.safetensors}
py=/usr/bin/python3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

q() { echo "+ quantlens-cli quantize $*"; "$cli" quantize "$model" "$@" >/dev/null 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }; }
q --all-linear --scheme seed --out "$out/seed.h5" --fake-quant "$out/seed-fake.safetensors"
q --all-linear --scheme seed --out "$out/seed.safetensors"
q --all-linear --scheme torch-symmetric --granularity channel --out "$out/sym-channel.safetensors" --fake-quant "$out/sym-fake.safetensors"
q --all-linear --scheme torch-symmetric --granularity channel --out "$out/sym-channel.h5"
q --all-linear --scheme torch-affine --dtype uint8 --granularity channel --out "$out/affine-u8.h5"
q --all-linear --scheme narrow-symmetric --granularity group:32 --out "$out/narrow-group/"
q --all-linear --scheme q8_0 --out "$out/q8_0.h5"
q --all-linear --scheme seed --bits 4 --out "$out/seed4/"
q --all-linear --scheme torch-affine --calib percentile:99.9 --out "$out/pct.h5"
q --all-linear --scheme narrow-symmetric --calib manual:-0.05,0.05 --out "$out/manual.safetensors"
q --tensor transformer.wpe.weight --tensor transformer.ln_f.weight --scheme torch-affine --out "$out/misc.h5"

echo "+ h5dump -H seed.h5"
h5dump -H "$out/seed.h5" > "$out/seed.h5.txt"
for want in 'ATTRIBUTE "format"' 'ATTRIBUTE "format_version"' 'ATTRIBUTE "source"' 'ATTRIBUTE "source_format"' \
            'GROUP "tensors"' 'GROUP "transformer.h.0.attn.c_attn.weight"' 'DATASET "q"' 'DATASET "scale"' \
            'DATASET "zero_point"' 'DATASET "bias"' 'H5T_STD_I8LE' 'H5T_IEEE_F32LE' 'H5T_STD_I32LE' \
            'ATTRIBUTE "scheme"' 'ATTRIBUTE "sqnr_db"'; do
  grep -qF "$want" "$out/seed.h5.txt" || { echo "interop: h5dump -H shows no $want" >&2; exit 1; }
done
# (into files first: grep -q closing the pipe early would fail the pipeline under pipefail)
h5dump -A -a /format "$out/seed.h5" > "$out/format.txt"
grep -qF '"quantlens-int8"' "$out/format.txt" || { echo "interop: format attribute is not quantlens-int8" >&2; exit 1; }
h5dump -H "$out/affine-u8.h5" > "$out/affine.txt"
grep -qF 'H5T_STD_U8LE' "$out/affine.txt" || { echo "interop: uint8 export is not H5T_STD_U8LE" >&2; exit 1; }

echo "+ check_exports.py"
"$py" tests/scripts/check_exports.py "$model" \
  "$out/seed.h5" "$out/seed.safetensors" "$out/seed-fake.safetensors" \
  "$out/sym-channel.safetensors" "$out/sym-channel.h5" "$out/sym-fake.safetensors" \
  "$out/affine-u8.h5" "$out/narrow-group" "$out/q8_0.h5" "$out/seed4" "$out/misc.h5" "$out/pct.h5" "$out/manual.safetensors"
echo "interop: ok"
