// Reference tokenizations by llama.cpp (node-llama-cpp): one JSON line per input line,
// {"text": ..., "ids": [...]} with no BOS, for tst_tokenizer's fixture.
// Run: node tests/scripts/tokenize_llama.mjs MODEL.gguf < sentences.txt
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

// The test clients live in tests/clients (npm ci there), not beside this script.
const entry = new URL("../clients/node_modules/node-llama-cpp/dist/index.js", import.meta.url);
const { getLlama } = await import(pathToFileURL(entry.pathname).href);

const llama = await getLlama({ gpu: false, build: "never" });
const model = await llama.loadModel({ modelPath: process.argv[2], vocabOnly: true });
for (const line of readFileSync(0, "utf8").split("\n")) {
  if (line.length === 0) continue;
  console.log(JSON.stringify({ text: line, ids: Array.from(model.tokenize(line)) }));
}
await model.dispose();
