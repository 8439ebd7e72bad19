// The vocabulary loaders (vocab.txt as ltk writes it, and a BERT-style WordPiece vocab.txt), and the
// labels.txt loader: the first byte picks which. Checks: what loads saves and loads back the same.
#include "../fuzz.h"
#include "ltk/data/labels.h"
#include "ltk/data/vocab.h"

LTK_FUZZ_TARGET(vocab) {
  uint8_t which = ltk::fuzz::take_byte(input) % 3;
  std::string path = ltk::fuzz::scratch_file("vocab.txt", input);
  std::string again = ltk::fuzz::scratch_dir() + "/again.txt";
  if (which == 2) {
    ltk::LabelMap m = ltk::LabelMap::load(path);
    m.save(again);
    ltk::LabelMap back = ltk::LabelMap::load(again);
    ltk::fuzz::fuzz_check(back.names() == m.names(), "labels.txt does not load back as saved");
    for (int64_t i = 0; i < m.size(); ++i) ltk::fuzz::fuzz_check(m.find(m.name(i)) == i, "a label does not find its own id");
    return;
  }
  ltk::Vocabulary v = which == 0 ? ltk::Vocabulary::load(path) : ltk::Vocabulary::load_wordpiece(path);
  v.save(again);
  ltk::Vocabulary back = which == 0 ? ltk::Vocabulary::load(again) : ltk::Vocabulary::load_wordpiece(again);
  ltk::fuzz::fuzz_check(back.size() == v.size(), "vocab.txt does not load back with as many tokens");
  for (int32_t id = 0; id < v.size(); ++id) {
    ltk::fuzz::fuzz_check(back.token(id) == v.token(id), "vocab.txt does not load back with the same tokens");
    ltk::fuzz::fuzz_check(back.count(id) == v.count(id), "vocab.txt does not load back with the same counts");
    if (id >= 2 || v.fixed()) ltk::fuzz::fuzz_check(v.id(v.token(id)) == id, "a token does not find its own id: " + v.token(id));
  }
  ltk::fuzz::fuzz_check(v.pad_id() >= 0 && v.pad_id() < v.size() && v.unk_id() >= 0 && v.unk_id() < v.size(),
                        "pad or unk id outside the vocabulary");
}
