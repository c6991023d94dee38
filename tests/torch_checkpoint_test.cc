// Tests for src/import/torch_checkpoint.cc and src/import/restricted_pickle.cc: the real PyTorch 1.13 fixture read
// byte-for-byte like its safetensors twin, hand-built checkpoints (offsets, shared storages, wrappers, protocol 4),
// and hostile or broken files (code-running globals and opcodes, truncation, bad layouts, deep nesting, a mutation
// loop), each of which must be a halfserve::Error and must never run anything.
#include "halfserve/import/torch_checkpoint.h"

#include <gtest/gtest.h>
#include <zip.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "halfserve/format/safetensors.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"
#include "import/restricted_pickle.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::Contains;
using testing::TempDir;

namespace fs = std::filesystem;

// ---- building pickles by hand ----

class PickleBuilder {
 public:
  PickleBuilder& op(uint8_t code) {
    bytes_ += static_cast<char>(code);
    return *this;
  }
  PickleBuilder& raw(const std::string& bytes) {
    bytes_ += bytes;
    return *this;
  }
  PickleBuilder& proto(uint8_t version) { return op(0x80).op(version); }
  PickleBuilder& mark() { return op('('); }
  PickleBuilder& tuple() { return op('t'); }
  PickleBuilder& stop() { return op('.'); }
  PickleBuilder& unicode(const std::string& text) { return op('X').little_endian(text.size(), 4).raw(text); }
  PickleBuilder& short_unicode(const std::string& text) { return op(0x8c).little_endian(text.size(), 1).raw(text); }
  PickleBuilder& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
  PickleBuilder& integer(int64_t value) {
    if (value >= 0 && value < 256) return op('K').little_endian(static_cast<uint64_t>(value), 1);
    if (value >= 0 && value < 65536) return op('M').little_endian(static_cast<uint64_t>(value), 2);
    if (value >= INT32_MIN && value <= INT32_MAX) return op('J').little_endian(static_cast<uint32_t>(value), 4);
    return op(0x8a).op(8).little_endian(static_cast<uint64_t>(value), 8);
  }
  PickleBuilder& put(uint8_t index) { return op('q').op(index); }
  PickleBuilder& get(uint8_t index) { return op('h').op(index); }
  PickleBuilder& integer_tuple(const std::vector<int64_t>& values) {
    mark();
    for (const int64_t value : values) integer(value);
    return tuple();
  }
  PickleBuilder& little_endian(uint64_t value, int width) {
    for (int i = 0; i < width; ++i) bytes_ += static_cast<char>((value >> (8 * i)) & 0xff);
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

struct TensorSpec {
  std::string name;
  std::string storage_type;  // "FloatStorage"
  std::string key;
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> size;
  std::vector<int64_t> stride;
};

// _rebuild_tensor_v2(('storage', torch.<Type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict()),
// as torch.save writes it.
void emit_tensor(PickleBuilder& pickle, const TensorSpec& tensor) {
  pickle.global("torch._utils", "_rebuild_tensor_v2").mark();
  pickle.mark().unicode("storage").global("torch", tensor.storage_type).unicode(tensor.key).unicode("cpu");
  pickle.integer(tensor.storage_numel).tuple().op('Q');
  pickle.integer(tensor.offset).integer_tuple(tensor.size).integer_tuple(tensor.stride).op(0x89);
  pickle.global("collections", "OrderedDict").op(')').op('R');
  pickle.tuple().op('R');
}

void emit_state_dict(PickleBuilder& pickle, const std::vector<TensorSpec>& tensors) {
  pickle.op('}').mark();
  for (const auto& tensor : tensors) {
    pickle.unicode(tensor.name);
    emit_tensor(pickle, tensor);
  }
  pickle.op('u');
}

std::string state_dict_pickle(const std::vector<TensorSpec>& tensors) {
  PickleBuilder pickle;
  pickle.proto(2);
  emit_state_dict(pickle, tensors);
  return pickle.stop().bytes();
}

std::span<const std::byte> as_bytes(const std::string& text) { return std::as_bytes(std::span(text)); }

// ---- building zips by hand ----

using ZipEntries = std::vector<std::pair<std::string, std::string>>;

void write_zip(const fs::path& path, const ZipEntries& entries) {
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(archive, nullptr) << "zip_open error " << error;
  for (const auto& [name, bytes] : entries) {
    zip_source_t* source = zip_source_buffer(archive, bytes.data(), bytes.size(), 0);
    const zip_int64_t index = zip_file_add(archive, name.c_str(), source, ZIP_FL_OVERWRITE);
    ASSERT_GE(index, 0) << zip_strerror(archive);
    zip_set_file_compression(archive, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0);
  }
  ASSERT_EQ(zip_close(archive), 0) << zip_strerror(archive);
}

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::string f32_storage(const std::vector<float>& values) { return bytes_of(values); }

std::string f16_storage(const std::vector<float>& values) {
  std::vector<uint16_t> halves;
  for (const float value : values) halves.push_back(float_to_half(value));
  return bytes_of(halves);
}

// A checkpoint zip in torch's layout: <root>/data.pkl, <root>/data/<key>, <root>/version.
fs::path write_checkpoint(const TempDir& dir, const std::string& pickle, const ZipEntries& storages,
                          const std::string& file_name = "model.bin") {
  ZipEntries entries = {{"archive/data.pkl", pickle}};
  for (const auto& [key, bytes] : storages) entries.emplace_back("archive/data/" + key, bytes);
  entries.emplace_back("archive/version", "3\n");
  const fs::path path = dir / file_name;
  write_zip(path, entries);
  return path;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a halfserve::Error";
  return "";
}

std::string open_error(const fs::path& path) {
  return error_of([&] { open_torch_checkpoint(path.string()); });
}

std::string pickle_error(const std::string& pickle) {
  return error_of([&] { read_restricted_pickle(as_bytes(pickle), "test.pkl"); });
}

// The small valid checkpoint several tests start from: F32 [2, 3] at offset 2 of an 8-element storage, F32 [2]
// sharing that storage, F16 [4] at offset 1 of a 5-element storage.
const std::vector<float> kFloatStorage = {-1.f, -2.f, 0.5f, 1.25f, -3.f, 4.f, 1e-7f, 65504.f};
const std::vector<float> kHalfStorage = {9.f, 0.5f, -2.f, 1024.f, 0.099975586f};

std::vector<TensorSpec> small_tensors() {
  return {{"encoder.weight", "FloatStorage", "0", 8, 2, {2, 3}, {3, 1}},
          {"encoder.tail", "FloatStorage", "0", 8, 6, {2}, {1}},
          {"head.bias", "HalfStorage", "1", 5, 1, {4}, {1}}};
}

ZipEntries small_storages() { return {{"0", f32_storage(kFloatStorage)}, {"1", f16_storage(kHalfStorage)}}; }

std::vector<float> floats_of(const LoadedTensor& tensor) { return tensor.view.to_float(); }

// ---- the real fixture ----

TEST(TorchCheckpointFixture, EveryTensorMatchesTheSafetensorsTwinByteForByte) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const fs::path folder = fixtures / "torch_bert_tokcls";
  ASSERT_TRUE(is_torch_checkpoint((folder / "pytorch_model.bin").string()));
  EXPECT_FALSE(is_torch_checkpoint((folder / "model.safetensors").string()));
  auto source = open_torch_checkpoint((folder / "pytorch_model.bin").string());
  const SafetensorsFile twin = read_safetensors((folder / "model.safetensors").string());
  EXPECT_EQ(source->format(), "torch");
  EXPECT_TRUE(source->notes().empty());
  ASSERT_EQ(source->tensors().size(), twin.tensors.size());
  for (const SourceTensorInfo& info : source->tensors()) {
    SCOPED_TRACE(info.name);
    const TensorView* expected = twin.tensors.find(info.name);
    ASSERT_NE(expected, nullptr);
    EXPECT_EQ(info.dtype, expected->dtype);
    EXPECT_EQ(info.shape, expected->shape);
    const LoadedTensor loaded = source->read(info.name);
    EXPECT_EQ(loaded.view.dtype, expected->dtype);
    EXPECT_EQ(loaded.view.shape, expected->shape);
    ASSERT_EQ(loaded.view.data.size(), expected->data.size());
    EXPECT_EQ(std::memcmp(loaded.view.data.data(), expected->data.data(), expected->data.size()), 0);
  }
  EXPECT_EQ(source->tensors().front().name, "bert.embeddings.word_embeddings.weight");
}

// ---- valid hand-built checkpoints ----

TEST(TorchCheckpoint, ReadsExactValuesAtStorageOffsets) {
  TempDir dir;
  const fs::path path = write_checkpoint(dir, state_dict_pickle(small_tensors()), small_storages());
  ASSERT_TRUE(is_torch_checkpoint(path.string()));
  auto source = open_torch_checkpoint(path.string());
  ASSERT_EQ(source->tensors().size(), 3u);
  EXPECT_EQ(source->tensors()[0].name, "encoder.weight");
  EXPECT_EQ(source->tensors()[0].dtype, DType::f32);
  EXPECT_EQ(source->tensors()[0].shape, (Shape{2, 3}));
  EXPECT_EQ(source->tensors()[2].dtype, DType::f16);
  EXPECT_EQ(source->tensors()[2].shape, (Shape{4}));

  const LoadedTensor weight = source->read("encoder.weight");
  EXPECT_EQ(floats_of(weight), (std::vector<float>{0.5f, 1.25f, -3.f, 4.f, 1e-7f, 65504.f}));
  const LoadedTensor bias = source->read("head.bias");
  EXPECT_EQ(bias.view.dtype, DType::f16);
  EXPECT_EQ(floats_of(bias), (std::vector<float>{0.5f, -2.f, 1024.f, 0.099975586f}));
  const LoadedTensor tail = source->read("encoder.tail");
  EXPECT_EQ(floats_of(tail), (std::vector<float>{1e-7f, 65504.f}));
  // Both views of storage "0" were served from one load of it.
  EXPECT_EQ(weight.owner.get(), tail.owner.get());
  EXPECT_NE(weight.owner.get(), bias.owner.get());
}

TEST(TorchCheckpoint, ViewsOutliveTheSourceThroughTheirOwner) {
  TempDir dir;
  const fs::path path = write_checkpoint(dir, state_dict_pickle(small_tensors()), small_storages());
  LoadedTensor weight;
  {
    auto source = open_torch_checkpoint(path.string());
    weight = source->read("encoder.weight");
  }
  EXPECT_EQ(weight.view.float_at(5), 65504.f);
}

TEST(TorchCheckpoint, SkipsNonTensorEntriesWithANote) {
  TempDir dir;
  PickleBuilder pickle;
  pickle.proto(2).op('}').mark();
  pickle.unicode("encoder.weight");
  emit_tensor(pickle, small_tensors()[0]);
  pickle.unicode("step").integer(1234).unicode("lr").op('G').raw(std::string("\x3f\x50\x62\x4d\xd2\xf1\xa9\xfc", 8));
  pickle.op('u').stop();
  auto source = open_torch_checkpoint(write_checkpoint(dir, pickle.bytes(), small_storages()).string());
  ASSERT_EQ(source->tensors().size(), 1u);
  ASSERT_EQ(source->notes().size(), 2u);
  EXPECT_TRUE(Contains(source->notes()[0], "'step'"));
  EXPECT_TRUE(Contains(source->notes()[1], "'lr': a float"));
}

TEST(TorchCheckpoint, UnwrapsAStateDictNestedOneLevelDown) {
  for (const std::string wrapper : {"state_dict", "model"}) {
    SCOPED_TRACE(wrapper);
    TempDir dir;
    PickleBuilder pickle;
    pickle.proto(2).op('}').mark().unicode("epoch").integer(7).unicode(wrapper);
    emit_state_dict(pickle, small_tensors());
    pickle.op('u').stop();
    auto source = open_torch_checkpoint(write_checkpoint(dir, pickle.bytes(), small_storages()).string());
    ASSERT_EQ(source->tensors().size(), 3u);
    ASSERT_EQ(source->notes().size(), 1u);
    EXPECT_TRUE(Contains(source->notes()[0], "'" + wrapper + "'"));
    EXPECT_EQ(floats_of(source->read("encoder.tail")), (std::vector<float>{1e-7f, 65504.f}));
  }
}

// What torch.save(model.state_dict()) writes with nn.Parameters and an OrderedDict carrying _metadata, here in
// protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL, BINGET of memoized globals).
TEST(TorchCheckpoint, ReadsOrderedDictParametersAndProtocolFour) {
  TempDir dir;
  PickleBuilder pickle;
  pickle.proto(4).op(0x95).little_endian(0, 8);
  pickle.short_unicode("collections").short_unicode("OrderedDict").op(0x93).op(0x94);  // memo 0
  pickle.op(')').op('R').op(0x94).mark();                                                // memo 1: the dict
  pickle.short_unicode("w").short_unicode("torch._utils").short_unicode("_rebuild_parameter").op(0x93);
  pickle.short_unicode("torch._utils").short_unicode("_rebuild_tensor_v2").op(0x93).mark();
  pickle.mark().short_unicode("storage").short_unicode("torch").short_unicode("FloatStorage").op(0x93);
  pickle.short_unicode("0").short_unicode("cuda:0").integer(8).tuple().op('Q');
  pickle.integer(2).integer_tuple({3, 2}).integer_tuple({2, 1}).op(0x88).get(0).op(')').op('R').tuple().op('R');
  pickle.op(0x88).get(0).op(')').op('R').op(0x87).op('R');  // _rebuild_parameter(tensor, True, OrderedDict())
  pickle.op('u');
  // BUILD with {'_metadata': {'': {'version': 1}}}: state the reader drops.
  pickle.op('}').short_unicode("_metadata").op('}').short_unicode("").op('}').short_unicode("version").integer(1);
  pickle.op('s').op('s').op('s').op('b').stop();
  auto source = open_torch_checkpoint(write_checkpoint(dir, pickle.bytes(), small_storages()).string());
  ASSERT_EQ(source->tensors().size(), 1u);
  EXPECT_EQ(source->tensors()[0].shape, (Shape{3, 2}));
  EXPECT_EQ(floats_of(source->read("w")), (std::vector<float>{0.5f, 1.25f, -3.f, 4.f, 1e-7f, 65504.f}));
}

TEST(TorchCheckpoint, AcceptsStridesOfSizeOneDimensionsAndEmptyTensors) {
  TempDir dir;
  const std::vector<TensorSpec> tensors = {{"column", "FloatStorage", "0", 8, 0, {3, 1}, {1, 7}},
                                           {"empty", "FloatStorage", "0", 8, 8, {0, 4}, {9, 9}}};
  auto source = open_torch_checkpoint(write_checkpoint(dir, state_dict_pickle(tensors), small_storages()).string());
  EXPECT_EQ(floats_of(source->read("column")), (std::vector<float>{-1.f, -2.f, 0.5f}));
  EXPECT_EQ(source->read("empty").view.data.size(), 0u);
}

TEST(TorchCheckpoint, AStorageFarLargerThanItsTensorsIsRefusedBeforeItIsInflated) {
  // A few hundred bytes of pickle declaring a 1 GiB storage for a 4-element tensor: refused before the entry is
  // opened, so no gigabyte is allocated or inflated.
  TempDir dir;
  const std::vector<TensorSpec> tensors = {{"w", "FloatStorage", "0", int64_t{1} << 28, 0, {4}, {1}}};
  auto source = open_torch_checkpoint(write_checkpoint(dir, state_dict_pickle(tensors), small_storages()).string());
  try {
    source->read("w");
    FAIL() << "a 1 GiB storage for 16 bytes of tensor was read";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "its storage '0' holds 1073741824 bytes but the tensor uses only 16"));
  }
  // A decoy tensor spanning the whole storage (never read by an importer) does not vouch for it.
  const std::vector<TensorSpec> decoyed = {{"decoy", "FloatStorage", "0", int64_t{1} << 28, 0, {int64_t{1} << 28}, {1}},
                                           {"w", "FloatStorage", "0", int64_t{1} << 28, 0, {4}, {1}}};
  auto with_decoy = open_torch_checkpoint(write_checkpoint(dir, state_dict_pickle(decoyed), small_storages()).string());
  EXPECT_THROW(with_decoy->read("w"), Error);
  // Storages a little larger than their views (a saved slice keeps its whole base) still load.
  const std::vector<TensorSpec> slice = {{"w", "FloatStorage", "0", 8, 0, {2}, {1}}};
  auto sliced = open_torch_checkpoint(write_checkpoint(dir, state_dict_pickle(slice), small_storages()).string());
  EXPECT_EQ(floats_of(sliced->read("w")), (std::vector<float>{-1.f, -2.f}));
}

