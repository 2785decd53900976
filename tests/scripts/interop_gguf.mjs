// Greedy-decodes with llama.cpp (node-llama-cpp's prebuilt CPU build, no GPU, nothing built
// or downloaded) and prints one JSON line per model: the prompt's tokens and the first N
// generated token ids. interop_gguf.sh compares them between an export and its source.
//
//   node tests/scripts/interop_gguf.mjs [--tokens N] [--prompt TEXT] MODEL.gguf...
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const entry = path.join(here, "..", "clients", "node_modules", "node-llama-cpp", "dist", "index.js");
const { getLlama } = await import(pathToFileURL(entry).href);

const args = process.argv.slice(2);
let n = 20;
let prompt = "Once upon a time";
const models = [];
for (let i = 0; i < args.length; ++i) {
    if (args[i] === "--tokens") n = Number(args[++i]);
    else if (args[i] === "--prompt") prompt = args[++i];
    else models.push(args[i]);
}
if (models.length === 0) {
    console.error("usage: node interop_gguf.mjs [--tokens N] [--prompt TEXT] MODEL.gguf...");
    process.exit(2);
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
for (const modelPath of models) {
    const model = await llama.loadModel({ modelPath });
    const ctx = await model.createContext({ contextSize: 256, threads: 1 });
    const tokens = model.tokenize(prompt);
    const out = [];
    for await (const t of ctx.getSequence().evaluate(tokens, { temperature: 0 })) {
        out.push(t);
        if (out.length >= n) break;
    }
    console.log(JSON.stringify({ model: modelPath, prompt: Array.from(tokens), generated: out,
                                 text: model.detokenize(out) }));
    await ctx.dispose();
    await model.dispose();
}
await llama.dispose();
