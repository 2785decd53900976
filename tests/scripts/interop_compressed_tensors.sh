#!/usr/bin/env bash
# Interop: compressed-tensors exports written by quantlens-cli (each scheme a plan's
# activations choose: W8A8 dynamic per token / per tensor, W8A16, W4A16, W8A8 static), read back by
# tests/scripts/read_compressed_tensors.py (numpy, written from the format's sources),
# whose dequantized weights must equal quantlens-cli's --fake-quant copy bit for bit; W8A8
# static exports' input scales and zero points checked by tests/scripts/check_ct_static.py.
# No compressed-tensors / vLLM runtime is installable here: loading in vLLM is not tried.
# Run from .ci/run as: bash tests/scripts/interop_compressed_tensors.sh BUILD_DIR  (~5 s of CPU, most of it importing torch once)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
cli="$build/app/quantlens-cli"
py=/usr/bin/python3
src=tests/data/encoder/llama3_tiny   # Hugging Face Llama folder: config.json + model.safetensors
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Without --plan no activations are planned: the format's usual W8A8 dynamic per token / W4A16.
case_() {
  local name=$1 scheme=$2; shift 2
  echo "+ $name: quantlens-cli quantize $src --all-linear $* --format compressed-tensors"
  "$cli" quantize "$src" --all-linear "$@" --format compressed-tensors --out "$out/$name" \
    --fake-quant "$out/$name-fake.safetensors" >/dev/null 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
  "$py" tests/scripts/read_compressed_tensors.py "$out/$name" --expect "$out/$name-fake.safetensors" --scheme "$scheme"
}
case_ w8a8-channel W8A8-dynamic-token --scheme torch-symmetric --granularity channel
case_ w8a8-tensor W8A8-dynamic-token --scheme narrow-symmetric
case_ w4a16-group8 W4A16 --scheme torch-symmetric --bits 4 --granularity group:8
case_ w4a16-channel W4A16 --scheme seed --bits 4 --granularity channel

# W8A8 static: ranges calibrated by Quantlens (sensitivity --act static --save-plan), exported
# with input_scale / input_zero_point, checked against quantize --json and PyTorch's
# ChooseQuantizationParams, and one layer run by `quantlens-cli run --plan` against the
# export's fake quantization (tests/scripts/check_ct_static.py).
"$py" -c "import numpy as np; r = np.random.RandomState(1)
open('$out/calib.txt', 'w').write(''.join(' '.join(map(str, r.randint(0, 60, 24))) + '\n' for _ in range(4)))"
echo "+ quantlens-cli sensitivity $src --preset default --act static --calib-tokens calib.txt --save-plan static.json"
"$cli" sensitivity "$src" --preset default --act static --calib-tokens "$out/calib.txt" --random 16 \
  --save-plan "$out/static.json" --json >/dev/null 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
# The same ranges widened to [-2^k, 2^k] without reduce_range: zero point 128, a symmetric scheme.
"$py" -c "import json, math; d = json.load(open('$out/static.json')); a = d['activations']; a['reduce_range'] = False
a['ranges'] = {k: [-2.0 ** math.ceil(math.log2(max(-lo, hi))), 2.0 ** math.ceil(math.log2(max(-lo, hi)))] for k, (lo, hi) in a['ranges'].items()}
json.dump(d, open('$out/static-sym.json', 'w'))"
# A plan's own activations choose the scheme: none -> W8A16 / W4A16 (weight-only,
# pack-quantized), per-token -> W8A8 dynamic per token, per-tensor -> W8A8 dynamic per tensor
# (written as planned, with the warning that vLLM refuses it). The same plan file as above
# with the activation mode and the default spec changed.
"$py" -c "import json; d = json.load(open('$out/static.json'))
for mode, bits, gran in (('none', 8, 'channel'), ('none', 4, 'group:8'), ('per-token', 8, 'channel'), ('per-tensor', 8, 'channel')):
    e = dict(d, layers={}, methods={}, activations={'mode': mode, 'reduce_range': True})
    e['default'] = dict(d['default'], scheme='torch-symmetric', bits=bits, granularity=gran)
    json.dump(e, open('$out/plan-%s-%d.json' % (mode, bits), 'w'))"
