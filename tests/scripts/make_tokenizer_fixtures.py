#!/usr/bin/python3
"""Reference tokenizations by python's sentencepiece (Debian python3-sentencepiece 0.1.97,
the same C++ library as libsentencepiece) for tst_tokenizer and tst_cli_activations.

Writes into tests/data/tokenizer/:
  lines.txt               the text lines tokenized below (spaces, a tab, punctuation, digits,
                          accents, CJK, an emoji, NFKC-sensitive ligatures and full-width forms)
  unigram/tokenizer.model a small unigram model trained here by SentencePieceTrainer (NFKC
                          normalisation, byte fallback), as a Hugging Face folder holds one
  unigram_ids.jsonl       {"text", "ids"} per line of lines.txt, encoded by that model, no BOS
  stories260K_ids.jsonl   {"text", "ids"} per line, encoded with ../shared/models/stories260K.gguf's
                          vocabulary: its tokens/scores/types put into a ModelProto by field
                          *name* (sentencepiece_model_pb2), BPE, byte fallback, identity
                          normalisation, spaces kept, as llama.cpp tokenizes. The script checks
                          these ids against llama.cpp's own (tests/data/activations/
                          stories260K_llamacpp_tokens.jsonl) where the lines overlap.
  stories260K_calib_tokens.txt  calib_sentences.txt's lines as BOS + ids: the --calib-tokens
                          twin of --calib-text for tst_cli_activations.

Run: /usr/bin/python3 tests/scripts/make_tokenizer_fixtures.py
"""
import json
import os
import struct
import sys
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")
STORIES = os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf")
CALIB = os.path.join(ROOT, "tests", "data", "activations", "calib_sentences.txt")
LLAMACPP = os.path.join(ROOT, "tests", "data", "activations", "stories260K_llamacpp_tokens.jsonl")

LINES = [
    "Once upon a time, there was a little girl named Lily.",
    "  Two leading spaces,  two inner  spaces and a trailing one ",
    "A tab\there, \"quotes\", (brackets) and 3.14 + 42 = 45.14!",
    "Über naïve café – 日本語 😀",
    "The ﬁsh saw ＡＢＣ and ① in the pond.",
    "x",
]

# Training text for the unigram model: small and fixed, so the model is small.
CORPUS = """Once upon a time, there was a little girl named Lily. She loved to play outside.
One day, she saw a big red ball in the park. She ran to the ball and picked it up.
Tom and Sue went to the park. They saw a big dog. The dog was happy and wagged its tail.
The cat sat on the mat. The sun was warm and the sky was blue. Lily smiled.
"Can I have 3 apples?" asked Tom. "Yes," said Mom, "but share them with Sue."
They played all day and went home when it was dark. The end.
""" * 4


def gguf_vocab(path):
    with open(path, "rb") as f:
        b = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = b[pos:pos + n]
        pos += n
        return s.decode("utf-8")

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert b[:4] == b"GGUF"
    pos = 4
    take("<I")
    take("<Q")
    kv = {}
    for _ in range(take("<Q")):
        key = string()
        kv[key] = value(take("<I"))
    return kv


def stories_processor():
    kv = gguf_vocab(STORIES)
    assert kv["tokenizer.ggml.model"] == "llama"
    m = pb.ModelProto()
    for tok, score, typ in zip(kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"], kv["tokenizer.ggml.token_type"]):
        p = m.pieces.add()
        p.piece, p.score, p.type = tok, score, typ
    t = m.trainer_spec
    t.model_type = pb.TrainerSpec.BPE
    t.vocab_size = len(m.pieces)
    t.byte_fallback = True
    t.unk_id = kv.get("tokenizer.ggml.unknown_token_id", 0)
    t.bos_id = kv.get("tokenizer.ggml.bos_token_id", 1)
    t.eos_id = kv.get("tokenizer.ggml.eos_token_id", 2)
    t.pad_id = -1
    n = m.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = kv.get("tokenizer.ggml.add_space_prefix", True)
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp, t.bos_id


def write_jsonl(path, sp, lines):
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps({"text": line, "ids": sp.encode(line)}, ensure_ascii=False) + "\n")


def main():
    os.makedirs(os.path.join(OUT, "unigram"), exist_ok=True)
    with open(os.path.join(OUT, "lines.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(LINES) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(CORPUS)
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(tmp, "u"), vocab_size=300,
                                       model_type="unigram", byte_fallback=True, num_threads=1,
                                       character_coverage=1.0, minloglevel=2)
        with open(os.path.join(tmp, "u.model"), "rb") as src, open(os.path.join(OUT, "unigram", "tokenizer.model"), "wb") as dst:
            dst.write(src.read())
    uni = spm.SentencePieceProcessor(model_file=os.path.join(OUT, "unigram", "tokenizer.model"))
    write_jsonl(os.path.join(OUT, "unigram_ids.jsonl"), uni, LINES)
    print("unigram: %d pieces, bos %d" % (uni.get_piece_size(), uni.bos_id()))

    sp, bos = stories_processor()
    write_jsonl(os.path.join(OUT, "stories260K_ids.jsonl"), sp, LINES)
    # The same construction must reproduce llama.cpp's tokenization.
    checked = 0
    with open(LLAMACPP, encoding="utf-8") as f:
        for row in map(json.loads, f):
            assert sp.encode(row["text"]) == row["ids"], row["text"]
            checked += 1
    print("stories260K: %d pieces, bos %d; %d llama.cpp tokenizations reproduced" % (sp.get_piece_size(), bos, checked))
    with open(CALIB, encoding="utf-8") as f, open(os.path.join(OUT, "stories260K_calib_tokens.txt"), "w") as out:
        for line in f.read().split("\n"):
            line = line.rstrip("\r")
            if line.strip(" \t"):
                out.write(" ".join(str(i) for i in [bos] + sp.encode(line)) + "\n")


if __name__ == "__main__":
    sys.exit(main())
