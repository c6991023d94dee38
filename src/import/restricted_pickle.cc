#include "import/restricted_pickle.h"

#include <algorithm>
#include <bit>
#include <unordered_map>

#include "halfserve/util/error.h"

namespace halfserve {

namespace {

constexpr const char* kOnlyStateDicts = "; only a state dict's tensors are accepted";

// Opcodes pickle defines that a state dict never needs. Naming them makes a refusal say what the file asked for;
// several (INST, OBJ, NEWOBJ, EXT*) are exactly how a hostile pickle would run code.
struct RefusedOpcode {
  uint8_t code;
  const char* name;
};
constexpr RefusedOpcode kRefusedOpcodes[] = {
    {'i', "INST"},          {'o', "OBJ"},          {0x81, "NEWOBJ"},      {0x92, "NEWOBJ_EX"},
    {0x82, "EXT1"},         {0x83, "EXT2"},        {0x84, "EXT4"},        {'P', "PERSID"},
    {'I', "INT"},           {'L', "LONG"},         {'S', "STRING"},       {'V', "UNICODE"},
    {'F', "FLOAT"},         {'d', "DICT"},         {'l', "LIST"},         {'0', "POP"},
    {'1', "POP_MARK"},      {'2', "DUP"},          {'g', "GET"},          {'p', "PUT"},
    {0x8b, "LONG4"},        {'B', "BINBYTES"},     {'C', "SHORT_BINBYTES"}, {0x8e, "BINBYTES8"},
    {0x96, "BYTEARRAY8"},   {0x8f, "EMPTY_SET"},   {0x90, "ADDITEMS"},    {0x91, "FROZENSET"},
    {0x97, "NEXT_BUFFER"},  {0x98, "READONLY_BUFFER"},
};

std::string hex_byte(uint8_t value) {
  static const char digits[] = "0123456789abcdef";
  return std::string("0x") + digits[value >> 4] + digits[value & 0xf];
}

// Quotes bytes from the file for an error message: control bytes escaped, long names cut short.
std::string printable(std::string_view text) {
  constexpr size_t kMaxShown = 80;
  std::string out;
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x" + hex_byte(c).substr(2);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out;
}

std::optional<DType> storage_type_dtype(std::string_view name) {
  static const std::pair<std::string_view, DType> kStorageTypes[] = {
      {"FloatStorage", DType::f32}, {"HalfStorage", DType::f16},  {"BFloat16Storage", DType::bf16},
      {"DoubleStorage", DType::f64}, {"LongStorage", DType::i64}, {"IntStorage", DType::i32},
      {"ShortStorage", DType::i16}, {"CharStorage", DType::i8},   {"ByteStorage", DType::u8},
      {"BoolStorage", DType::boolean},
  };
  for (const auto& [type_name, dtype] : kStorageTypes)
    if (name == type_name) return dtype;
  return std::nullopt;
}

}  // namespace

std::string_view pickle_kind_name(PickleKind kind) {
  switch (kind) {
    case PickleKind::none: return "None";
    case PickleKind::boolean: return "a bool";
    case PickleKind::integer: return "an integer";
    case PickleKind::floating: return "a float";
    case PickleKind::string: return "a string";
    case PickleKind::tuple: return "a tuple";
    case PickleKind::list: return "a list";
    case PickleKind::dict: return "a dict";
    case PickleKind::global: return "a global";
    case PickleKind::storage: return "a storage";
    case PickleKind::tensor: return "a tensor";
  }
  return "an unknown value";
}

// The stack machine. It mirrors CPython's _pickle.c for the opcodes it accepts (a MARK starts a fresh stack that
// ordinary pops may not cross), but REDUCE builds values for the allow-listed callables instead of calling them.
class RestrictedUnpickler {
 public:
  RestrictedUnpickler(std::span<const std::byte> bytes, const std::string& source, const PickleLimits& limits)
      : bytes_(bytes), source_(source), limits_(limits) {}

