#!/usr/bin/env bash
# Interop: ONNX QDQ exports written by quantlens-cli, checked by python3-onnx's
# onnx.checker and run by ONNX Runtime (onnxruntime-node 1.30.0 from tests/clients),
# whose output must equal ORT's on the fake-quant float model within float rounding and
# pick the float model's top class (tests/scripts/interop_onnx.mjs).
# Run from .ci/run as: bash tests/scripts/interop_onnx.sh BUILD_DIR
# Needs: python3-onnx, python3-numpy, node, tests/clients/node_modules (npm ci --ignore-scripts).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
cli="$build/app/quantlens-cli"
py=/usr/bin/python3
if [ ! -d tests/clients/node_modules/onnxruntime-node ]; then
  echo "interop_onnx: tests/clients/node_modules is missing: npm ci --ignore-scripts --no-audit --no-fund --prefix tests/clients" >&2
  exit 1
fi
mnist=../shared/models/burn_mnist.onnx
[ -f "$mnist" ] || { echo "interop_onnx: $mnist is missing" >&2; exit 1; }
fx=tests/data/onnx/qdq
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# case NAME SOURCE quantize-args...: export, fake-quant copy, checker, ORT comparison.
case_() {
  local name=$1 src=$2; shift 2
  echo "+ $name: quantlens-cli quantize $(basename "$src") $*"
  "$cli" quantize "$src" "$@" --out "$out/$name.onnx" --fake-quant "$out/$name-fake.safetensors" >/dev/null 2>"$out/stderr" ||
    { cat "$out/stderr"; exit 1; }
  "$py" tests/scripts/onnx_fake_quant_model.py "$src" "$out/$name-fake.safetensors" "$out/$name-fake.onnx" "$out/$name.onnx"
  node tests/scripts/interop_onnx.mjs "$src" "$out/$name.onnx" "$out/$name-fake.onnx"
}
convs=(--tensor conv1.weight --tensor conv2.weight --tensor conv3.weight --tensor fc1.weight --tensor fc2.weight)
all=(--tensor conv.weight --tensor mm.weight --tensor gemm_a.weight --tensor gemm_b.weight)
case_ mnist-tensor "$mnist" "${convs[@]}" --scheme narrow-symmetric
case_ mnist-channel "$mnist" "${convs[@]}" --scheme torch-symmetric --granularity channel
case_ mnist-affine-u8 "$mnist" "${convs[@]}" --scheme torch-affine --dtype uint8 --granularity channel
case_ opset11-channel "$fx/convnet_opset11.onnx" "${all[@]}" --scheme torch-symmetric --granularity channel
case_ opset21-group8 "$fx/convnet_opset21.onnx" --all-linear --scheme narrow-symmetric --granularity group:8
case_ opset21-q8_0 "$fx/convnet_opset21.onnx" --all-linear --scheme q8_0
case_ unnamed-matmul "$fx/unnamed_matmul.onnx" --all-linear --scheme torch-symmetric --granularity channel
case_ external-channel "$fx/external/convnet_ext.onnx" "${all[@]}" --scheme torch-symmetric --granularity channel
[ -f "$out/external-channel.onnx.data" ] || { echo "interop_onnx: no external data file beside the export" >&2; exit 1; }
echo "interop_onnx: ok"
