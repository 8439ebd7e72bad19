#include "ltk/io/raw_tensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include "ltk/core/error.h"
#include "ltk/io/torch_archive.h"

namespace ltk {

int64_t RawTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

bool RawTensor::contiguous() const {
  int64_t expected = 1;
  for (size_t d = sizes.size(); d-- > 0;) {
    if (sizes[d] != 1 && strides[d] != expected) return false;
    expected *= sizes[d];
  }
  return true;
}

const void* RawTensor::data(const std::string& type) const {
  if (type != dtype || !contiguous()) return nullptr;
  const char* first = storage.data() + offset * static_cast<int64_t>(item_size);
  if (reinterpret_cast<uintptr_t>(first) % item_size != 0) return nullptr;
  return first;
}

namespace {

// A value of the pickle: what a dict of tensors is made of; anything else is kOther.
struct Value {
  enum Kind { kOther, kMark, kInt, kString, kGlobal, kTuple, kDict, kStorage, kTensor } kind = kOther;
  int64_t number = 0;                 // kInt; kStorage: its elements
  std::string text;                   // kString, kGlobal ("module name"), kStorage: its record's key
  std::vector<Value> items;           // kTuple; kDict: key, value, key, value...
  std::shared_ptr<RawTensor> tensor;  // kTensor; kStorage: its dtype and item size
  // The cost of this value and everything in it: a node each, and a node per 64 bytes of a string.
  int64_t nodes = 1;
  int depth = 1;  // of nested tuples and dicts
};

struct StorageType {
  const char* global;
  const char* dtype;
  size_t item;
};
constexpr StorageType kStorageTypes[] = {{"torch FloatStorage", "float32", 4}, {"torch DoubleStorage", "float64", 8},
                                         {"torch HalfStorage", "float16", 2},  {"torch BFloat16Storage", "bfloat16", 2},
                                         {"torch LongStorage", "int64", 8},    {"torch IntStorage", "int32", 4},
                                         {"torch ShortStorage", "int16", 2},   {"torch CharStorage", "int8", 1},
                                         {"torch ByteStorage", "uint8", 1},    {"torch BoolStorage", "bool", 1}};

// The opcodes torch::pickle_save writes for a dict of tensors (protocol 2), run as an unpickler
// runs them. A value copied from the memo again and again, or nested deep, is refused by size.
class Unpickler {
 public:
  Unpickler(std::string_view pickle, const std::map<std::string, std::string_view>& records, const std::string& path)
      : b_(pickle), records_(records), path_(path) {}

  Value run() {
    while (at_ < b_.size()) {
      const auto op = static_cast<unsigned char>(b_[at_++]);
      if (op == '.') return pop();
      step(op);
    }
    fail("data.pkl ends without its STOP opcode");
  }

 private:
  // Far above what a dict of a few hundred tensors costs (a node per name and per tensor), and low
  // enough that a pickle that copies values through its memo again and again, or nests them deep,
  // is refused before it costs more than some 100 MB and a shallow stack.
  static constexpr int64_t kMaxNodes = 1 << 14, kMaxWork = 1 << 20;
  static constexpr int kMaxDepth = 16;

