#!/usr/bin/env bash
# Writes every int8 export format from the same inputs with two quantlens-cli builds and
# checks that the outputs are byte for byte the same (issue 21: the streaming exports must
# not change a byte). Usage: export_identical.sh OLD_CLI NEW_CLI
# e.g. tests/scripts/export_identical.sh /work/main/build/app/quantlens-cli build/app/quantlens-cli
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$1 new=$2
py=/usr/bin/python3
hf=tests/data/encoder/llama3_tiny        # Hugging Face Llama folder (bf16)
onnx=tests/data/onnx/unpacked.onnx
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$py" -c "import numpy as np; r = np.random.RandomState(1)
open('$out/calib.txt', 'w').write(''.join(' '.join(map(str, r.randint(0, 60, 24))) + '\n' for _ in range(4)))"
"$new" sensitivity "$hf" --preset default --act static --calib-tokens "$out/calib.txt" --random 16 \
  --save-plan "$out/static.json" --json >/dev/null 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }

fails=0
t0=$(date +%s)
both() {  # name, then quantize's arguments with OUT where the output goes
  local name=$1; shift
  for which in old new; do
    local cli=${!which} args=()
    # The same output path for both: the report and the HDF5 file name it.
    for a in "$@"; do args+=("${a//OUT/$out/run/$name}"); done
    mkdir -p "$out/$which" "$out/run"
    "$cli" quantize "${args[@]}" --json >"$out/run/$name.json" 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
    mv "$out/run/$name"* "$out/$which/"
  done
  local same=1 p
  for p in "$out/old/$name"*; do  # the export(s) and the --json report
    if [[ $p == *.h5 ]]; then
      # HDF5 stamps each object header with the second it was written: blank those.
      "$py" - "$p" "$out/new/${p#"$out/old/"}" "$t0" <<'PY' || same=0
import sys, struct, time
a, b = (bytearray(open(f, 'rb').read()) for f in sys.argv[1:3])
t0, t1 = int(sys.argv[3]), int(time.time())
if len(a) != len(b): sys.exit(1)
for i in range(len(a) - 3):
    x, y = struct.unpack_from('<I', a, i)[0], struct.unpack_from('<I', b, i)[0]
    if x != y and t0 <= x <= t1 and t0 <= y <= t1: a[i:i+4] = b[i:i+4] = bytes(4)
sys.exit(a != b)
PY
    else
      diff -r "$p" "$out/new/${p#"$out/old/"}" >/dev/null 2>&1 || same=0
    fi
  done
  if [ "$same" = 1 ]; then echo "same: $name"; else echo "DIFFERENT: $name"; fails=$((fails + 1)); fi
}
both h5-channel "$hf" --all-linear --granularity channel --out OUT.h5
both h5-affine-u8 "$hf" --all-linear --scheme torch-affine --dtype uint8 --out OUT.h5
both st-int8 "$hf" --all-linear --granularity channel --out OUT.safetensors --fake-quant OUT-fake.safetensors
both st-g4 "$hf" --all-linear --bits 4 --granularity group:8 --out OUT.safetensors
both h5-g4 "$hf" --all-linear --bits 4 --granularity group:8 --out OUT.h5
both npy-tensor "$hf" --all-linear --out OUT/
both npy-g4 "$hf" --all-linear --bits 4 --granularity group:8 --out OUT/
both ct-w8a8 "$hf" --all-linear --scheme torch-symmetric --granularity channel --format compressed-tensors --out OUT
both ct-w4a16 "$hf" --all-linear --scheme torch-symmetric --bits 4 --granularity group:8 --format compressed-tensors --out OUT
both ct-static "$hf" --plan "$out/static.json" --format compressed-tensors --out OUT
both ct-gptq "$hf" --all-linear --scheme torch-symmetric --bits 4 --granularity group:8 --method gptq \
  --calib-tokens "$out/calib.txt" --format compressed-tensors --out OUT
both h5-static "$hf" --plan "$out/static.json" --out OUT.h5
both onnx-channel "$onnx" --all-linear --granularity channel --out OUT.onnx
both onnx-u8 "$onnx" --all-linear --scheme torch-affine --dtype uint8 --out OUT.onnx
[ "$fails" = 0 ] || { echo "$fails export(s) differ"; exit 1; }
echo "every export is byte for byte the same"
