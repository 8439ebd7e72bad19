#include "ltk/io/torch_archive.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "ltk/core/error.h"

namespace ltk {

namespace {

uint64_t le(std::string_view b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<size_t>(i)]);
  return v;
}

// A value on the stack of the pickle walk: only what a storage reference is made of is kept.
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
      {"torch FloatStorage", 4},    {"torch DoubleStorage", 8},       {"torch HalfStorage", 2},
      {"torch BFloat16Storage", 2}, {"torch LongStorage", 8},         {"torch IntStorage", 4},
      {"torch ShortStorage", 2},    {"torch CharStorage", 1},         {"torch ByteStorage", 1},
      {"torch BoolStorage", 1},     {"torch ComplexFloatStorage", 8}, {"torch ComplexDoubleStorage", 16}};
  auto it = sizes.find(global);
  return it == sizes.end() ? 1 : it->second;  // a type not listed here: a lower bound
}

/// The archive's damage, as a CheckpointError naming the file.
[[noreturn]] void bad(const std::string& path, const std::string& why) {
  throw CheckpointError(path + ": " + why + "; the file is truncated or damaged, or was not written by torch.save");
}

// Walks the opcodes of a pickle (protocol 2, as torch.save writes data.pkl) as the unpickler would,
// keeping only strings, integers, globals and tuples. It checks that every length the pickle gives
// (strings, bytes, frames) fits in what is left: LibTorch's unpickler reserves such a length before
// it reads, so one damaged length asked it for gigabytes. And it returns each storage the pickle
// refers to (persistent id ('storage', type, key, location, numel)) with the bytes it needs, since
// LibTorch takes numel from the pickle whatever the size of the record holding the data (a short
// record crashed a copy). An opcode this walk does not know ends it; the unpickler then decides.
class PickleWalk {
 public:
  PickleWalk(std::string_view bytes, uint64_t at, uint64_t end, const std::string& path)
      : b_(bytes), begin_(at), at_(at), end_(end), path_(path) {}