  PickleDocument run() {
    while (document_.root_ == nullptr) {
      if (position_ >= bytes_.size()) fail("pickle ends without STOP (truncated?)");
      opcode_position_ = position_;
      dispatch(next_byte());
    }
    return std::move(document_);
  }

 private:
  // ---- errors ----

  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(source_ + ": invalid pickle: " + problem + " (at byte " + std::to_string(opcode_position_) + ")");
  }

  [[noreturn]] void refuse(const std::string& what) const {
    throw Error(source_ + ": refusing to load: " + what + " (at byte " + std::to_string(opcode_position_) + ")" +
                kOnlyStateDicts);
  }

  [[noreturn]] void refuse_opcode(uint8_t opcode) const {
    for (const auto& refused : kRefusedOpcodes)
      if (refused.code == opcode)
        refuse(std::string("pickle opcode ") + refused.name + " (" + hex_byte(opcode) + ") is not accepted");
    refuse("unknown pickle opcode " + hex_byte(opcode));
  }

  // ---- reading the byte stream ----

  uint8_t next_byte() { return static_cast<uint8_t>(take(1)[0]); }

  std::span<const std::byte> take(uint64_t count) {
    if (count > bytes_.size() - position_)
      fail("needs " + std::to_string(count) + " more bytes but only " + std::to_string(bytes_.size() - position_) +
           " remain (truncated?)");
    const auto span = bytes_.subspan(position_, static_cast<size_t>(count));
    position_ += static_cast<size_t>(count);
    return span;
  }

  uint64_t read_unsigned_le(size_t width) {
    const auto span = take(width);
    uint64_t value = 0;
    for (size_t i = width; i-- > 0;) value = (value << 8) | static_cast<uint8_t>(span[i]);
    return value;
  }

  std::string read_text(uint64_t length) {
    const auto span = take(length);
    return std::string(reinterpret_cast<const char*>(span.data()), span.size());
  }

  // A newline-terminated GLOBAL operand, bounded so a missing newline cannot make one name swallow the file.
  std::string read_line() {
    std::string line;
    while (true) {
      const char c = static_cast<char>(next_byte());
      if (c == '\n') return line;
      if (line.size() >= limits_.max_global_name)
        fail("GLOBAL name longer than " + std::to_string(limits_.max_global_name) + " bytes");
      line += c;
    }
  }

  // ---- objects ----

  PickleObject& make(PickleKind kind) {
    if (document_.arena_->size() >= limits_.max_objects)
      fail("more than " + std::to_string(limits_.max_objects) + " objects");
    PickleObject& object = document_.arena_->emplace_back();
    object.kind = kind;
    return object;
  }

  PickleObject* make_integer(int64_t value) {
    PickleObject& object = make(PickleKind::integer);
    object.integer = value;
    return &object;
  }

  PickleObject* make_string(std::string text) {
    PickleObject& object = make(PickleKind::string);
    object.text = std::move(text);
    return &object;
  }

  // None, True, False and () are immutable, so one object each serves the whole document.
  PickleObject* shared_constant(PickleObject*& slot, PickleKind kind, int64_t integer = 0) {
    if (slot == nullptr) {
      slot = &make(kind);
      slot->integer = integer;
      slot->nesting = kind == PickleKind::tuple ? 1 : 0;
    }
    return slot;
  }

  void check_nesting(const PickleObject& container) const {
    if (container.nesting > limits_.max_nesting)
      fail("containers nested more than " + std::to_string(limits_.max_nesting) + " deep");
  }

  PickleObject* make_sequence(PickleKind kind, std::vector<PickleObject*> items) {
    if (kind == PickleKind::tuple && items.empty()) return shared_constant(empty_tuple_, PickleKind::tuple);
    PickleObject& object = make(kind);
    object.nesting = 1;
    for (const PickleObject* item : items) object.nesting = std::max(object.nesting, item->nesting + 1);
    check_nesting(object);
    object.items.assign(items.begin(), items.end());
    return &object;
  }

