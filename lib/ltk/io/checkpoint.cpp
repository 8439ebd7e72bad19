#include "ltk/io/checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/serialize.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "ltk/core/error.h"
#include "ltk/core/files.h"

namespace ltk {

namespace fs = std::filesystem;

namespace {

std::map<std::string, torch::Tensor> named_state(const torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) state[p.key()] = p.value();
  for (const auto& b : model.named_buffers(/*recurse=*/true)) state[b.key()] = b.value();
  return state;
}

std::string shape_str(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

}  // namespace

void save_weights(const torch::nn::Module& model, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : named_state(model)) dict.insert(name, tensor.detach().to(torch::kCPU));
  std::vector<char> bytes = torch::pickle_save(dict);
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

std::vector<std::string> load_weights(torch::nn::Module& model, const std::string& path, bool strict) {
  if (!fs::exists(path)) throw CheckpointError("checkpoint " + path + " does not exist");
  std::map<std::string, torch::Tensor> stored;
  for (auto& [name, tensor] : read_tensor_dict(path, "an ltk weights file"))
    if (!stored.emplace(name, tensor).second)
      throw CheckpointError("checkpoint " + path + " holds " + name + " twice; is it an ltk weights file?");
  auto expected = named_state(model);
  std::vector<std::string> problems;
  for (const auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it == stored.end()) {
      problems.push_back(fmt::format("missing {} {}", name, shape_str(tensor)));
    } else if (it->second.sizes() != tensor.sizes()) {
      problems.push_back(fmt::format("{}: checkpoint {} vs model {}", name, shape_str(it->second), shape_str(tensor)));
    }
  }
  for (const auto& [name, tensor] : stored)
    if (!expected.count(name)) problems.push_back(fmt::format("unexpected {} {}", name, shape_str(tensor)));
  if (!problems.empty() && strict)
    throw CheckpointError(fmt::format("checkpoint {} does not match the model's structure ({}); it was saved "
                                      "from a different model config",
                                      path, fmt::join(problems, "; ")));
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it != stored.end() && it->second.sizes() == tensor.sizes()) tensor.copy_(it->second);
  }
  return problems;
}

void save_optimizer(torch::optim::Optimizer& optimizer, const std::string& path) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  write_file_atomic(path, out.str());
}

void load_optimizer(torch::optim::Optimizer& optimizer, const std::string& path) {
  std::string raw = read_file(path);
  check_torch_archive(raw, path);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(raw.data(), raw.size());
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    throw CheckpointError("optimizer state " + path + " cannot be loaded: " + e.what_without_backtrace());
  }
}

namespace {

uint64_t le(const std::string& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<size_t>(i)]);
  return v;
}

// A value on the stack of check_pickle's walk: only what a storage reference is made of is kept.
struct PickleValue {
  enum Kind { kOther, kMark, kString, kInt, kGlobal, kTuple } kind = kOther;
  std::string text;  // kString, kGlobal ("module name")
  int64_t number = 0;
  std::vector<PickleValue> items;  // kTuple
};

struct StorageNeed {
  std::string key;
  uint64_t bytes = 0;
};

uint64_t storage_item_size(const std::string& global) {
  static const std::map<std::string, uint64_t> sizes = {
      {"torch FloatStorage", 4},       {"torch DoubleStorage", 8},        {"torch HalfStorage", 2},
      {"torch BFloat16Storage", 2},    {"torch LongStorage", 8},          {"torch IntStorage", 4},
      {"torch ShortStorage", 2},       {"torch CharStorage", 1},          {"torch ByteStorage", 1},
      {"torch BoolStorage", 1},        {"torch ComplexFloatStorage", 8},  {"torch ComplexDoubleStorage", 16}};
  auto it = sizes.find(global);
  return it == sizes.end() ? 1 : it->second;  // a type not listed here: a lower bound
}