// ---- hostile pickles: nothing may run ----

struct HostilePickle {
  const char* label;
  std::string pickle;
  const char* named;
};

std::vector<HostilePickle> code_running_pickles(const std::string& command) {
  auto call_global = [&](const std::string& module, const std::string& name) {
    return PickleBuilder().proto(2).global(module, name).unicode(command).op(0x85).op('R').stop().bytes();
  };
  auto call_stack_global = [&](const std::string& module, const std::string& name) {
    return PickleBuilder().proto(4).short_unicode(module).short_unicode(name).op(0x93).short_unicode(command)
        .op(0x85).op('R').stop().bytes();
  };
  // A valid tensor first, then an entry whose value would be os.system(command).
  PickleBuilder inside;
  inside.proto(2).op('}').mark().unicode("encoder.weight");
  emit_tensor(inside, small_tensors()[0]);
  inside.unicode("payload").global("os", "system").unicode(command).op(0x85).op('R').op('u').stop();
  return {
      {"GLOBAL os.system", call_global("os", "system"), "'os.system'"},
      {"GLOBAL posix.system", call_global("posix", "system"), "'posix.system'"},
      {"GLOBAL builtins.eval", call_global("builtins", "eval"), "'builtins.eval'"},
      {"GLOBAL subprocess.check_call", call_global("subprocess", "check_call"), "'subprocess.check_call'"},
      {"GLOBAL torch.load", call_global("torch", "load"), "'torch.load'"},
      {"STACK_GLOBAL os.system", call_stack_global("os", "system"), "'os.system'"},
      {"STACK_GLOBAL builtins.exec", call_stack_global("builtins", "exec"), "'builtins.exec'"},
      {"inside a state dict", inside.bytes(), "'os.system'"},
      {"INST os.system", PickleBuilder().proto(2).mark().unicode(command).op('i').raw("os\nsystem\n").stop().bytes(),
       "INST"},
      {"OBJ", PickleBuilder().proto(2).mark().global("os", "system").unicode(command).op('o').stop().bytes(),
       "'os.system'"},
  };
}