  [[noreturn]] void fail(const std::string& why) const {
    throw CheckpointError(path_ + ": " + why + " (ltk reads a dict of tensors that torch::pickle_save wrote)");
  }
  uint64_t le(int bytes) {
    if (b_.size() - at_ < static_cast<size_t>(bytes)) fail("data.pkl ends inside an opcode");
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b_[at_ + static_cast<size_t>(i)]);
    at_ += static_cast<size_t>(bytes);
    return v;
  }
  void count(const Value& v) {
    work_ += v.nodes;
    if (v.nodes > kMaxNodes || work_ > kMaxWork || v.depth > kMaxDepth)
      fail("data.pkl builds values too large or too deep for a dict of tensors");
  }
  void push(Value v) {
    count(v);
    stack_.push_back(std::move(v));
  }
  Value pop() {
    if (stack_.empty() || stack_.back().kind == Value::kMark) fail("data.pkl pops a value that is not there");
    Value v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  std::vector<Value> pop_mark() {
    std::vector<Value> items;
    while (!stack_.empty() && stack_.back().kind != Value::kMark) items.push_back(pop());
    if (stack_.empty()) fail("data.pkl has no mark where one is needed");
    stack_.pop_back();
    std::reverse(items.begin(), items.end());
    return items;
  }
  static Value of_kind(Value::Kind kind) {
    Value v;
    v.kind = kind;
    return v;
  }
  void push_tuple(std::vector<Value> items) {
    Value t = of_kind(Value::kTuple);
    for (const Value& item : items) {
      t.nodes += item.nodes;
      t.depth = std::max(t.depth, item.depth + 1);
    }
    t.items = std::move(items);
    push(std::move(t));
  }
  void string(int length_bytes) {
    const uint64_t n = le(length_bytes);
    if (b_.size() - at_ < n) fail("a string of data.pkl runs past its end");
    Value v = of_kind(Value::kString);
    v.nodes += static_cast<int64_t>(std::min<uint64_t>(n / 64, kMaxNodes));
    if (v.nodes > kMaxNodes) fail("data.pkl holds a string too long for a tensor's name");
    v.text = b_.substr(at_, n);
    at_ += n;
    push(std::move(v));
  }
  void integer(int bytes, bool is_signed) {
    uint64_t raw = le(bytes);
    if (is_signed && bytes > 0 && bytes < 8 && ((raw >> (8 * bytes - 1)) & 1)) raw |= ~uint64_t{0} << (8 * bytes);
    Value v = of_kind(Value::kInt);
    v.number = static_cast<int64_t>(raw);
    push(std::move(v));
  }
  void global() {  // GLOBAL "module\nname\n"
    const size_t first = b_.find('\n', at_),
                 second = first == std::string_view::npos ? first : b_.find('\n', first + 1);
    if (second == std::string_view::npos) fail("a global name of data.pkl runs past its end");
    Value v = of_kind(Value::kGlobal);
    v.text = std::string(b_.substr(at_, first - at_)) + " " + std::string(b_.substr(first + 1, second - first - 1));
    at_ = second + 1;
    push(std::move(v));
  }
  void memo_put(uint64_t index) {
    if (stack_.empty()) fail("data.pkl memoizes an empty stack");
    count(stack_.back());
    memo_[index] = stack_.back();
  }
  void memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("data.pkl refers to a value it never stored");
    push(it->second);
  }
  void persistent_id() {  // ('storage', type, key, location, numel)
    const Value id = pop();
    const auto& t = id.items;
    if (id.kind != Value::kTuple || t.size() != 5 || t[0].kind != Value::kString || t[0].text != "storage" ||
        t[1].kind != Value::kGlobal || t[2].kind != Value::kString || t[4].kind != Value::kInt)
      fail("data.pkl refers to something other than a tensor's storage");
    const StorageType* type = nullptr;
    for (const auto& s : kStorageTypes)
      if (t[1].text == s.global) type = &s;
    if (!type) fail("data.pkl holds a storage of type " + t[1].text);
    Value v = of_kind(Value::kStorage);
    v.text = t[2].text;
    v.number = t[4].number;
    v.tensor = std::make_shared<RawTensor>();
    v.tensor->dtype = type->dtype;
    v.tensor->item_size = type->item;
    push(std::move(v));
  }
  std::vector<int64_t> dims(const Value& v, const char* what) const {
    if (v.kind != Value::kTuple) fail(std::string("a tensor's ") + what + " are not a tuple");
    std::vector<int64_t> out;
    for (const Value& item : v.items) {
      if (item.kind != Value::kInt || item.number < 0) fail(std::string("a tensor's ") + what + " are not sizes");
      out.push_back(item.number);
    }
    return out;
  }
  // torch._utils._rebuild_tensor_v2(storage, offset, sizes, strides, ...): its elements must lie in
  // the storage, and the storage's record must hold them.
  Value tensor(const Value& args) const {
    if (args.kind != Value::kTuple || args.items.size() < 4 || args.items[0].kind != Value::kStorage ||
        args.items[1].kind != Value::kInt || args.items[1].number < 0)
      fail("data.pkl rebuilds a tensor from arguments that are not a storage, an offset, sizes and strides");
    const Value& storage = args.items[0];
    RawTensor t = *storage.tensor;
    t.offset = args.items[1].number;
    t.sizes = dims(args.items[2], "sizes");
    t.strides = dims(args.items[3], "strides");
    if (t.sizes.size() != t.strides.size())
      fail("a tensor has " + std::to_string(t.sizes.size()) + " sizes and " + std::to_string(t.strides.size()) +
           " strides");
    auto record = records_.find("data/" + storage.text);
    if (record == records_.end()) fail("the data of storage " + storage.text + " is missing");
    const auto elements = static_cast<uint64_t>(std::max<int64_t>(storage.number, 0));
    if (elements > record->second.size() / t.item_size)
      fail("storage " + storage.text + " is shorter than the elements data.pkl gives it");
    if (static_cast<uint64_t>(t.offset) > elements) fail("a tensor starts past the end of storage " + storage.text);
    t.storage = record->second.substr(0, elements * t.item_size);
    // Its last element's index, and its number of elements, without overflow: a file may hold any sizes.
    constexpr uint64_t kLimit = uint64_t{1} << 62;
    bool empty = false;
    uint64_t last = static_cast<uint64_t>(t.offset), count = 1;
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      const auto size = static_cast<uint64_t>(t.sizes[d]), stride = static_cast<uint64_t>(t.strides[d]);
      if (size == 0) {
        empty = true;
        continue;
      }
      if (size > kLimit / count || (stride > 0 && size - 1 > (kLimit - last) / stride))
        fail("a tensor's sizes and strides overflow");
      count *= size;
      last += (size - 1) * stride;
    }
    if (!empty && last >= elements) fail("a tensor's elements lie outside storage " + storage.text);
    Value v = of_kind(Value::kTensor);
    v.tensor = std::make_shared<RawTensor>(std::move(t));
    return v;
  }
  void reduce() {
    Value args = pop(), callable = pop();
    if (callable.kind == Value::kGlobal && callable.text == "torch._utils _rebuild_tensor_v2")
      return push(tensor(args));
    if (callable.kind == Value::kGlobal && callable.text == "torch.jit._pickle restore_type_tag" &&
        args.kind == Value::kTuple && !args.items.empty())
      return push(std::move(args.items[0]));
    push(Value{});  // collections.OrderedDict() (a tensor's hooks) and anything else: no tensor or dict
  }
  void set_items(std::vector<Value> items) {
    if (items.size() % 2 != 0 || stack_.empty() || stack_.back().kind != Value::kDict)
      fail("data.pkl sets items of something that is not a dict");
    Value& dict = stack_.back();
    for (Value& item : items) {
      dict.nodes += item.nodes;
      dict.depth = std::max(dict.depth, item.depth + 1);
      dict.items.push_back(std::move(item));
    }
    count(dict);
  }