  std::vector<StorageNeed> run() {
    while (at_ < end_) {
      const unsigned char op = static_cast<unsigned char>(b_[at_++]);
      if (op == '.') break;                          // STOP
      if (!push_value(op) && !structure(op)) break;  // not an opcode torch.save writes: the unpickler decides
    }
    return std::move(needs_);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const { bad(path_, why); }

  PickleValue pop() {
    if (stack_.empty()) fail("data.pkl pops an empty stack");
    // A mark is no value: LibTorch's BUILD took one as its object and freed what it never allocated
    // (found by the fuzz tests).
    if (stack_.back().kind == PickleValue::kMark) fail("data.pkl takes a mark as a value");
    PickleValue v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }

  std::vector<PickleValue> pop_mark() {
    std::vector<PickleValue> items;
    while (!stack_.empty() && stack_.back().kind != PickleValue::kMark) {
      items.push_back(std::move(stack_.back()));
      stack_.pop_back();
    }
    if (stack_.empty()) fail("data.pkl has no mark where one is needed");
    stack_.pop_back();
    std::reverse(items.begin(), items.end());
    return items;
  }

  // Only what a storage reference is made of is kept: a tuple of at most 5 items none of them a
  // tuple, strings of at most 256 bytes; the rest is "other". So a crafted pickle that copies a
  // value through the memo again and again, or nests tuples a million deep, stays small.
  void push_tuple(std::vector<PickleValue> items) {
    PickleValue t;
    bool flat = items.size() <= 5;
    for (const auto& item : items) flat = flat && item.kind != PickleValue::kTuple;
    if (flat) {
      t.kind = PickleValue::kTuple;
      t.items = std::move(items);
    }
    stack_.push_back(std::move(t));
  }

  void need(uint64_t n) const {
    if (end_ - at_ < n) fail("data.pkl ends inside a pickle opcode or a value longer than the file");
  }

  void lenient_string(uint64_t length_bytes, PickleValue::Kind kind = PickleValue::kString) {
    need(length_bytes);
    const uint64_t n = le(b_, at_, static_cast<int>(length_bytes));
    at_ += length_bytes;
    need(n);
    PickleValue v;
    if (n <= 256 && kind == PickleValue::kString) {
      v.kind = PickleValue::kString;
      v.text = b_.substr(at_, n);
    }
    at_ += n;
    stack_.push_back(std::move(v));
  }

  void integer(int bytes, bool is_signed) {
    need(static_cast<uint64_t>(bytes));
    uint64_t raw = le(b_, at_, bytes);
    at_ += static_cast<uint64_t>(bytes);
    PickleValue v;
    v.kind = PickleValue::kInt;
    if (is_signed && bytes < 8 && bytes > 0 && (raw >> (8 * bytes - 1)) & 1) raw |= ~uint64_t{0} << (8 * bytes);
    v.number = static_cast<int64_t>(raw);
    stack_.push_back(std::move(v));
  }

  uint64_t memo_index(int bytes) {
    need(static_cast<uint64_t>(bytes));
    const uint64_t i = le(b_, at_, bytes);
    at_ += static_cast<uint64_t>(bytes);
    return i;
  }

  void global() {  // GLOBAL "module\nname\n"
    const size_t first = b_.find('\n', at_);
    const size_t second = first == std::string::npos ? first : b_.find('\n', first + 1);
    if (second == std::string::npos || second >= end_) fail("a pickled global name runs past the end of data.pkl");
    PickleValue v;
    v.kind = PickleValue::kGlobal;
    v.text = std::string(b_.substr(at_, first - at_)) + " " + std::string(b_.substr(first + 1, second - first - 1));
    at_ = second + 1;
    stack_.push_back(std::move(v));
  }

  void persistent_id() {  // BINPERSID: torch's storage reference
    PickleValue id = pop();
    const auto& t = id.items;
    if (id.kind == PickleValue::kTuple && t.size() == 5 && t[0].kind == PickleValue::kString &&
        t[0].text == "storage" && t[1].kind == PickleValue::kGlobal && t[2].kind == PickleValue::kString &&
        t[4].kind == PickleValue::kInt) {
      const uint64_t item = storage_item_size(t[1].text);
      if (t[4].number < 0 || static_cast<uint64_t>(t[4].number) > (uint64_t{1} << 60) / item)
        fail("a storage of data.pkl has an impossible size");
      needs_.push_back({t[2].text, static_cast<uint64_t>(t[4].number) * item});
    }
    stack_.emplace_back();
  }

  void stack_global() {  // STACK_GLOBAL: module and name from the stack (protocol 4)
    PickleValue name = pop(), module = pop();
    PickleValue v;
    if (module.kind == PickleValue::kString && name.kind == PickleValue::kString) {
      v.kind = PickleValue::kGlobal;
      v.text = module.text + " " + name.text;
    }
    stack_.push_back(std::move(v));
  }

  // The opcodes that push a value read from the pickle; false for any other.
  bool push_value(unsigned char op) {
    switch (op) {
      case 'X':
        lenient_string(4);
        return true;  // BINUNICODE
      case 0x8c:
        lenient_string(1);
        return true;  // SHORT_BINUNICODE
      case 0x8d:
        lenient_string(8);
        return true;  // BINUNICODE8
      case 'T':
      case 'B':
        lenient_string(4, PickleValue::kOther);
        return true;  // BINSTRING, BINBYTES
      case 'U':
      case 'C':
        lenient_string(1, PickleValue::kOther);
        return true;  // SHORT_BINSTRING/BYTES
      case 'K':
        integer(1, false);
        return true;  // BININT1
      case 'M':
        integer(2, false);
        return true;  // BININT2
      case 'J':
        integer(4, true);
        return true;  // BININT
      case 0x8a: {    // LONG1: a length byte, then little-endian two's complement
        need(1);
        const int n = static_cast<unsigned char>(b_[at_++]);
        if (n > 8) {
          need(static_cast<uint64_t>(n));
          at_ += static_cast<uint64_t>(n);
          stack_.emplace_back();
        } else {
          integer(n, true);
        }
        return true;
      }
      case 'G':  // BINFLOAT
        need(8);
        at_ += 8;
        stack_.emplace_back();
        return true;
      case 'c':
        global();
        return true;
      case '}':
      case ']':
      case 'N':
      case 0x88:
      case 0x89:  // EMPTY_DICT, EMPTY_LIST, NONE, NEWTRUE, NEWFALSE
        stack_.emplace_back();
        return true;
      default:
        return false;
    }
  }

  // The opcodes that frame the pickle, build tuples and objects, and use the memo; false for any other.
  bool structure(unsigned char op) {
    switch (op) {
      case 0x80:  // PROTO
        need(1);
        at_ += 1;
        return true;
      case 0x95:  // FRAME: a length of what follows, which is read on
        need(8);
        if (le(b_, at_, 8) > end_ - at_ - 8) fail("a pickle frame runs past the end of data.pkl");
        at_ += 8;
        return true;
      case '(':  // MARK
        stack_.emplace_back();
        stack_.back().kind = PickleValue::kMark;
        return true;
      case ')':
        push_tuple({});
        return true;  // EMPTY_TUPLE
      case 't':
        push_tuple(pop_mark());
        return true;  // TUPLE
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<PickleValue> items(op - 0x84);
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        push_tuple(std::move(items));
        return true;
      }
      case 'q':
      case 'r': {  // BINPUT, LONG_BINPUT
        // LibTorch's memo is a vector sized by the largest index: an index of 2e9 asked for 32 GB
        // (found by the fuzz tests). A pickler numbers its memo from 0, so no index exceeds the
        // pickle's length.
        const uint64_t index = memo_index(op == 'q' ? 1 : 4);
        if (index > end_ - begin_) fail("data.pkl stores a value under an impossible memo index");
        memo_[index] = stack_.empty() ? PickleValue{} : stack_.back();
        return true;
      }
      case 0x94:
        memo_[memo_.size()] = stack_.empty() ? PickleValue{} : stack_.back();
        return true;  // MEMOIZE
      case 'h':
      case 'j': {  // BINGET, LONG_BINGET
        auto it = memo_.find(memo_index(op == 'h' ? 1 : 4));
        if (it == memo_.end()) fail("data.pkl refers to a value it never stored");
        stack_.push_back(it->second);
        return true;
      }
      case 'Q':
        persistent_id();
        return true;
      case 'R':
      case 0x81:  // REDUCE, NEWOBJ
        pop();
        pop();
        stack_.emplace_back();
        return true;
      case 0x93:
        stack_global();
        return true;
      case 'b':
      case 's':  // BUILD, SETITEM: pop the argument(s), the object stays
        pop();
        if (op == 's') pop();
        return true;
      case 'a':
      case '0':
        pop();
        return true;  // APPEND, POP
      case 'u':
      case 'e':
        pop_mark();
        return true;  // SETITEMS, APPENDS
      case 'd':
      case 'l':  // DICT, LIST (protocol 0; LibTorch reads them): the items since the mark, one value
        // (walked on, so that a string after them is checked too: found by the fuzz tests, 4 GB)
        pop_mark();
        stack_.emplace_back();
        return true;
      case '1':
        pop_mark();
        return true;  // POP_MARK
      case '2':
        stack_.push_back(stack_.empty() ? PickleValue{} : stack_.back());
        return true;  // DUP
      default:
        return false;
    }
  }