TEST(RestrictedPickle, RefusesCodeRunningGlobalsAndRunsNothing) {
  TempDir dir;
  const fs::path marker = dir / "pwned";
  for (const auto& hostile : code_running_pickles("touch '" + marker.string() + "'")) {
    SCOPED_TRACE(hostile.label);
    const std::string direct = pickle_error(hostile.pickle);
    EXPECT_TRUE(Contains(direct, "test.pkl: refusing to load"));
    EXPECT_TRUE(Contains(direct, hostile.named));
    const fs::path path = write_checkpoint(dir, hostile.pickle, small_storages());
    const std::string through_zip = open_error(path);
    EXPECT_TRUE(Contains(through_zip, path.string() + " (archive/data.pkl): refusing to load"));
    EXPECT_TRUE(Contains(through_zip, hostile.named));
    EXPECT_TRUE(Contains(through_zip, "only a state dict's tensors are accepted"));
    EXPECT_FALSE(fs::exists(marker)) << "the pickle's command ran";
  }
}

TEST(RestrictedPickle, ConvertRefusesAHostileCheckpointAndWritesNothing) {
  TempDir dir;
  const fs::path marker = dir / "pwned";
  const auto hostile = code_running_pickles("touch '" + marker.string() + "'").front();
  const fs::path path = write_checkpoint(dir, hostile.pickle, small_storages());
  const fs::path output = dir / "out.safetensors";
  const auto result = halfserve::testing::run_cli("convert '" + path.string() + "' -o '" + output.string() + "'");
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_TRUE(Contains(result.err, "refusing to load: pickle asks for global 'os.system'"));
  EXPECT_FALSE(fs::exists(output));
  EXPECT_FALSE(fs::exists(marker)) << "the pickle's command ran";
}