  // Containers filled after creation only raise their own depth: the bound exists to stop runaway nesting, and
  // nothing downstream walks values recursively, so an ancestor's stale depth is harmless.
  void note_child(PickleObject& container, const PickleObject& child) const {
    container.nesting = std::max(container.nesting, child.nesting + 1);
    check_nesting(container);
  }

  // ---- the stack ----

  size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }

  void push(PickleObject* object) {
    if (stack_.size() >= limits_.max_stack) fail("stack deeper than " + std::to_string(limits_.max_stack));
    stack_.push_back(object);
  }

  PickleObject* pop() {
    if (stack_.size() <= stack_floor()) fail("stack underflow");
    PickleObject* object = stack_.back();
    stack_.pop_back();
    return object;
  }

  PickleObject* top() {
    if (stack_.size() <= stack_floor()) fail("stack underflow");
    return stack_.back();
  }

  void push_mark() {
    if (marks_.size() >= limits_.max_marks) fail("more than " + std::to_string(limits_.max_marks) + " open MARKs");
    marks_.push_back(stack_.size());
  }

  std::vector<PickleObject*> pop_to_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleObject*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }

  // ---- the memo ----

  void memo_put(uint64_t index) {
    PickleObject* object = top();
    if (memo_.size() >= limits_.max_memo_entries && memo_.count(index) == 0)
      fail("more than " + std::to_string(limits_.max_memo_entries) + " memo entries");
    memo_[index] = object;
  }

  void memo_get(uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo entry " + std::to_string(index) + " is not defined");
    push(it->second);
  }

  // ---- opcodes ----

  void dispatch(uint8_t opcode) {
    switch (opcode) {
      case 0x80: return on_protocol(next_byte());  // PROTO
      case 0x95: return on_frame(read_unsigned_le(8));  // FRAME
      case '}': return push(make_dict(false));  // EMPTY_DICT
      case ']': return push(make_sequence(PickleKind::list, {}));  // EMPTY_LIST
      case ')': return push(shared_constant(empty_tuple_, PickleKind::tuple));  // EMPTY_TUPLE
      case '(': return push_mark();  // MARK
      case 'X': return push(make_string(read_text(read_unsigned_le(4))));  // BINUNICODE
      case 0x8c: return push(make_string(read_text(read_unsigned_le(1))));  // SHORT_BINUNICODE
      case 0x8d: return push(make_string(read_text(read_unsigned_le(8))));  // BINUNICODE8
      case 'T': return on_binstring();  // BINSTRING
      case 'U': return push(make_string(read_text(read_unsigned_le(1))));  // SHORT_BINSTRING
      case 'J': return push(make_integer(static_cast<int32_t>(read_unsigned_le(4))));  // BININT
      case 'K': return push(make_integer(static_cast<int64_t>(read_unsigned_le(1))));  // BININT1
      case 'M': return push(make_integer(static_cast<int64_t>(read_unsigned_le(2))));  // BININT2
      case 0x8a: return on_long1(next_byte());  // LONG1
      case 'N': return push(shared_constant(none_, PickleKind::none));  // NONE
      case 0x88: return push(shared_constant(true_, PickleKind::boolean, 1));  // NEWTRUE
      case 0x89: return push(shared_constant(false_, PickleKind::boolean, 0));  // NEWFALSE
      case 'G': return on_binfloat();  // BINFLOAT
      case 't': return push(make_sequence(PickleKind::tuple, pop_to_mark()));  // TUPLE
      case 0x85: return on_small_tuple(1);  // TUPLE1
      case 0x86: return on_small_tuple(2);  // TUPLE2
      case 0x87: return on_small_tuple(3);  // TUPLE3
      case 's': return on_setitem();  // SETITEM
      case 'u': return on_setitems();  // SETITEMS
      case 'a': return on_append();  // APPEND
      case 'e': return on_appends();  // APPENDS
      case 'q': return memo_put(read_unsigned_le(1));  // BINPUT
      case 'r': return memo_put(read_unsigned_le(4));  // LONG_BINPUT
      case 0x94: return memo_put(memo_.size());  // MEMOIZE
      case 'h': return memo_get(read_unsigned_le(1));  // BINGET
      case 'j': return memo_get(read_unsigned_le(4));  // LONG_BINGET
      case 'c': return on_global();  // GLOBAL
      case 0x93: return on_stack_global();  // STACK_GLOBAL
      case 'R': return on_reduce();  // REDUCE
      case 'b': return on_build();  // BUILD
      case 'Q': return on_persistent_id();  // BINPERSID
      case '.': document_.root_ = pop(); return;  // STOP
      default: refuse_opcode(opcode);
    }
  }

  void on_protocol(uint8_t protocol) {
    if (protocol < 2 || protocol > 5) fail("pickle protocol " + std::to_string(protocol) + " is not supported (2 to 5 are)");
  }

  // Frames only tell a streaming reader how much to buffer; the whole pickle is in memory already.
  void on_frame(uint64_t length) {
    if (length > bytes_.size() - position_) fail("frame of " + std::to_string(length) + " bytes runs past the end (truncated?)");
  }

  void on_binstring() {
    const auto length = static_cast<int32_t>(read_unsigned_le(4));
    if (length < 0) fail("BINSTRING with negative length " + std::to_string(length));
    push(make_string(read_text(static_cast<uint64_t>(length))));
  }

  // LONG1: a little-endian two's-complement integer of up to 255 bytes; a tensor never needs more than 64 bits.
  void on_long1(uint8_t width) {
    if (width > 8) fail("integer of " + std::to_string(width) + " bytes is too large");
    if (width == 0) return push(make_integer(0));
    uint64_t value = read_unsigned_le(width);
    if (width < 8 && (value >> (8 * width - 1)) != 0) value |= ~uint64_t{0} << (8 * width);  // sign-extend
    push(make_integer(static_cast<int64_t>(value)));
  }

  void on_binfloat() {
    const auto span = take(8);
    uint64_t bits = 0;
    for (size_t i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(span[i]);  // big-endian
    PickleObject& object = make(PickleKind::floating);
    object.floating = std::bit_cast<double>(bits);
    push(&object);
  }

  void on_small_tuple(size_t count) {
    std::vector<PickleObject*> items(count);
    for (size_t i = count; i-- > 0;) items[i] = pop();
    push(make_sequence(PickleKind::tuple, std::move(items)));
  }

  PickleObject* make_dict(bool ordered) {
    PickleObject& object = make(PickleKind::dict);
    object.ordered = ordered;
    object.nesting = 1;
    return &object;
  }

  PickleObject& expect_container(PickleObject* object, PickleKind kind, const char* opcode) {
    if (object->kind != kind)
      fail(std::string(opcode) + " on " + std::string(pickle_kind_name(object->kind)) + ", not " +
           std::string(pickle_kind_name(kind)));
    return *object;
  }

  void on_setitem() {
    PickleObject* value = pop();
    PickleObject* key = pop();
    PickleObject& dict = expect_container(top(), PickleKind::dict, "SETITEM");
    add_entry(dict, key, value);
  }

  void on_setitems() {
    const auto items = pop_to_mark();
    if (items.size() % 2 != 0) fail("SETITEMS with an odd number of values");
    PickleObject& dict = expect_container(top(), PickleKind::dict, "SETITEMS");
    for (size_t i = 0; i < items.size(); i += 2) add_entry(dict, items[i], items[i + 1]);
  }

  void add_entry(PickleObject& dict, PickleObject* key, PickleObject* value) {
    note_child(dict, *key);
    note_child(dict, *value);
    dict.entries.emplace_back(key, value);
  }

  void on_append() {
    PickleObject* value = pop();
    PickleObject& list = expect_container(top(), PickleKind::list, "APPEND");
    note_child(list, *value);
    list.items.push_back(value);
  }

  void on_appends() {
    const auto items = pop_to_mark();
    PickleObject& list = expect_container(top(), PickleKind::list, "APPENDS");
    for (PickleObject* item : items) {
      note_child(list, *item);
      list.items.push_back(item);
    }
  }

  // ---- globals and what may be done with them ----

  void on_global() {
    std::string module = read_line();
    std::string name = read_line();
    push(resolve_global(module, name));
  }

  void on_stack_global() {
    PickleObject* name = pop();
    PickleObject* module = pop();
    if (module->kind != PickleKind::string || name->kind != PickleKind::string)
      fail("STACK_GLOBAL operands are " + std::string(pickle_kind_name(module->kind)) + " and " +
           std::string(pickle_kind_name(name->kind)) + ", not strings");
    push(resolve_global(module->text, name->text));
  }

  // The allow-list. Everything else is refused here, at the mention, before anything could use it.
  PickleObject* resolve_global(const std::string& module, const std::string& name) {
    std::optional<PickleGlobal> global;
    std::optional<DType> storage_dtype;
    if (module == "collections" && name == "OrderedDict") {
      global = PickleGlobal::ordered_dict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      global = PickleGlobal::rebuild_tensor_v2;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      global = PickleGlobal::rebuild_parameter;
    } else if (module == "torch" && (storage_dtype = storage_type_dtype(name))) {
      global = PickleGlobal::storage_type;
    }
    if (!global) refuse("pickle asks for global '" + printable(module + "." + name) + "'");
    PickleObject& object = make(PickleKind::global);
    object.global = *global;
    object.storage_type = storage_dtype;
    object.text = module + "." + name;
    return &object;
  }

  void on_reduce() {
    PickleObject* arguments = pop();
    PickleObject* callable = pop();
    if (callable->kind != PickleKind::global)
      fail("REDUCE applies " + std::string(pickle_kind_name(callable->kind)) + ", not an allowed global");
    if (arguments->kind != PickleKind::tuple)
      fail("REDUCE of '" + callable->text + "' with " + std::string(pickle_kind_name(arguments->kind)) +
           " instead of an argument tuple");
    switch (callable->global) {
      case PickleGlobal::ordered_dict:
        if (!arguments->items.empty()) fail("OrderedDict() with arguments");
        return push(make_dict(true));
      case PickleGlobal::rebuild_tensor_v2: return push(rebuild_tensor(arguments->items));
      case PickleGlobal::rebuild_parameter: return push(rebuild_parameter(arguments->items));
      case PickleGlobal::storage_type: break;
    }
    refuse("pickle constructs '" + callable->text + "' directly instead of naming it in a persistent id");
  }

  std::vector<int64_t> integer_tuple(const PickleObject* object, const char* what) const {
    if (object->kind != PickleKind::tuple)
      fail(std::string("_rebuild_tensor_v2 ") + what + " is " + std::string(pickle_kind_name(object->kind)) +
           ", not a tuple");
    std::vector<int64_t> values;
    for (const PickleObject* item : object->items) {
      if (item->kind != PickleKind::integer)
        fail(std::string("_rebuild_tensor_v2 ") + what + " holds " + std::string(pickle_kind_name(item->kind)));
      values.push_back(item->integer);
    }
    return values;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]): the
  // gradient flag, hooks and metadata say nothing about the values, so only their presence is checked.
  PickleObject* rebuild_tensor(const std::vector<PickleRef>& arguments) {
    if (arguments.size() != 6 && arguments.size() != 7)
      fail("_rebuild_tensor_v2 with " + std::to_string(arguments.size()) + " arguments (expected 6 or 7)");
    if (arguments[0]->kind != PickleKind::storage)
      fail("_rebuild_tensor_v2 storage is " + std::string(pickle_kind_name(arguments[0]->kind)));
    if (arguments[1]->kind != PickleKind::integer)
      fail("_rebuild_tensor_v2 storage offset is " + std::string(pickle_kind_name(arguments[1]->kind)));
    auto tensor = std::make_unique<PickleTensor>();
    tensor->storage = *arguments[0]->storage;
    tensor->storage_offset = arguments[1]->integer;
    tensor->size = integer_tuple(arguments[2], "size");
    tensor->stride = integer_tuple(arguments[3], "stride");
    PickleObject& object = make(PickleKind::tensor);
    object.tensor = std::move(tensor);
    return &object;
  }

  // _rebuild_parameter(data, requires_grad, backward_hooks): an nn.Parameter is its tensor as far as values go.
  PickleObject* rebuild_parameter(const std::vector<PickleRef>& arguments) {
    if (arguments.size() != 3)
      fail("_rebuild_parameter with " + std::to_string(arguments.size()) + " arguments (expected 3)");
    if (arguments[0]->kind != PickleKind::tensor)
      fail("_rebuild_parameter wraps " + std::string(pickle_kind_name(arguments[0]->kind)) + ", not a tensor");
    return const_cast<PickleObject*>(arguments[0]);  // our own arena object; tensors are never mutated
  }

  // BUILD sets an object's state. A state dict's OrderedDict carries `_metadata` (module versions) that way;
  // it says nothing about the tensors, so it is dropped. BUILD on anything else would be arbitrary __setstate__.
  void on_build() {
    pop();  // the state
    PickleObject* target = top();
    if (target->kind != PickleKind::dict || !target->ordered)
      refuse("BUILD on " + std::string(pickle_kind_name(target->kind)) + " (only an OrderedDict's state is ignored)");
  }

  // BINPERSID with ('storage', <Type>Storage, key, location, numel), as torch.save writes it.
  void on_persistent_id() {
    const PickleObject* id = pop();
    if (id->kind != PickleKind::tuple || id->items.size() != 5)
      fail("persistent id is " + std::string(pickle_kind_name(id->kind)) +
           (id->kind == PickleKind::tuple ? " of " + std::to_string(id->items.size()) + " items" : "") +
           ", not ('storage', type, key, location, numel)");
    const auto& items = id->items;
    if (items[0]->kind != PickleKind::string || items[0]->text != "storage")
      fail("persistent id does not start with 'storage'");
    if (items[1]->kind != PickleKind::global || !items[1]->storage_type)
      fail("persistent id storage type is " + std::string(pickle_kind_name(items[1]->kind)) +
           (items[1]->kind == PickleKind::global ? " '" + items[1]->text + "'" : "") + ", not a torch.<Type>Storage");
    if (items[2]->kind != PickleKind::string) fail("persistent id key is " + std::string(pickle_kind_name(items[2]->kind)));
    if (items[3]->kind != PickleKind::string)
      fail("persistent id location is " + std::string(pickle_kind_name(items[3]->kind)));
    if (items[4]->kind != PickleKind::integer || items[4]->integer < 0)
      fail("persistent id element count is not a non-negative integer");
    auto storage = std::make_unique<PickleStorage>();
    storage->dtype = *items[1]->storage_type;
    storage->key = items[2]->text;
    storage->location = items[3]->text;
    storage->numel = items[4]->integer;
    PickleObject& object = make(PickleKind::storage);
    object.storage = std::move(storage);
    push(&object);
  }

  std::span<const std::byte> bytes_;
  const std::string& source_;
  const PickleLimits& limits_;
  size_t position_ = 0;
  size_t opcode_position_ = 0;
  PickleDocument document_;
  std::vector<PickleObject*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleObject*> memo_;
  PickleObject* none_ = nullptr;
  PickleObject* true_ = nullptr;
  PickleObject* false_ = nullptr;
  PickleObject* empty_tuple_ = nullptr;
};

PickleDocument read_restricted_pickle(std::span<const std::byte> bytes, const std::string& source,
                                      const PickleLimits& limits) {
  return RestrictedUnpickler(bytes, source, limits).run();
}

}  // namespace halfserve