// Walks the opcodes of a pickle (protocol 2, as torch.save writes data.pkl) as the unpickler would,
// keeping only strings, integers, globals and tuples. It checks that every length the pickle gives
// (strings, bytes, frames) fits in what is left: LibTorch's unpickler reserves such a length before
// it reads, so one damaged length asked it for gigabytes. And it returns each storage the pickle
// refers to (persistent id ('storage', type, key, location, numel)) with the bytes it needs, since
// LibTorch takes numel from the pickle whatever the size of the record holding the data (a short
// record crashed a copy). An opcode this walk does not know ends it; the unpickler then decides.
std::vector<StorageNeed> check_pickle(const std::string& b, uint64_t at, uint64_t end,
                                      const std::function<void(const std::string&)>& bad) {
  const uint64_t begin = at;
  std::vector<StorageNeed> needs;
  std::vector<PickleValue> stack;
  std::map<uint64_t, PickleValue> memo;
  auto pop = [&]() {
    if (stack.empty()) bad("data.pkl pops an empty stack");
    // A mark is no value: LibTorch's BUILD took one as its object and freed what it never allocated
    // (found by the fuzz tests).
    if (stack.back().kind == PickleValue::kMark) bad("data.pkl takes a mark as a value");
    PickleValue v = std::move(stack.back());
    stack.pop_back();
    return v;
  };
  auto pop_mark = [&]() {
    std::vector<PickleValue> items;
    while (!stack.empty() && stack.back().kind != PickleValue::kMark) {
      items.push_back(std::move(stack.back()));
      stack.pop_back();
    }
    if (stack.empty()) bad("data.pkl has no mark where one is needed");
    stack.pop_back();
    std::reverse(items.begin(), items.end());
    return items;
  };
  // Only what a storage reference is made of is kept: a tuple of at most 5 items none of them a
  // tuple, strings of at most 256 bytes; the rest is "other". So a crafted pickle that copies a
  // value through the memo again and again, or nests tuples a million deep, stays small.
  auto push_tuple = [&](std::vector<PickleValue> items) {
    PickleValue t;
    bool flat = items.size() <= 5;
    for (const auto& item : items) flat = flat && item.kind != PickleValue::kTuple;
    if (flat) {
      t.kind = PickleValue::kTuple;
      t.items = std::move(items);
    }
    stack.push_back(std::move(t));
  };
  auto need = [&](uint64_t n) {
    if (end - at < n) bad("data.pkl ends inside a pickle opcode or a value longer than the file");
  };
  auto lenient_string = [&](uint64_t length_bytes) {
    need(length_bytes);
    const uint64_t n = le(b, at, static_cast<int>(length_bytes));
    at += length_bytes;
    need(n);
    PickleValue v;
    if (n <= 256) {
      v.kind = PickleValue::kString;
      v.text = b.substr(at, n);
    }
    at += n;
    stack.push_back(std::move(v));
  };
  auto integer = [&](int bytes, bool is_signed) {
    need(static_cast<uint64_t>(bytes));
    uint64_t raw = le(b, at, bytes);
    at += static_cast<uint64_t>(bytes);
    PickleValue v;
    v.kind = PickleValue::kInt;
    if (is_signed && bytes < 8 && bytes > 0 && (raw >> (8 * bytes - 1)) & 1) raw |= ~uint64_t{0} << (8 * bytes);
    v.number = static_cast<int64_t>(raw);
    stack.push_back(std::move(v));
  };
  auto memo_index = [&](int bytes) {
    need(static_cast<uint64_t>(bytes));
    const uint64_t i = le(b, at, bytes);
    at += static_cast<uint64_t>(bytes);
    return i;
  };
  while (at < end) {
    const unsigned char op = static_cast<unsigned char>(b[at++]);
    switch (op) {
      case '.':  // STOP
        return needs;
      case 0x80:  // PROTO
        need(1);
        at += 1;
        break;
      case 0x95:  // FRAME: a length of what follows, which is read on
        need(8);
        if (le(b, at, 8) > end - at - 8) bad("a pickle frame runs past the end of data.pkl");
        at += 8;
        break;
      case '(':  // MARK
        stack.emplace_back();
        stack.back().kind = PickleValue::kMark;
        break;
      case '}': case ']': case 'N': case 0x88: case 0x89:  // EMPTY_DICT, EMPTY_LIST, NONE, NEWTRUE, NEWFALSE
        stack.emplace_back();
        break;
      case ')':  // EMPTY_TUPLE
        push_tuple({});
        break;
      case 't':  // TUPLE
        push_tuple(pop_mark());
        break;
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        std::vector<PickleValue> items(op - 0x84);
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        push_tuple(std::move(items));
        break;
      }
      case 'X': lenient_string(4); break;   // BINUNICODE
      case 0x8c: lenient_string(1); break;  // SHORT_BINUNICODE
      case 0x8d: lenient_string(8); break;  // BINUNICODE8
      case 'T': case 'B': lenient_string(4); stack.back().kind = PickleValue::kOther; break;  // BINSTRING, BINBYTES
      case 'U': case 'C': lenient_string(1); stack.back().kind = PickleValue::kOther; break;  // SHORT_BINSTRING/BYTES
      case 'K': integer(1, false); break;  // BININT1
      case 'M': integer(2, false); break;  // BININT2
      case 'J': integer(4, true); break;   // BININT
      case 0x8a: {                         // LONG1: a length byte, then little-endian two's complement
        need(1);
        const int n = static_cast<unsigned char>(b[at++]);
        if (n > 8) {
          need(static_cast<uint64_t>(n));
          at += static_cast<uint64_t>(n);
          stack.emplace_back();
        } else {
          integer(n, true);
        }
        break;
      }
      case 'G':  // BINFLOAT
        need(8);
        at += 8;
        stack.emplace_back();
        break;
      case 'c': {  // GLOBAL "module\nname\n"
        const size_t first = b.find('\n', at);
        const size_t second = first == std::string::npos ? first : b.find('\n', first + 1);
        if (second == std::string::npos || second >= end) bad("a pickled global name runs past the end of data.pkl");
        PickleValue v;
        v.kind = PickleValue::kGlobal;
        v.text = b.substr(at, first - at) + " " + b.substr(first + 1, second - first - 1);
        at = second + 1;
        stack.push_back(std::move(v));
        break;
      }
      case 'q': case 'r': {  // BINPUT, LONG_BINPUT
        // LibTorch's memo is a vector sized by the largest index: an index of 2e9 asked for 32 GB
        // (found by the fuzz tests). A pickler numbers its memo from 0, so no index exceeds the
        // pickle's length.
        const uint64_t index = memo_index(op == 'q' ? 1 : 4);
        if (index > end - begin) bad("data.pkl stores a value under an impossible memo index");
        memo[index] = stack.empty() ? PickleValue{} : stack.back();
        break;
      }
      case 0x94: memo[memo.size()] = stack.empty() ? PickleValue{} : stack.back(); break;   // MEMOIZE
      case 'h': case 'j': {  // BINGET, LONG_BINGET
        auto it = memo.find(memo_index(op == 'h' ? 1 : 4));
        if (it == memo.end()) bad("data.pkl refers to a value it never stored");
        stack.push_back(it->second);
        break;
      }
      case 'Q': {  // BINPERSID: torch's storage reference
        PickleValue id = pop();
        const auto& t = id.items;
        if (id.kind == PickleValue::kTuple && t.size() == 5 && t[0].kind == PickleValue::kString && t[0].text == "storage" &&
            t[1].kind == PickleValue::kGlobal && t[2].kind == PickleValue::kString && t[4].kind == PickleValue::kInt) {
          const uint64_t item = storage_item_size(t[1].text);
          if (t[4].number < 0 || static_cast<uint64_t>(t[4].number) > (uint64_t{1} << 60) / item)
            bad("a storage of data.pkl has an impossible size");
          needs.push_back({t[2].text, static_cast<uint64_t>(t[4].number) * item});
        }
        stack.emplace_back();
        break;
      }
      case 'R':  // REDUCE
        pop();
        pop();
        stack.emplace_back();
        break;
      case 0x81:  // NEWOBJ
        pop();
        pop();
        stack.emplace_back();
        break;
      case 0x93: {  // STACK_GLOBAL: module and name from the stack (protocol 4)
        PickleValue name = pop(), module = pop();
        PickleValue v;
        if (module.kind == PickleValue::kString && name.kind == PickleValue::kString) {
          v.kind = PickleValue::kGlobal;
          v.text = module.text + " " + name.text;
        }
        stack.push_back(std::move(v));
        break;
      }
      case 'b': case 's':  // BUILD, SETITEM: pop the argument(s), the object stays
        pop();
        if (op == 's') pop();
        break;
      case 'a':  // APPEND
        pop();
        break;
      case 'u': case 'e':  // SETITEMS, APPENDS
        pop_mark();
        break;
      case '0':  // POP
        pop();
        break;
      default:
        return needs;  // not an opcode torch.save writes: the unpickler decides
    }
  }
  return needs;
}

}  // namespace