TEST(RestrictedPickle, RefusesOpcodesAStateDictNeverUses) {
  const std::pair<std::string, const char*> cases[] = {
      {PickleBuilder().proto(2).global("collections", "OrderedDict").op(')').op(0x81).stop().bytes(), "NEWOBJ"},
      {PickleBuilder().proto(4).op(0x92).stop().bytes(), "NEWOBJ_EX"},
      {PickleBuilder().proto(2).op(0x82).op(1).stop().bytes(), "EXT1"},
      {PickleBuilder().proto(2).op(0x84).little_endian(1, 4).stop().bytes(), "EXT4"},
      {PickleBuilder().proto(2).raw("P1\n").stop().bytes(), "PERSID"},
      {PickleBuilder().proto(2).raw("I7\n").stop().bytes(), "INT"},
      {PickleBuilder().proto(5).op(0x97).stop().bytes(), "NEXT_BUFFER"},
      {PickleBuilder().proto(2).op(0xff).stop().bytes(), "unknown pickle opcode 0xff"},
      {PickleBuilder().proto(2).op(0x00).stop().bytes(), "unknown pickle opcode 0x00"},
  };
  for (const auto& [pickle, named] : cases) {
    SCOPED_TRACE(named);
    const std::string message = pickle_error(pickle);
    EXPECT_TRUE(Contains(message, "refusing to load"));
    EXPECT_TRUE(Contains(message, named));
  }
}

