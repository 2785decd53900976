#!/usr/bin/env bash
# Interop: compressed-tensors exports written by quantlens-cli, read back by
# tests/scripts/read_compressed_tensors.py (numpy, written from the format's sources),
# whose dequantized weights must equal quantlens-cli's --fake-quant copy bit for bit.
# No compressed-tensors / vLLM runtime is installable here: loading in vLLM is not tried.
# Run from .ci/run as: bash tests/scripts/interop_compressed_tensors.sh BUILD_DIR  (~2 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
cli="$build/app/quantlens-cli"
py=/usr/bin/python3
src=tests/data/encoder/llama3_tiny   # Hugging Face Llama folder: config.json + model.safetensors
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

case_() {
  local name=$1; shift
  echo "+ $name: quantlens-cli quantize $src --all-linear $* --format compressed-tensors"
  "$cli" quantize "$src" --all-linear "$@" --format compressed-tensors --out "$out/$name" \
    --fake-quant "$out/$name-fake.safetensors" >/dev/null 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
  "$py" tests/scripts/read_compressed_tensors.py "$out/$name" --expect "$out/$name-fake.safetensors"
}
case_ w8a8-channel --scheme torch-symmetric --granularity channel
case_ w8a8-tensor --scheme narrow-symmetric
case_ w4a16-group8 --scheme torch-symmetric --bits 4 --granularity group:8
case_ w4a16-channel --scheme seed --bits 4 --granularity channel
echo "interop_compressed_tensors: ok"
