// ONNX Runtime (onnxruntime-node, tests/clients) runs a Quantlens ONNX QDQ export and
// compares it with the fake-quant float model (the same dequantized weights as float
// initializers) and with the original float model, on seeded uniform [0, 1) inputs.
//   node interop_onnx.mjs FLOAT.onnx QDQ.onnx FAKE.onnx [--rounds N]
// The QDQ model runs twice: with ORT's basic graph optimizations (DequantizeLinear, then
// the float op) and with its default ones, where ORT may fuse DequantizeLinear + MatMul
// into its own int8 kernel (com.microsoft MatMulNBits), which rounds differently.
// Prints one JSON line; exits 1 unless the basic run equals fake-quant within float
// rounding (|diff| <= 1e-5 * max|y|), the default run is within 1% of max|y| of it,
// and both pick the float model's top class.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'clients', 'package.json'));
const ort = require('onnxruntime-node');

const args = process.argv.slice(2);
let rounds = 8;
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--rounds') rounds = Number(args[++i]);
  else files.push(args[i]);
}
if (files.length !== 3) {
  console.error('usage: node interop_onnx.mjs FLOAT.onnx QDQ.onnx FAKE.onnx [--rounds N]');
  process.exit(2);
}
const [floatPath, qdqPath, fakePath] = files;

let seed = 18n;
function uniform() {  // 64-bit LCG (Knuth's MMIX constants), top 24 bits
  seed = (seed * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
  return Number(seed >> 40n) / 16777216;
}

const sessions = {};
for (const [k, p, level] of [['float', floatPath, 'all'], ['qdq', qdqPath, 'basic'], ['qdqAll', qdqPath, 'all'], ['fake', fakePath, 'basic']])
  sessions[k] = await ort.InferenceSession.create(p, { logSeverityLevel: 3, graphOptimizationLevel: level });  // errors only: old-style
// fixtures list initializers as graph inputs, which ORT warns about once per tensor
const s = sessions.qdq;
const inName = s.inputNames[0];
const meta = s.inputMetadata ? s.inputMetadata[0] : null;
const dims = (meta && meta.shape ? meta.shape : []).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
const numel = dims.reduce((a, b) => a * b, 1);

let maxQdqFake = 0, maxAllFake = 0, maxQdqFloat = 0, maxAbsY = 0, sameTop = 0, exactRounds = 0;
for (let r = 0; r < rounds; ++r) {
  const x = new Float32Array(numel);
  for (let i = 0; i < numel; ++i) x[i] = uniform();
  const feeds = { [inName]: new ort.Tensor('float32', x, dims) };
  const y = {};
  for (const k of Object.keys(sessions)) {
    const out = await sessions[k].run(feeds);
    y[k] = out[sessions[k].outputNames[0]].data;
  }
  let exact = true;
  const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);
  for (let i = 0; i < y.qdq.length; ++i) {
    maxAbsY = Math.max(maxAbsY, Math.abs(y.float[i]));
    maxQdqFake = Math.max(maxQdqFake, Math.abs(y.qdq[i] - y.fake[i]));
    maxAllFake = Math.max(maxAllFake, Math.abs(y.qdqAll[i] - y.fake[i]));
    maxQdqFloat = Math.max(maxQdqFloat, Math.abs(y.qdq[i] - y.float[i]));
    if (y.qdq[i] !== y.fake[i]) exact = false;
  }
  if (exact) ++exactRounds;
  if (argmax(y.qdq) === argmax(y.float) && argmax(y.qdqAll) === argmax(y.float)) ++sameTop;
}
const ok = maxQdqFake <= 1e-5 * Math.max(1, maxAbsY) && maxAllFake <= 1e-2 * maxAbsY && sameTop === rounds;
console.log(JSON.stringify({
  model: path.basename(qdqPath), input: inName, shape: dims, rounds, ort: ort.env.versions ? ort.env.versions.common : undefined,
  max_abs_qdq_vs_fake_quant: maxQdqFake, bit_identical_rounds: exactRounds, max_abs_qdq_default_opt_vs_fake_quant: maxAllFake,
  max_abs_qdq_vs_float: maxQdqFloat, max_abs_float_output: maxAbsY, same_top_class_as_float: sameTop, ok,
}));
process.exit(ok ? 0 : 1);