TEST(RestrictedPickle, RefusesMisusedAllowedGlobals) {
  const std::pair<std::string, const char*> cases[] = {
      {PickleBuilder().proto(2).global("torch", "FloatStorage").op(')').op('R').stop().bytes(),
       "constructs 'torch.FloatStorage' directly"},
      {PickleBuilder().proto(2).op('}').op('}').op('b').stop().bytes(), "BUILD on a dict"},
      {PickleBuilder().proto(2).op(']').op('}').op('b').stop().bytes(), "BUILD on a list"},
      {PickleBuilder().proto(2).global("collections", "OrderedDict").integer(1).op(0x85).op('R').stop().bytes(),
       "OrderedDict() with arguments"},
      {PickleBuilder().proto(2).unicode("os.system").op(')').op('R').stop().bytes(), "REDUCE applies a string"},
      {PickleBuilder().proto(2).global("torch._utils", "_rebuild_tensor_v2").integer(1).op(0x85).op('R').stop().bytes(),
       "with 1 arguments"},
      {PickleBuilder().proto(2).global("torch._utils", "_rebuild_parameter").integer(1).integer(1).integer(1)
           .op(0x87).op('R').stop().bytes(),
       "wraps an integer"},
  };
  for (const auto& [pickle, named] : cases) {
    SCOPED_TRACE(named);
    EXPECT_TRUE(Contains(pickle_error(pickle), named));
  }
}

TEST(RestrictedPickle, RejectsMalformedStreams) {
  const std::pair<std::string, const char*> cases[] = {
      {PickleBuilder().proto(2).mark().op(0x85).stop().bytes(), "stack underflow"},
      {PickleBuilder().proto(2).stop().bytes(), "stack underflow"},
      {PickleBuilder().proto(2).op('t').stop().bytes(), "no MARK"},
      {PickleBuilder().proto(2).get(3).stop().bytes(), "memo entry 3 is not defined"},
      {PickleBuilder().proto(2).op(']').integer(1).integer(2).op('s').stop().bytes(), "SETITEM on a list"},
      {PickleBuilder().proto(2).op('}').integer(1).op('a').stop().bytes(), "APPEND on a dict"},
      {PickleBuilder().proto(2).op('}').mark().integer(1).op('u').stop().bytes(), "odd number"},
      {PickleBuilder().proto(2).op(0x8a).op(9).raw(std::string(9, '\1')).stop().bytes(), "9 bytes is too large"},
      {PickleBuilder().proto(1).op('N').stop().bytes(), "protocol 1"},
      {PickleBuilder().proto(6).op('N').stop().bytes(), "protocol 6"},
      {PickleBuilder().proto(2).op('T').little_endian(0xffffffff, 4).stop().bytes(), "negative length"},
      {PickleBuilder().proto(2).op('c').raw(std::string(1000, 'a')).stop().bytes(), "longer than"},
      {PickleBuilder().proto(2).integer(5).op('Q').stop().bytes(), "persistent id is an integer"},
      {PickleBuilder().proto(2).mark().unicode("storage").unicode("FloatStorage").unicode("0").unicode("cpu")
           .integer(4).tuple().op('Q').stop().bytes(),
       "not a torch.<Type>Storage"},
      {PickleBuilder().proto(2).mark().unicode("storage").global("torch", "FloatStorage").unicode("0").unicode("cpu")
           .integer(-4).tuple().op('Q').stop().bytes(),
       "element count"},
      {PickleBuilder().proto(4).op(0x95).little_endian(1000, 8).op('N').stop().bytes(), "frame of 1000 bytes"},
      {PickleBuilder().proto(2).op('N').bytes(), "without STOP"},
      {std::string(), "without STOP"},
  };
  for (const auto& [pickle, named] : cases) {
    SCOPED_TRACE(named);
    const std::string message = pickle_error(pickle);
    EXPECT_TRUE(Contains(message, "test.pkl: invalid pickle"));
    EXPECT_TRUE(Contains(message, named));
  }
}