  std::string_view b_;
  const uint64_t begin_;
  uint64_t at_;
  const uint64_t end_;
  const std::string& path_;
  std::vector<StorageNeed> needs_;
  std::vector<PickleValue> stack_;
  std::map<uint64_t, PickleValue> memo_;
};

/// Where the central directory is (from the end of central directory record, zip64's when there is one).
struct CentralDirectory {
  uint64_t entries = 0, offset = 0, size = 0;
};

CentralDirectory find_central_directory(std::string_view b, const std::string& path) {
  const uint64_t n = b.size();
  if (n < 22 || b.compare(0, 4, "PK\x03\x04") != 0) bad(path, "not a zip archive");
  // The end of central directory record: the last one in the final 64 KiB + 22 bytes (its comment).
  uint64_t eocd = n;
  for (uint64_t i = n - 22 + 1, stop = n > 65557 ? n - 65557 : 0; i-- > stop;)
    if (le(b, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == n) bad(path, "no end of central directory record");
  if (le(b, eocd + 4, 2) != 0 || le(b, eocd + 6, 2) != 0) bad(path, "a multi-part archive");
  if (eocd + 22 + le(b, eocd + 20, 2) > n) bad(path, "the archive comment runs past the end");
  CentralDirectory cd{le(b, eocd + 10, 2), le(b, eocd + 16, 4), le(b, eocd + 12, 4)};
  uint64_t cd_limit = eocd;  // the central directory ends before the records that follow it
  const bool saturated = cd.entries == 0xFFFF || cd.size == 0xFFFFFFFF || cd.offset == 0xFFFFFFFF;
  const bool locator = eocd >= 20 && le(b, eocd - 20, 4) == 0x07064b50;
  if (saturated && !locator) bad(path, "a zip64 archive without its locator");
  if (locator) {
    // Zip64 (LibTorch's reader takes the record whenever the locator is there, saturated fields or
    // not: a record that lied read out of bounds, found by the fuzz tests).
    const uint64_t record = le(b, eocd - 20 + 8, 8);
    if (record > eocd - 20 || eocd - 20 - record < 56 || le(b, record, 4) != 0x06064b50 || le(b, record + 4, 8) < 44 ||
        le(b, record + 4, 8) > eocd - 20 - record - 12)
      bad(path, "the zip64 end of central directory record is out of place");
    if (le(b, record + 16, 4) != 0 || le(b, record + 20, 4) != 0 || le(b, record + 24, 8) != le(b, record + 32, 8))
      bad(path, "a multi-part archive");
    const uint64_t entries64 = le(b, record + 32, 8), cd_size64 = le(b, record + 40, 8),
                   cd_off64 = le(b, record + 48, 8);
    if ((cd.entries != 0xFFFF && cd.entries != entries64) || (cd.size != 0xFFFFFFFF && cd.size != cd_size64) ||
        (cd.offset != 0xFFFFFFFF && cd.offset != cd_off64))
      bad(path, "the zip64 end of central directory record contradicts the plain one");
    cd = CentralDirectory{entries64, cd_off64, cd_size64};
    cd_limit = record;
  }
  if (cd.offset > cd_limit || cd.size > cd_limit - cd.offset) bad(path, "the central directory lies outside the file");
  if (cd.entries == 0 || cd.entries > cd.size / 46)
    bad(path, "the central directory's entry count does not fit its size");
  return cd;
}

/// One entry of the central directory, checked against the file.
struct Entry {
  std::string name;
  uint64_t data = 0, csize = 0, usize = 0, method = 0;
  uint64_t next = 0;  ///< where the next entry starts
};

Entry read_entry(std::string_view b, uint64_t p, const CentralDirectory& cd, uint64_t e, const std::string& path) {
  const std::string which = "entry " + std::to_string(e + 1) + " of the central directory";
  const uint64_t cd_end = cd.offset + cd.size;
  if (cd_end - p < 46 || le(b, p, 4) != 0x02014b50) bad(path, which + " is damaged");
  const uint64_t name = le(b, p + 28, 2), extra = le(b, p + 30, 2), comment = le(b, p + 32, 2);
  Entry entry;
  entry.next = p + 46 + name + extra + comment;
  if (entry.next > cd_end) bad(path, which + " runs past the central directory");
  if (le(b, p + 8, 2) & 1) bad(path, which + " is encrypted");
  uint64_t csize = le(b, p + 20, 4), usize = le(b, p + 24, 4), local = le(b, p + 42, 4);
  // Zip64 sizes and offset, in the order they are replaced, from the extra field's record 0x0001.
  for (uint64_t x = p + 46 + name, x_end = x + extra; x + 4 <= x_end;) {
    const uint64_t id = le(b, x, 2), size = le(b, x + 2, 2);
    if (x + 4 + size > x_end) bad(path, which + " has a damaged extra field");
    if (id == 1) {
      uint64_t at = x + 4;
      for (uint64_t* field : {&usize, &csize, &local}) {
        if (*field != 0xFFFFFFFF) continue;
        if (at + 8 > x + 4 + size) bad(path, which + " lacks a zip64 size");
        *field = le(b, at, 8);
        at += 8;
      }
    }
    x += 4 + size;
  }
  if (local > cd.offset || cd.offset - local < 30 || le(b, local, 4) != 0x04034b50)
    bad(path, which + " points at no local file header");
  entry.data = local + 30 + le(b, local + 26, 2) + le(b, local + 28, 2);
  if (entry.data > cd.offset || csize > cd.offset - entry.data) bad(path, which + "'s data runs past the file");
  entry.method = le(b, p + 10, 2);
  if (entry.method != 0 && entry.method != 8) bad(path, which + " has an unknown compression method");
  if (entry.method == 0 && usize != csize) bad(path, which + " is stored with two different sizes");
  entry.name = b.substr(p + 46, name);
  entry.csize = csize;
  entry.usize = usize;
  return entry;
}

}  // namespace

