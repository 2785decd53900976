#!/bin/bash
# GGUF exports in llama.cpp itself (node-llama-cpp 3.21.1, tests/clients) and against
# ggml's own quantizer (libggml-base.so through ctypes):
#  1. stories260K.gguf with Q8_0 for every linear layer: the same first 20 tokens from
#     "Once upon a time" as the F32 original, every tensor's bytes equal ggml's;
#     with Q4_K, rows of 64 fall back to Q5_0 and rows of 172 to F16 (llama-quantize's rule);
#     with --scheme q4_k_m, every tensor's type and bytes equal llama.cpp's own
#     llama_model_quantize (libllama through ctypes) and it generates the same 20 tokens;
#  2. a small Llama GGUF with rows of 256 (made on the fly): Q4_K, Q6_K and the q4_k_m and
#     q5_k_m mixes load and generate 20 tokens in llama.cpp, bytes equal ggml's, and the
#     mixes' types and bytes equal llama_model_quantize's.
# Usage: tests/scripts/interop_gguf.sh BUILD_DIR     (about 30 s on 2 shared cores)
set -euo pipefail
BUILD=$(realpath "${1:?usage: interop_gguf.sh BUILD_DIR}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CLI="$BUILD/app/quantlens-cli"
MODELS="$ROOT/../shared/models"
PY=/usr/bin/python3
if [ ! -d "$ROOT/tests/clients/node_modules/node-llama-cpp" ]; then
    echo "SKIP: tests/clients/node_modules is absent (npm ci --ignore-scripts --no-audit --no-fund --prefix tests/clients)"
    exit 0
fi
[ -f "$MODELS/stories260K.gguf" ] || { echo "SKIP: ../shared/models/stories260K.gguf is absent"; exit 0; }
[ -x "$CLI" ] || { echo "no $CLI: build quantlens-cli first"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
check() {  # name, command...
    local name=$1; shift
    if "$@"; then echo "PASS: $name"; passed=$((passed + 1)); else echo "FAIL: $name"; failed=$((failed + 1)); fi
}
quiet() { "$@" > "$TMP/last.txt" || { cat "$TMP/last.txt"; return 1; }; }
gen() { node "$HERE/interop_gguf.mjs" "$@"; }
tokens_of() { $PY -c 'import json,sys; print(" ".join(map(str, json.loads(sys.stdin.readline())["generated"])))'; }

# 1. stories260K, Q8_0 on every linear layer (ffn_down's rows of 172 fall back to F16).
"$CLI" quantize "$MODELS/stories260K.gguf" --all-linear --scheme q8_0 --out "$TMP/s-q8_0.gguf" --json > "$TMP/s-q8_0.json" 2> /dev/null
$PY -c 'import json,sys,collections; d=json.load(open(sys.argv[1])); print("stories260K q8_0 types:", dict(collections.Counter(t["type"] for t in d["tensors"] if t["requested"])))' "$TMP/s-q8_0.json"
check "stories260K q8_0 bytes = ggml_quantize_chunk" quiet $PY "$HERE/check_gguf_export.py" "$MODELS/stories260K.gguf" "$TMP/s-q8_0.gguf"
"$CLI" quantize "$MODELS/stories260K.gguf" --all-linear --scheme q4_k --out "$TMP/s-q4_k.gguf" --json > "$TMP/s-q4_k.json" 2> /dev/null
"$CLI" quantize "$MODELS/stories260K.gguf" --scheme q4_k_m --out "$TMP/s-q4_k_m.gguf" > /dev/null 2>&1
check "stories260K q4_k_m types and bytes = llama_model_quantize's" \
    $PY "$HERE/check_gguf_mix.py" "$MODELS/stories260K.gguf" "$TMP/s-q4_k_m.gguf" q4_k_m "$TMP/s-ref-q4_k_m.gguf"
# One llama.cpp process for the stories files (each start costs seconds).
gen "$MODELS/stories260K.gguf" "$TMP/s-q8_0.gguf" "$TMP/s-q4_k.gguf" "$TMP/s-q4_k_m.gguf" "$TMP/s-ref-q4_k_m.gguf" \
    > "$TMP/gen-stories.txt"
ref=$(grep -F '"model":"'"$MODELS/stories260K.gguf"'"' "$TMP/gen-stories.txt" | tokens_of)
got=$(grep -F "s-q8_0.gguf" "$TMP/gen-stories.txt" | tokens_of)
echo "f32 : $ref"
echo "q8_0: $got"
check "stories260K q8_0 generates the F32 file's first 20 tokens" test "$ref" = "$got" -a "$(echo $got | wc -w)" = 20

# stories260K with Q4_K: no row is a multiple of 256, so rows of 64 fall back to Q5_0 and
# rows of 172 to F16, as llama-quantize does; it still loads and generates.
$PY -c 'import json,sys,collections; d=json.load(open(sys.argv[1])); print("stories260K q4_k types:", dict(collections.Counter(t["type"] for t in d["tensors"] if t["requested"])))' "$TMP/s-q4_k.json"
check "stories260K q4_k (fallbacks) bytes = ggml_quantize_chunk" quiet $PY "$HERE/check_gguf_export.py" "$MODELS/stories260K.gguf" "$TMP/s-q4_k.gguf"
n=$(grep -F "s-q4_k.gguf" "$TMP/gen-stories.txt" | tokens_of | wc -w)
check "stories260K q4_k loads in llama.cpp and generates 20 tokens" test "$n" = 20
ours=$(grep -F "s-q4_k_m.gguf" "$TMP/gen-stories.txt" | tokens_of)
theirs=$(grep -F "s-ref-q4_k_m.gguf" "$TMP/gen-stories.txt" | tokens_of)
echo "q4_k_m (ours)     : $ours"
echo "q4_k_m (llama.cpp): $theirs"
check "stories260K q4_k_m generates llama.cpp's own Q4_K_M file's 20 tokens" test "$ours" = "$theirs" -a "$(echo $ours | wc -w)" = 20

# 2. rows of 256: the k-quants apply everywhere.
$PY "$HERE/make_llama256_gguf.py" "$TMP/l256.gguf"
for s in q4_k q6_k; do
    "$CLI" quantize "$TMP/l256.gguf" --all-linear --scheme $s --out "$TMP/l256-$s.gguf" > /dev/null 2>&1
    check "llama256 $s bytes = ggml_quantize_chunk" quiet $PY "$HERE/check_gguf_export.py" "$TMP/l256.gguf" "$TMP/l256-$s.gguf"
done
for mix in q4_k_m q5_k_m; do
    "$CLI" quantize "$TMP/l256.gguf" --scheme $mix --out "$TMP/l256-$mix.gguf" > /dev/null 2>&1
    check "llama256 $mix types and bytes = llama_model_quantize's" $PY "$HERE/check_gguf_mix.py" "$TMP/l256.gguf" "$TMP/l256-$mix.gguf" $mix
done
gen "$TMP/l256-q4_k.gguf" "$TMP/l256-q6_k.gguf" "$TMP/l256-q4_k_m.gguf" "$TMP/l256-q5_k_m.gguf" > "$TMP/gen256.txt"
for s in q4_k q6_k q4_k_m q5_k_m; do
    n=$(grep "l256-$s.gguf" "$TMP/gen256.txt" | tokens_of | wc -w)
    check "llama256 $s loads in llama.cpp and generates 20 tokens" test "$n" = 20
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