TEST(RestrictedPickle, ReadsScalarsAsPickleEncodesThem) {
  PickleBuilder pickle;
  pickle.proto(2).mark().integer(-5).integer(70000).integer(int64_t{1} << 40).op(0x8a).op(2).little_endian(0xff7f, 2);
  pickle.op(0x8a).op(0).op('N').op(0x88).op('U').op(3).raw("abc").op(0x8d).little_endian(2, 8).raw("xy");
  pickle.op('G').raw(std::string("\xc0\x04\x00\x00\x00\x00\x00\x00", 8)).tuple().stop();
  const PickleDocument document = read_restricted_pickle(as_bytes(pickle.bytes()), "test.pkl");
  const auto& items = document.root().items;
  ASSERT_EQ(items.size(), 10u);
  EXPECT_EQ(items[0]->integer, -5);
  EXPECT_EQ(items[1]->integer, 70000);
  EXPECT_EQ(items[2]->integer, int64_t{1} << 40);
  EXPECT_EQ(items[3]->integer, -129);  // LONG1 bytes 7f ff: two's complement 0xff7f
  EXPECT_EQ(items[4]->integer, 0);
  EXPECT_EQ(items[5]->kind, PickleKind::none);
  EXPECT_EQ(items[6]->integer, 1);
  EXPECT_EQ(items[7]->text, "abc");
  EXPECT_EQ(items[8]->text, "xy");
  EXPECT_EQ(items[9]->floating, -2.5);
}

TEST(RestrictedPickle, RejectsEveryTruncation) {
  const std::string pickle = state_dict_pickle(small_tensors());
  ASSERT_NO_THROW(read_restricted_pickle(as_bytes(pickle), "test.pkl"));
  for (size_t length = 0; length < pickle.size(); ++length) {
    SCOPED_TRACE(length);
    EXPECT_THROW(read_restricted_pickle(as_bytes(pickle.substr(0, length)), "test.pkl"), Error);
  }
}

TEST(RestrictedPickle, BoundsNestingStackMemoAndObjects) {
  EXPECT_TRUE(Contains(pickle_error(PickleBuilder().proto(2).raw(std::string(100000, '(')).stop().bytes()),
                       "open MARKs"));
  PickleBuilder tuples;
  tuples.proto(2).op(')');
  for (int i = 0; i < 100000; ++i) tuples.op(0x85);
  EXPECT_TRUE(Contains(pickle_error(tuples.stop().bytes()), "nested more than 64 deep"));
  PickleBuilder lists;
  lists.proto(2);
  for (int i = 0; i < 100; ++i) lists.op(']');
  for (int i = 0; i < 99; ++i) lists.op('a');
  EXPECT_TRUE(Contains(pickle_error(lists.stop().bytes()), "nested more than 64 deep"));
  EXPECT_TRUE(Contains(pickle_error(PickleBuilder().proto(2).raw(std::string(100000, 'N')).stop().bytes()),
                       "stack deeper than"));

  PickleLimits small;
  small.max_objects = 10;
  small.max_memo_entries = 3;
  const std::string many = PickleBuilder().proto(2).mark().raw(std::string(20, ']')).tuple().stop().bytes();
  EXPECT_TRUE(Contains(error_of([&] { read_restricted_pickle(as_bytes(many), "x", small); }), "more than 10 objects"));
  const std::string memoized = PickleBuilder().proto(4).op(']').op(0x94).op(0x94).op(0x94).op(0x94).stop().bytes();
  EXPECT_TRUE(Contains(error_of([&] { read_restricted_pickle(as_bytes(memoized), "x", small); }), "more than 3 memo"));
}

// A list that contains itself is legal pickle; the arena makes it harmless (no leak, no endless walk).
TEST(RestrictedPickle, SelfReferenceIsHarmless) {
  const std::string pickle = PickleBuilder().proto(2).op(']').put(0).get(0).op('a').stop().bytes();
  const PickleDocument document = read_restricted_pickle(as_bytes(pickle), "test.pkl");
  ASSERT_EQ(document.root().items.size(), 1u);
  EXPECT_EQ(document.root().items[0], &document.root());
  TempDir dir;
  EXPECT_TRUE(Contains(open_error(write_checkpoint(dir, pickle, {})), "holds a list, not a dict of tensors"));
}

// ---- broken checkpoints ----

TEST(TorchCheckpoint, ShortStorageEntryNamesTheTensor) {
  TempDir dir;
  ZipEntries storages = small_storages();
  storages[1].second.resize(6);  // 3 halves of 5
  auto source = open_torch_checkpoint(write_checkpoint(dir, state_dict_pickle(small_tensors()), storages).string());
  EXPECT_NO_THROW(source->read("encoder.weight"));
  const std::string message = error_of([&] { source->read("head.bias"); });
  EXPECT_TRUE(Contains(message, "tensor 'head.bias'"));
  EXPECT_TRUE(Contains(message, "holds 6 bytes but its F16 storage of 5 elements needs 10 (truncated?)"));

  storages[1].second.resize(12);  // longer than declared is just as wrong
  source = open_torch_checkpoint(write_checkpoint(dir, state_dict_pickle(small_tensors()), storages).string());
  EXPECT_TRUE(Contains(error_of([&] { source->read("head.bias"); }), "holds 12 bytes"));
}