std::vector<ArchiveRecord> torch_archive_records(std::string_view b, const std::string& path) {
  const CentralDirectory cd = find_central_directory(b, path);
  std::map<std::string, uint64_t> record_sizes;
  std::vector<ArchiveRecord> records;
  std::vector<StorageNeed> needs;
  std::string pickle_prefix;
  bool walked = false;
  uint64_t p = cd.offset;
  for (uint64_t e = 0; e < cd.entries; ++e) {
    const Entry entry = read_entry(b, p, cd, e, path);
    if (!record_sizes.emplace(entry.name, entry.usize).second) bad(path, "the archive holds " + entry.name + " twice");
    // LibTorch reads ARCHIVE/data.pkl, ARCHIVE being the first entry's directory.
    if (e == 0) pickle_prefix = entry.name.substr(0, entry.name.find('/') + 1);
    if (entry.name == pickle_prefix + "data.pkl") {
      if (entry.method != 0) bad(path, "data.pkl is compressed; torch.save stores it");
      needs = PickleWalk(b, entry.data, entry.data + entry.csize, path).run();
      walked = true;
    }
    // The records LibTorch reads: those inside ARCHIVE/, by their names there.
    if (entry.name.compare(0, pickle_prefix.size(), pickle_prefix) == 0)
      records.push_back({entry.name.substr(pickle_prefix.size()),
                         entry.method == 0 ? b.substr(entry.data, entry.csize) : std::string_view(),
                         entry.method == 0});
    p = entry.next;
  }
  if (!walked) bad(path, "the archive has no data.pkl");
  for (const auto& need : needs) {
    auto it = record_sizes.find(pickle_prefix + "data/" + need.key);
    if (it == record_sizes.end()) bad(path, "the data of storage " + need.key + " is missing");
    if (it->second < need.bytes)
      bad(path, "storage " + need.key + " needs " + std::to_string(need.bytes) + " bytes and its record holds " +
                    std::to_string(it->second));
  }
  return records;
}

void check_torch_archive(std::string_view b, const std::string& path) {
  torch_archive_records(b, path);
}

}  // namespace ltk
