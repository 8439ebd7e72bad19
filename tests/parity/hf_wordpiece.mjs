// Tokenizes lines with Hugging Face's BertNormalizer + BertPreTokenizer + WordPiece
// (@huggingface/tokenizers) around a BERT vocab.txt; prints each line's tokens joined by U+0001.
// Usage: node hf_wordpiece.mjs vocab.txt lines.txt [lowercase: 1|0]
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "fs";

const vocab = {};
fs.readFileSync(process.argv[2], "utf8").split("\n").filter((l) => l.length).forEach((t, i) => (vocab[t] = i));
const lowercase = (process.argv[4] ?? "1") === "1";
const tokenizer = new Tokenizer({
  version: "1.0", truncation: null, padding: null, added_tokens: [],
  normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase },
  pre_tokenizer: { type: "BertPreTokenizer" }, post_processor: null,
  decoder: { type: "WordPiece", prefix: "##", cleanup: true },
  model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
}, {});
const out = [];
for (const line of fs.readFileSync(process.argv[3], "utf8").split("\n")) out.push(tokenizer.tokenize(line).join("\u0001"));
process.stdout.write(out.join("\n"));