TEST(TorchCheckpoint, MissingStorageEntryNamesTheTensor) {
  TempDir dir;
  ZipEntries storages = small_storages();
  storages.pop_back();
  auto source = open_torch_checkpoint(write_checkpoint(dir, state_dict_pickle(small_tensors()), storages).string());
  EXPECT_TRUE(Contains(error_of([&] { source->read("head.bias"); }),
                       "tensor 'head.bias': its storage entry 'archive/data/1' is missing"));
  EXPECT_TRUE(Contains(error_of([&] { source->read("nope"); }), "no tensor named 'nope'"));
}

TEST(TorchCheckpoint, RejectsBadTensorLayouts) {
  const std::pair<TensorSpec, const char*> cases[] = {
      {{"transposed", "FloatStorage", "0", 8, 0, {2, 3}, {1, 2}}, "tensor 'transposed' has strides [1, 2] for shape [2, 3]: not contiguous"},
      {{"gapped", "FloatStorage", "0", 8, 0, {2, 2}, {4, 1}}, "not contiguous"},
      {{"past_end", "FloatStorage", "0", 8, 3, {2, 3}, {3, 1}}, "tensor 'past_end' of 6 elements at offset 3 runs past"},
      {{"negative_offset", "FloatStorage", "0", 8, -1, {2}, {1}}, "at offset -1"},
      {{"negative_dim", "FloatStorage", "0", 8, 0, {-2}, {1}}, "negative dimension"},
      {{"huge", "FloatStorage", "0", 8, 0, {1 << 30, 1 << 30, 1 << 30}, {1, 1, 1}}, "is too large"},
      {{"stride_count", "FloatStorage", "0", 8, 0, {2, 3}, {1}}, "1 strides for 2 dimensions"},
      {{"nine_dims", "FloatStorage", "0", 8, 0, {1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1}}, "9 dimensions"},
      {{"huge_storage", "DoubleStorage", "0", int64_t{1} << 60, 0, {2}, {1}}, "over the limit"},
  };
  for (const auto& [spec, named] : cases) {
    SCOPED_TRACE(spec.name);
    TempDir dir;
    const std::string message = open_error(write_checkpoint(dir, state_dict_pickle({spec}), small_storages()));
    EXPECT_TRUE(Contains(message, named));
    EXPECT_TRUE(Contains(message, "invalid torch checkpoint"));
  }
}

TEST(TorchCheckpoint, RejectsConflictingViewsOfOneStorageAndRepeatedNames) {
  TempDir dir;
  std::vector<TensorSpec> tensors = small_tensors();
  tensors[2].key = "0";  // a HalfStorage view of the FloatStorage "0"
  EXPECT_TRUE(Contains(open_error(write_checkpoint(dir, state_dict_pickle(tensors), small_storages())),
                       "tensor 'head.bias' views storage '0' as F16 of 5 elements but tensor 'encoder.weight' views "
                       "it as F32 of 8"));
  tensors = small_tensors();
  tensors[1].name = tensors[0].name;
  EXPECT_TRUE(Contains(open_error(write_checkpoint(dir, state_dict_pickle(tensors), small_storages())),
                       "tensor 'encoder.weight' appears twice"));
}

TEST(TorchCheckpoint, RejectsFilesThatAreNotTorchCheckpoints) {
  TempDir dir;
  const fs::path plain_zip = dir / "plain.zip";
  write_zip(plain_zip, {{"hello.txt", "hi"}, {"a/b/data.pkl", "nested too deep"}});
  EXPECT_FALSE(is_torch_checkpoint(plain_zip.string()));
  EXPECT_TRUE(Contains(open_error(plain_zip), "no <root>/data.pkl entry"));

  const fs::path two_roots = dir / "two.zip";
  write_zip(two_roots, {{"a/data.pkl", "x"}, {"b/data.pkl", "y"}});
  EXPECT_TRUE(Contains(open_error(two_roots), "2 <root>/data.pkl entries"));

  const fs::path text = dir / "notes.txt";
  std::ofstream(text) << "not a checkpoint";
  EXPECT_FALSE(is_torch_checkpoint(text.string()));
  EXPECT_TRUE(Contains(open_error(text), "not a zip archive"));

  const fs::path legacy = dir / "legacy.bin";
  std::ofstream(legacy, std::ios::binary) << PickleBuilder().proto(2).op(0x8a).op(10).raw("0123456789").bytes();
  EXPECT_FALSE(is_torch_checkpoint(legacy.string()));
  EXPECT_TRUE(Contains(open_error(legacy), "legacy (torch < 1.6) pickle format"));

  const fs::path broken_zip = dir / "broken.bin";
  std::ofstream(broken_zip, std::ios::binary) << "PK\x03\x04 and then nothing sensible";
  EXPECT_FALSE(is_torch_checkpoint(broken_zip.string()));
  EXPECT_TRUE(Contains(open_error(broken_zip), "not a readable zip archive"));

  EXPECT_FALSE(is_torch_checkpoint((dir / "absent.bin").string()));
  EXPECT_TRUE(Contains(open_error(dir / "absent.bin"), "no such file"));
  EXPECT_FALSE(is_torch_checkpoint(dir.path().string()));
}