plan_case() {
  local plan=$1 scheme=$2 warning=$3
  echo "+ $scheme: quantlens-cli quantize $src --plan $(basename "$plan") --format compressed-tensors"
  "$cli" quantize "$src" --plan "$plan" --format compressed-tensors --out "$out/$scheme" \
    --fake-quant "$out/$scheme-fake.safetensors" >/dev/null 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
  "$py" tests/scripts/read_compressed_tensors.py "$out/$scheme" --expect "$out/$scheme-fake.safetensors" --scheme "$scheme"
  if [ -n "$warning" ]; then
    grep -q "$warning" "$out/stderr" || { echo "no warning '$warning':"; cat "$out/stderr"; exit 1; }
  elif grep -q "^warning:" "$out/stderr"; then
    cat "$out/stderr"; exit 1
  fi
}
plan_case "$out/plan-none-8.json" W8A16 ""
plan_case "$out/plan-none-4.json" W4A16 ""
plan_case "$out/plan-per-token-8.json" W8A8-dynamic-token ""
plan_case "$out/plan-per-tensor-8.json" W8A8-dynamic-tensor "vLLM will refuse this checkpoint"

layer=model.layers.0.mlp.down_proj
static_case() {
  local name=$1 plan=$2 symmetric=$3
  echo "+ $name: quantlens-cli quantize $src --plan $(basename "$plan") --format compressed-tensors"
  "$cli" quantize "$src" --plan "$plan" --format compressed-tensors --out "$out/$name" \
    --fake-quant "$out/$name-fake.safetensors" --json >"$out/$name.json" 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
  "$py" tests/scripts/read_compressed_tensors.py "$out/$name" --expect "$out/$name-fake.safetensors" --scheme W8A8-static
  "$py" -c "import json, sys; a = json.load(open('$out/$name/config.json'))['quantization_config']['config_groups']['group_0']['input_activations']
sys.exit(0 if a['symmetric'] == $symmetric else 'input_activations.symmetric is %s, not $symmetric' % a['symmetric'])"
  # Inputs beyond both ends of the layer's range, so the clamps are exercised too.
  "$py" -c "import json, numpy as np; lo, hi = json.load(open('$plan'))['activations']['ranges']['$layer.weight']
r = np.random.RandomState(2); x = (r.randn(16, 88) * (hi - lo) / 3 + (hi + lo) / 2).astype(np.float32)
x[:, :4] = [3 * lo, 3 * hi, lo, hi]; np.save('$out/x.npy', x)"
  "$cli" run "$src" --plan "$plan" --layer "$layer" --input "$out/x.npy" --out "$out/$name-y.npy" >/dev/null \
    2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
  mv "$out/x.npy" "$out/$name-x.npy"
  cases+=(--case "$out/$name" "$plan" "$out/$name.json" "$layer" "$out/$name-x.npy" "$out/$name-y.npy")
}
cases=()
static_case w8a8-static "$out/static.json" False
static_case w8a8-static-sym "$out/static-sym.json" True
"$py" tests/scripts/check_ct_static.py "${cases[@]}"

# A static plan missing one layer's range is refused before anything is written.
"$py" -c "import json; d = json.load(open('$out/static.json')); del d['activations']['ranges']['$layer.weight']
json.dump(d, open('$out/static-missing.json', 'w'))"
if "$cli" quantize "$src" --plan "$out/static-missing.json" --format compressed-tensors --out "$out/missing" \
     >/dev/null 2>"$out/stderr"; then
  echo "a static plan without $layer's range was exported"; exit 1
fi
grep -q "no input range for '$layer.weight'" "$out/stderr" || { cat "$out/stderr"; exit 1; }
[ ! -e "$out/missing" ] || { echo "the refused export left $out/missing behind"; exit 1; }
echo "+ refused: $(cat "$out/stderr")"
echo "interop_compressed_tensors: ok"