  void step(unsigned char op) {
    switch (op) {
      case 0x80:
        le(1);
        return;  // PROTO
      case 0x95:
        le(8);
        return;  // FRAME
      case 'c':
        return global();
      case 0x93: {  // STACK_GLOBAL
        Value name = pop(), module = pop();
        if (name.kind != Value::kString || module.kind != Value::kString) fail("data.pkl names a global oddly");
        Value v = of_kind(Value::kGlobal);
        v.text = module.text + " " + name.text;
        return push(std::move(v));
      }
      case 'q':
        return memo_put(le(1));  // BINPUT
      case 'r':
        return memo_put(le(4));  // LONG_BINPUT
      case 0x94:
        return memo_put(memo_.size());  // MEMOIZE
      case 'h':
        return memo_get(le(1));  // BINGET
      case 'j':
        return memo_get(le(4));  // LONG_BINGET
      case '}':
        return push(of_kind(Value::kDict));  // EMPTY_DICT
      case ']':
      case 'N':
      case 0x88:
      case 0x89:
        return push(Value{});  // EMPTY_LIST, NONE, NEWTRUE, NEWFALSE
      case '(':
        stack_.push_back(of_kind(Value::kMark));
        return;
      case ')':
        return push_tuple({});
      case 't':
        return push_tuple(pop_mark());
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<Value> items(op - 0x84);
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        return push_tuple(std::move(items));
      }
      case 'X':
        return string(4);  // BINUNICODE
      case 0x8c:
        return string(1);  // SHORT_BINUNICODE
      case 0x8d:
        return string(8);  // BINUNICODE8
      case 'K':
        return integer(1, false);
      case 'M':
        return integer(2, false);
      case 'J':
        return integer(4, true);
      case 0x8a: {  // LONG1
        const auto n = static_cast<int>(le(1));
        if (n > 8) fail("data.pkl holds an integer of " + std::to_string(n) + " bytes");
        return integer(n, true);
      }
      case 'Q':
        return persistent_id();
      case 'R':
        return reduce();
      case 'u':
        return set_items(pop_mark());  // SETITEMS
      case 's': {                      // SETITEM
        Value value = pop(), key = pop();
        std::vector<Value> items;
        items.push_back(std::move(key));
        items.push_back(std::move(value));
        return set_items(std::move(items));
      }
      case 'a':
        pop();
        return;  // APPEND (to a list: no tensor of the dict)
      case 'e':
        pop_mark();
        return;  // APPENDS
      case 'b':
        pop();
        return;  // BUILD
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("data.pkl has opcode ") + hex + ", which ltk's reader does not read");
      }
    }
  }

  std::string_view b_;
  size_t at_ = 0;
  const std::map<std::string, std::string_view>& records_;
  const std::string& path_;
  std::vector<Value> stack_;
  std::map<uint64_t, Value> memo_;
  int64_t work_ = 0;
};

}  // namespace

std::map<std::string, RawTensor> read_raw_tensors(std::string_view bytes, const std::string& path) {
  std::map<std::string, std::string_view> records;
  for (const ArchiveRecord& r : torch_archive_records(bytes, path)) {
    if (!r.stored)
      throw CheckpointError(path + ": record " + r.name + " is compressed; ltk's weights files store them");
    records[r.name] = r.bytes;
  }
  auto pickle = records.find("data.pkl");
  if (pickle == records.end()) throw CheckpointError(path + ": the archive has no data.pkl");
  const Value dict = Unpickler(pickle->second, records, path).run();
  if (dict.kind != Value::kDict)
    throw CheckpointError(path +
                          ": data.pkl holds no dict (ltk reads a dict of tensors that torch::pickle_save wrote)");
  std::map<std::string, RawTensor> out;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const Value &key = dict.items[i], &value = dict.items[i + 1];
    if (key.kind != Value::kString || value.kind != Value::kTensor)
      throw CheckpointError(path + ": data.pkl's dict maps something other than names to tensors");
    out[key.text] = *value.tensor;
  }
  return out;
}

}  // namespace ltk