TEST(TorchCheckpoint, RejectsOversizedPickleAndBigEndianStorages) {
  TempDir dir;
  const fs::path big_endian = dir / "big.bin";
  write_zip(big_endian, {{"archive/data.pkl", state_dict_pickle(small_tensors())}, {"archive/byteorder", "big"}});
  EXPECT_TRUE(Contains(open_error(big_endian), "'big'-endian"));
  const fs::path little_endian = dir / "little.bin";
  write_zip(little_endian, {{"archive/data.pkl", state_dict_pickle(small_tensors())}, {"archive/byteorder", "little"}});
  EXPECT_NO_THROW(open_torch_checkpoint(little_endian.string()));

  const fs::path oversized = dir / "oversized.bin";
  write_zip(oversized, {{"archive/data.pkl", std::string(kMaxTorchPickleBytes + 1, 'N')}});
  EXPECT_TRUE(Contains(open_error(oversized), "over the limit of"));
}

TEST(TorchCheckpoint, RejectsCorruptedStorageBytes) {
  TempDir dir;
  const fs::path path = write_checkpoint(dir, state_dict_pickle(small_tensors()), small_storages());
  std::string bytes = testing::read_all(path);
  const std::string original = f16_storage(kHalfStorage);
  const size_t at = bytes.find(original);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 3] ^= 0x40;  // the CRC no longer matches
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  auto source = open_torch_checkpoint(path.string());
  const std::string message = error_of([&] { source->read("head.bias"); });
  EXPECT_TRUE(Contains(message, "archive/data/1"));
  EXPECT_TRUE(Contains(message, "tensor 'head.bias'"));
}

TEST(TorchCheckpoint, RejectsEncryptedEntries) {
  TempDir dir;
  const fs::path path = dir / "encrypted.bin";
  const std::string pickle = state_dict_pickle(small_tensors());
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(archive, nullptr);
  const zip_int64_t index = zip_file_add(archive, "archive/data.pkl",
                                         zip_source_buffer(archive, pickle.data(), pickle.size(), 0), 0);
  ASSERT_GE(index, 0);
  if (zip_file_set_encryption(archive, static_cast<zip_uint64_t>(index), ZIP_EM_AES_256, "secret") != 0) {
    zip_discard(archive);
    HALFSERVE_MISSING_PREREQUISITE("this libzip cannot write encrypted entries");
  }
  ASSERT_EQ(zip_close(archive), 0);
  EXPECT_TRUE(Contains(open_error(path), "zip entry 'archive/data.pkl' is encrypted"));
}

// ---- mutation loops: any outcome but a crash or a foreign exception ----

void load_everything(const std::string& path) {
  auto source = open_torch_checkpoint(path);
  for (const auto& info : source->tensors()) {
    const LoadedTensor tensor = source->read(info.name);
    ASSERT_EQ(tensor.view.data.size(), static_cast<size_t>(tensor.view.numel()) * dtype_size(tensor.view.dtype));
  }
}

std::string mutate(std::string bytes, std::mt19937& random) {
  std::uniform_int_distribution<int> byte(0, 255);
  switch (random() % 4) {
    case 0:  // flip a few bytes
      for (int i = 0, n = 1 + static_cast<int>(random() % 4); i < n && !bytes.empty(); ++i)
        bytes[random() % bytes.size()] = static_cast<char>(byte(random));
      break;
    case 1:  // truncate
      bytes.resize(random() % (bytes.size() + 1));
      break;
    case 2:  // insert a random byte
      bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(random() % (bytes.size() + 1)),
                   static_cast<char>(byte(random)));
      break;
    default:  // set a byte to an interesting boundary value
      if (!bytes.empty()) bytes[random() % bytes.size()] = static_cast<char>("\x00\x7f\x80\xff"[random() % 4]);
  }
  return bytes;
}

TEST(TorchCheckpoint, MutatedPicklesLoadOrThrowError) {
  TempDir dir;
  const std::string pickle = state_dict_pickle(small_tensors());
  const ZipEntries storages = small_storages();
  std::mt19937 random(20240611);
  int loaded = 0;
  for (int iteration = 0; iteration < 300; ++iteration) {
    SCOPED_TRACE(iteration);
    const fs::path path = write_checkpoint(dir, mutate(pickle, random), storages);
    try {
      load_everything(path.string());
      ++loaded;
    } catch (const Error&) {
    }
  }
  EXPECT_LT(loaded, 300);
}

TEST(RestrictedPickle, MutatedFixturePicklesParseOrThrowError) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  int error = 0;
  zip_t* archive = zip_open((fixtures / "torch_bert_tokcls" / "pytorch_model.bin").c_str(), ZIP_RDONLY, &error);
  ASSERT_NE(archive, nullptr);
  zip_stat_t stat;
  ASSERT_EQ(zip_stat(archive, "pytorch_model/data.pkl", 0, &stat), 0);
  std::string pickle(stat.size, '\0');
  zip_file_t* file = zip_fopen(archive, "pytorch_model/data.pkl", 0);
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(zip_fread(file, pickle.data(), pickle.size()), static_cast<zip_int64_t>(pickle.size()));
  zip_fclose(file);
  zip_discard(archive);
  ASSERT_EQ(read_restricted_pickle(as_bytes(pickle), "fixture").root().entries.size(), 39u);

  std::mt19937 random(7);
  for (int iteration = 0; iteration < 500; ++iteration) {
    SCOPED_TRACE(iteration);
    const std::string mutated = mutate(pickle, random);
    try {
      read_restricted_pickle(as_bytes(mutated), "fixture");
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace halfserve