void check_torch_archive(const std::string& b, const std::string& path) {
  auto bad = [&](const std::string& why) {
    throw CheckpointError(path + ": " + why + "; the file is truncated or damaged, or was not written by torch.save");
  };
  const uint64_t n = b.size();
  if (n < 22 || b.compare(0, 4, "PK\x03\x04") != 0) bad("not a zip archive");
  // The end of central directory record: the last one in the final 64 KiB + 22 bytes (its comment).
  uint64_t eocd = n;
  for (uint64_t i = n - 22 + 1, stop = n > 65557 ? n - 65557 : 0; i-- > stop;)
    if (le(b, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == n) bad("no end of central directory record");
  if (le(b, eocd + 4, 2) != 0 || le(b, eocd + 6, 2) != 0) bad("a multi-part archive");
  if (eocd + 22 + le(b, eocd + 20, 2) > n) bad("the archive comment runs past the end");
  uint64_t entries = le(b, eocd + 10, 2), cd_size = le(b, eocd + 12, 4), cd_off = le(b, eocd + 16, 4);
  uint64_t cd_limit = eocd;  // the central directory ends before the records that follow it
  const bool saturated = entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF;
  const bool locator = eocd >= 20 && le(b, eocd - 20, 4) == 0x07064b50;
  if (saturated && !locator) bad("a zip64 archive without its locator");
  if (locator) {
    // Zip64 (LibTorch's reader takes the record whenever the locator is there, saturated fields or
    // not: a record that lied read out of bounds, found by the fuzz tests).
    const uint64_t record = le(b, eocd - 20 + 8, 8);
    if (record > eocd - 20 || eocd - 20 - record < 56 || le(b, record, 4) != 0x06064b50 ||
        le(b, record + 4, 8) < 44 || le(b, record + 4, 8) > eocd - 20 - record - 12)
      bad("the zip64 end of central directory record is out of place");
    if (le(b, record + 16, 4) != 0 || le(b, record + 20, 4) != 0 || le(b, record + 24, 8) != le(b, record + 32, 8))
      bad("a multi-part archive");
    const uint64_t entries64 = le(b, record + 32, 8), cd_size64 = le(b, record + 40, 8), cd_off64 = le(b, record + 48, 8);
    if ((entries != 0xFFFF && entries != entries64) || (cd_size != 0xFFFFFFFF && cd_size != cd_size64) ||
        (cd_off != 0xFFFFFFFF && cd_off != cd_off64))
      bad("the zip64 end of central directory record contradicts the plain one");
    entries = entries64;
    cd_size = cd_size64;
    cd_off = cd_off64;
    cd_limit = record;
  }
  if (cd_off > cd_limit || cd_size > cd_limit - cd_off) bad("the central directory lies outside the file");
  if (entries == 0 || entries > cd_size / 46) bad("the central directory's entry count does not fit its size");
  const uint64_t cd_end = cd_off + cd_size;
  std::map<std::string, uint64_t> record_sizes;
  std::vector<StorageNeed> needs;
  std::string pickle_prefix;
  bool walked = false;
  uint64_t p = cd_off;
  for (uint64_t e = 0; e < entries; ++e) {
    const std::string which = "entry " + std::to_string(e + 1) + " of the central directory";
    if (cd_end - p < 46 || le(b, p, 4) != 0x02014b50) bad(which + " is damaged");
    const uint64_t name = le(b, p + 28, 2), extra = le(b, p + 30, 2), comment = le(b, p + 32, 2);
    const uint64_t next = p + 46 + name + extra + comment;
    if (next > cd_end) bad(which + " runs past the central directory");
    if (le(b, p + 8, 2) & 1) bad(which + " is encrypted");
    uint64_t csize = le(b, p + 20, 4), usize = le(b, p + 24, 4), local = le(b, p + 42, 4);
    // Zip64 sizes and offset, in the order they are replaced, from the extra field's record 0x0001.
    for (uint64_t x = p + 46 + name, x_end = x + extra; x + 4 <= x_end;) {
      const uint64_t id = le(b, x, 2), size = le(b, x + 2, 2);
      if (x + 4 + size > x_end) bad(which + " has a damaged extra field");
      if (id == 1) {
        uint64_t at = x + 4;
        for (uint64_t* field : {&usize, &csize, &local}) {
          if (*field != 0xFFFFFFFF) continue;
          if (at + 8 > x + 4 + size) bad(which + " lacks a zip64 size");
          *field = le(b, at, 8);
          at += 8;
        }
      }
      x += 4 + size;
    }
    if (local > cd_off || cd_off - local < 30 || le(b, local, 4) != 0x04034b50)
      bad(which + " points at no local file header");
    const uint64_t data = local + 30 + le(b, local + 26, 2) + le(b, local + 28, 2);
    if (data > cd_off || csize > cd_off - data) bad(which + "'s data runs past the file");
    const uint64_t method = le(b, p + 10, 2);
    if (method != 0 && method != 8) bad(which + " has an unknown compression method");
    if (method == 0 && usize != csize) bad(which + " is stored with two different sizes");
    const std::string entry_name = b.substr(p + 46, name);
    if (!record_sizes.emplace(entry_name, usize).second) bad("the archive holds " + entry_name + " twice");
    // LibTorch reads ARCHIVE/data.pkl, ARCHIVE being the first entry's directory.
    if (e == 0) pickle_prefix = entry_name.substr(0, entry_name.find('/') + 1);
    if (entry_name == pickle_prefix + "data.pkl") {
      if (method != 0) bad("data.pkl is compressed; torch.save stores it");
      needs = check_pickle(b, data, data + csize, bad);
      walked = true;
    }
    p = next;
  }
  if (!walked) bad("the archive has no data.pkl");
  for (const auto& need : needs) {
    auto it = record_sizes.find(pickle_prefix + "data/" + need.key);
    if (it == record_sizes.end()) bad("the data of storage " + need.key + " is missing");
    if (it->second < need.bytes)
      bad("storage " + need.key + " needs " + std::to_string(need.bytes) + " bytes and its record holds " +
          std::to_string(it->second));
  }
}

std::vector<std::pair<std::string, torch::Tensor>> read_tensor_dict(const std::string& path, const std::string& what) {
  std::string raw = read_file(path);
  check_torch_archive(raw, path);
  c10::IValue value;
  try {
    value = torch::pickle_load(std::vector<char>(raw.begin(), raw.end()));
  } catch (const std::exception& e) {
    std::string why = e.what();
    throw CheckpointError(path + " cannot be read (" + why.substr(0, why.find('\n')) + "); is it " + what + "?");
  }
  if (!value.isGenericDict()) throw CheckpointError(path + " holds no name -> tensor dictionary; is it " + what + "?");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor())
      throw CheckpointError(path + ": entries must map names to tensors; is it " + what + "?");
    const torch::Tensor& t = item.value().toTensor();
    // The view must lie inside its storage: LibTorch does not check what a damaged file says (a
    // storage record shorter than its tensors crashed a copy, found by the fuzz tests).
    if (t.numel() > 0) {
      bool fits = t.storage_offset() >= 0 && t.layout() == torch::kStrided && t.has_storage();
      uint64_t last = fits ? static_cast<uint64_t>(t.storage_offset()) : 0, step = 0, bytes = 0;
      for (int64_t d = 0; fits && d < t.dim(); ++d)
        fits = t.stride(d) >= 0 &&
               !__builtin_mul_overflow(static_cast<uint64_t>(t.size(d) - 1), static_cast<uint64_t>(t.stride(d)), &step) &&
               !__builtin_add_overflow(last, step, &last);
      fits = fits && !__builtin_add_overflow(last, uint64_t{1}, &last) &&
             !__builtin_mul_overflow(last, static_cast<uint64_t>(t.element_size()), &bytes);
      if (!fits || bytes > t.storage().nbytes() || (t.storage().nbytes() > 0 && !t.storage().data()))
        throw CheckpointError(path + ": tensor " + item.key().toStringRef() + " is larger than its stored data; the "
                              "file is truncated or damaged");
    }
    // Quantized and complex tensors are no weights ltk (or a Hugging Face BERT) has: a copy into a
    // float parameter threw a bare c10::Error (found by the fuzz tests).
    if (t.is_quantized() || t.is_complex())
      throw CheckpointError(path + ": tensor " + item.key().toStringRef() + " is " + std::string(t.dtype().name()) +
                            ", which no ltk model holds; is it " + what + "?");
    out.emplace_back(item.key().toStringRef(), t);
  }
  return out;
}

}  // namespace ltk
