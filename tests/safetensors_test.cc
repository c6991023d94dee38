// Tests for src/format/safetensors.cc: layout/write/read round trips, every kind of corruption (each must be a
// halfserve::Error naming the file and the problem, never a crash), real files written by PyTorch/safetensors,
// and a deterministic mutation loop.
#include "halfserve/format/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "halfserve/util/error.h"
#include "halfserve/util/half.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::Contains;
using testing::read_all;

namespace fs = std::filesystem;
using nlohmann::json;

void write_all(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64_le(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file from a raw header text and a raw data area, with no checking at all.
std::string raw_file(const std::string& header, const std::string& data) { return u64_le(header.size()) + header + data; }

void write_raw(const fs::path& path, const std::string& header, const std::string& data) {
  write_all(path, raw_file(header, data));
}

// The bytes of a vector that outlives the views made from it.
template <typename T>
std::span<const std::byte> bytes_of(const std::vector<T>& values, size_t size) {
  EXPECT_LE(size, values.size() * sizeof(T));
  return std::as_bytes(std::span<const T>(values)).first(size);
}

std::vector<std::byte> copy_bytes(const void* data, size_t size) {
  std::vector<std::byte> out(size);
  std::memcpy(out.data(), data, size);
  return out;
}

// Expects read_safetensors(path) to throw halfserve::Error whose message names the path and contains every
// one of `fragments`; returns the message.
std::string expect_error(const fs::path& path, const std::vector<std::string>& fragments) {
  try {
    read_safetensors(path.string());
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_TRUE(Contains(message, path.string())) << "message does not name the file";
    for (const auto& fragment : fragments) EXPECT_TRUE(Contains(message, fragment));
    return message;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected halfserve::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected halfserve::Error for " << path << ", but the file was accepted";
  return "";
}

// The data of a small valid file with two tensors: "a" F32 [2] at [0, 8) and "b" F32 [1] at [8, 12).
const std::string kTwelveBytes = std::string(12, '\x01');

class SafetensorsTest : public ::testing::Test {
 protected:
  fs::path file(const std::string& name) const { return dir_ / name; }
  halfserve::testing::TempDir dir_;
};

TEST_F(SafetensorsTest, RoundTripKeepsDtypesShapesBytesAndMetadata) {
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
  std::vector<uint16_t> f16;
  for (float v : {0.5f, -1.0f, 65504.0f, 2.0f, 0.25f}) f16.push_back(float_to_half(v));
  const std::vector<uint16_t> bf16 = {float_to_bfloat16(3.0f), float_to_bfloat16(-7.5f)};
  const std::vector<int64_t> i64 = {-1, 1LL << 40};
  const std::vector<uint8_t> u8 = {7, 8, 9};
  const std::vector<double> f64 = {3.141592653589793};

  const auto f32_bytes = copy_bytes(f32.data(), f32.size() * 4);
  const auto f16_bytes = copy_bytes(f16.data(), f16.size() * 2);
  const auto bf16_bytes = copy_bytes(bf16.data(), bf16.size() * 2);
  const auto i64_bytes = copy_bytes(i64.data(), i64.size() * 8);
  const auto u8_bytes = copy_bytes(u8.data(), u8.size());
  const auto f64_bytes = copy_bytes(f64.data(), f64.size() * 8);

  // Deliberately listed smallest element first so the layout has to reorder for alignment.
  std::vector<NamedTensor> tensors = {
      {"odd.u8", {DType::u8, {3}, u8_bytes}},
      {"half", {DType::f16, {5}, f16_bytes}},
      {"matrix", {DType::f32, {2, 3}, f32_bytes}},
      {"brain", {DType::bf16, {1, 2}, bf16_bytes}},
      {"longs", {DType::i64, {2}, i64_bytes}},
      {"scalar", {DType::f64, {}, f64_bytes}},
      {"empty", {DType::f32, {0, 4}, {}}},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "逗号，ok"}, {"empty", ""}};
  const SafetensorsLayout layout(tensors, metadata);
  const fs::path path = file("round.safetensors");
  layout.write(path.string());

  ASSERT_TRUE(fs::exists(path));
  EXPECT_EQ(layout.file_size(), fs::file_size(path));

  // The data area starts on a 64-byte boundary, and the header parses as JSON on its own (as Python would).
  const std::string raw = read_all(path);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
  EXPECT_EQ((8 + header_size) % 64, 0u) << "data area must start 64-byte aligned";
  const json header = json::parse(raw.substr(8, header_size));
  ASSERT_TRUE(header.is_object());
  EXPECT_EQ(header.size(), tensors.size() + 1);
  EXPECT_EQ(header["__metadata__"]["note"], "逗号，ok");
  EXPECT_EQ(header["matrix"]["dtype"], "F32");
  EXPECT_EQ(header["brain"]["dtype"], "BF16");

  const SafetensorsFile read = read_safetensors(path.string());
  EXPECT_EQ(read.metadata, metadata);
  ASSERT_EQ(read.tensors.size(), tensors.size());
  const std::byte* data_start = read.file->bytes().data() + 8 + header_size;
  for (const auto& expected : tensors) {
    SCOPED_TRACE(expected.name);
    const TensorView* view = read.tensors.find(expected.name);
    ASSERT_NE(view, nullptr);
    EXPECT_EQ(view->dtype, expected.view.dtype);
    EXPECT_EQ(view->shape, expected.view.shape);
    EXPECT_TRUE(std::equal(view->data.begin(), view->data.end(), expected.view.data.begin(), expected.view.data.end()));
    // Every tensor starts aligned to its element size within the (64-byte aligned) data area.
    const auto offset = static_cast<size_t>(view->data.data() - data_start);
    EXPECT_EQ(offset % dtype_size(view->dtype), 0u);
    // The views point inside the mapped file.
    EXPECT_GE(view->data.data(), data_start);
    EXPECT_LE(view->data.data() + view->data.size(), read.file->bytes().data() + read.file->bytes().size());
  }
  EXPECT_EQ(read.tensors.at("matrix").to_float(), f32);
  EXPECT_EQ(read.tensors.at("half").to_float(), (std::vector<float>{0.5f, -1.0f, 65504.0f, 2.0f, 0.25f}));
  EXPECT_EQ(read.tensors.at("brain").to_float(), (std::vector<float>{3.0f, -7.5f}));
}

TEST_F(SafetensorsTest, TensorsComeBackInDataOffsetOrder) {
  const std::vector<float> a = {1, 2}, b = {3};
  const SafetensorsLayout layout({{"z_first", {DType::f32, {2}, bytes_of(a, 8)}},
                                  {"a_second", {DType::f32, {1}, bytes_of(b, 4)}}},
                                 {});
  const fs::path path = file("order.safetensors");
  layout.write(path.string());
  const SafetensorsFile read = read_safetensors(path.string());
  EXPECT_EQ(read.tensors.names(), (std::vector<std::string>{"z_first", "a_second"}));
  EXPECT_TRUE(read.metadata.empty());
  EXPECT_EQ(layout.file_size(), fs::file_size(path));
}

TEST_F(SafetensorsTest, EmptyFileWithNoTensorsRoundTrips) {
  const SafetensorsLayout layout({}, {});
  const fs::path path = file("empty.safetensors");
  layout.write(path.string());
  EXPECT_EQ(layout.file_size(), fs::file_size(path));
  EXPECT_EQ(fs::file_size(path) % 64, 0u);
  const SafetensorsFile read = read_safetensors(path.string());
  EXPECT_EQ(read.tensors.size(), 0u);
  EXPECT_TRUE(read.metadata.empty());
}

TEST_F(SafetensorsTest, WriteLeavesNoTemporaryFiles) {
  const std::vector<float> a = {1, 2};
  const SafetensorsLayout layout({{"a", {DType::f32, {2}, bytes_of(a, 8)}}}, {});
  layout.write(file("one.safetensors").string());
  layout.write(file("one.safetensors").string());  // overwriting an existing file works too
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_.path())) names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"one.safetensors"});
}

TEST_F(SafetensorsTest, LayoutRejectsByteCountNotMatchingShape) {
  const std::vector<float> a = {1, 2, 3};
  try {
    SafetensorsLayout layout({{"short_tensor", {DType::f32, {4}, bytes_of(a, 12)}}}, {});
    FAIL() << "a tensor with 12 bytes for F32 [4] was accepted";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(std::string(e.what()), "short_tensor"));
  }
}

TEST_F(SafetensorsTest, LayoutRejectsRepeatedAndReservedNames) {
  const std::vector<float> a = {1, 2};
  const TensorView view{DType::f32, {2}, bytes_of(a, 8)};
  EXPECT_THROW(SafetensorsLayout({{"twice", view}, {"twice", view}}, {}), Error);
  EXPECT_THROW(SafetensorsLayout({{"__metadata__", view}}, {}), Error);
  EXPECT_THROW(SafetensorsLayout({{"__metadata__", view}}, {{"format", "pt"}}), Error);
}

TEST_F(SafetensorsTest, MissingFileIsAnError) { expect_error(file("does-not-exist.safetensors"), {"cannot open"}); }

TEST_F(SafetensorsTest, FileShorterThanEightBytes) {
  const fs::path path = file("short.safetensors");
  write_all(path, "\x05\x00\x00");
  expect_error(path, {"too short"});
  write_all(path, "");
  expect_error(path, {"too short"});
}

TEST_F(SafetensorsTest, HeaderLengthPastEndOfFile) {
  const fs::path path = file("past-end.safetensors");
  write_all(path, u64_le(1000) + "{}");
  expect_error(path, {"header length 1000", "past the end"});
}

TEST_F(SafetensorsTest, HeaderLengthOverTheLimit) {
  const fs::path path = file("huge-header.safetensors");
  write_all(path, u64_le(kMaxSafetensorsHeaderBytes + 1) + "{}");
  expect_error(path, {std::to_string(kMaxSafetensorsHeaderBytes + 1), "limit"});
  // The largest possible length must not overflow any arithmetic.
  write_all(path, u64_le(~0ull) + "{}");
  expect_error(path, {"limit"});
  write_all(path, u64_le(~0ull - 7) + "{}");
  expect_error(path, {"limit"});
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  const fs::path path = file("not-json.safetensors");
  write_raw(path, "{\"a\": {\"dtype\": ", "");
  expect_error(path, {"not valid JSON"});
  write_raw(path, "", "");
  expect_error(path, {"not valid JSON"});
}

TEST_F(SafetensorsTest, HeaderNotAnObject) {
  const fs::path path = file("array.safetensors");
  write_raw(path, "[1, 2, 3]", "");
  expect_error(path, {"not a JSON object"});
  write_raw(path, "\"text\"", "");
  expect_error(path, {"not a JSON object"});
}

TEST_F(SafetensorsTest, TensorEntryNotAnObject) {
  const fs::path path = file("entry.safetensors");
  write_raw(path, R"({"weights": [1, 2]})", "");
  expect_error(path, {"weights", "not a JSON object"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  const fs::path path = file("dtype.safetensors");
  write_raw(path, R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})", std::string(16, '\0'));
  expect_error(path, {"'w'", "unknown dtype", "F128"});
  write_raw(path, R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", std::string(4, '\0'));
  expect_error(path, {"'w'", "dtype"});
  write_raw(path, R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", std::string(4, '\0'));
  expect_error(path, {"'w'", "dtype"});
}

TEST_F(SafetensorsTest, ShapeNotAnArray) {
  const fs::path path = file("shape.safetensors");
  write_raw(path, R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})", std::string(16, '\0'));
  expect_error(path, {"'w'", "shape"});
  write_raw(path, R"({"w": {"dtype": "F32", "data_offsets": [0, 16]}})", std::string(16, '\0'));
  expect_error(path, {"'w'", "shape"});
}

TEST_F(SafetensorsTest, ShapeWithNegativeOrNonIntegerDimension) {
  const fs::path path = file("negative.safetensors");
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}})", std::string(16, '\0'));
  expect_error(path, {"'w'", "shape dimension", "non-negative", "-1"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 10]}})", std::string(10, '\0'));
  expect_error(path, {"'w'", "shape dimension"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": ["4"], "data_offsets": [0, 16]}})", std::string(16, '\0'));
  expect_error(path, {"'w'", "shape dimension"});
}

TEST_F(SafetensorsTest, ShapeWhoseByteCountOverflows) {
  const fs::path path = file("overflow.safetensors");
  write_raw(path,
            R"({"w": {"dtype": "F64", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 0]}})", "");
  expect_error(path, {"'w'", "too large"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 0]}})", "");
  expect_error(path, {"'w'"});
}

TEST_F(SafetensorsTest, DataOffsetsWrongByteCountForShape) {
  const fs::path path = file("count.safetensors");
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})", std::string(12, '\0'));
  expect_error(path, {"'w'", "holds 12 bytes", "needs 16"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", std::string(8, '\0'));
  expect_error(path, {"'w'", "data_offsets"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", std::string(8, '\0'));
  expect_error(path, {"'w'", "data_offsets"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", std::string(8, '\0'));
  expect_error(path, {"'w'", "data_offsets"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const fs::path path = file("overlap.safetensors");
  write_raw(path,
            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
            R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
            kTwelveBytes);
  expect_error(path, {"overlaps", "'a'", "'b'"});
  // Two tensors sharing the very same bytes overlap too.
  write_raw(path,
            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
            R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
            std::string(8, '\0'));
  expect_error(path, {"overlaps"});
}

TEST_F(SafetensorsTest, UnaccountedGapBetweenTensors) {
  const fs::path path = file("gap.safetensors");
  write_raw(path,
            R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
            R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
            kTwelveBytes);
  expect_error(path, {"4 unaccounted bytes", "'b'"});
  // A gap before the first tensor is just as wrong.
  write_raw(path, R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", std::string(8, '\0'));
  expect_error(path, {"unaccounted", "'a'"});
}

TEST_F(SafetensorsTest, TruncatedFile) {
  const std::vector<float> values(64, 0.5f);
  const SafetensorsLayout layout({{"big", {DType::f32, {8, 8}, bytes_of(values, 256)}}}, {{"k", "v"}});
  const fs::path path = file("truncated.safetensors");
  layout.write(path.string());
  ASSERT_NO_THROW(read_safetensors(path.string()));
  fs::resize_file(path, fs::file_size(path) - 1);
  expect_error(path, {"'big'", "truncated"});
  fs::resize_file(path, fs::file_size(path) - 200);
  expect_error(path, {"'big'", "truncated"});
  // Cut inside the header: the header length now runs past the end.
  fs::resize_file(path, 20);
  expect_error(path, {"past the end"});
}

TEST_F(SafetensorsTest, TrailingBytesAfterLastTensor) {
  const std::vector<float> values = {1, 2};
  const SafetensorsLayout layout({{"w", {DType::f32, {2}, bytes_of(values, 8)}}}, {});
  const fs::path path = file("trailing.safetensors");
  layout.write(path.string());
  std::ofstream(path, std::ios::binary | std::ios::app) << "junk";
  expect_error(path, {"4 bytes after the last tensor"});
  // A file whose header describes no tensor but which carries data has trailing bytes too.
  write_raw(path, "{}", "xyz");
  expect_error(path, {"3 bytes after the last tensor"});
}

TEST_F(SafetensorsTest, MetadataValueNotAString) {
  const fs::path path = file("metadata.safetensors");
  write_raw(path, R"({"__metadata__": {"format": "pt", "count": 3}})", "");
  expect_error(path, {"__metadata__", "'count'", "not a string"});
  write_raw(path, R"({"__metadata__": ["format"]})", "");
  expect_error(path, {"__metadata__", "not a JSON object"});
}

TEST_F(SafetensorsTest, InvalidUtf8InHeader) {
  const fs::path path = file("utf8.safetensors");
  write_raw(path, "{\"__metadata__\": {\"k\": \"bad \xff\xfe byte\"}}", "");
  expect_error(path, {"not valid JSON", "UTF-8"});
  // An overlong encoding and a lone continuation byte in a tensor name.
  write_raw(path, "{\"w\xc0\xaf\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}}", "");
  expect_error(path, {"not valid JSON"});
  write_raw(path, "{\"\x80\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}}", "");
  expect_error(path, {"not valid JSON"});
}

TEST_F(SafetensorsTest, DeeplyNestedHeaderIsAnErrorNotACrash) {
  // A million levels deep: refused before parsing, since the JSON library recurses per level.
  const std::string deep = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  const fs::path path = file("nested.safetensors");
  write_raw(path, deep, "");
  expect_error(path, {"nested deeper than 32 levels"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [)" + deep + R"(], "data_offsets": [0, 0]}})", "");
  expect_error(path, {"nested deeper than 32 levels"});
  // Nested within the limit, in places whose error messages quote values: named by type, not dumped.
  const std::string nested = std::string(20, '[') + std::string(20, ']');
  write_raw(path, nested, "");
  expect_error(path, {"not a JSON object"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [)" + nested + R"(], "data_offsets": [0, 0]}})", "");
  expect_error(path, {"'w'", "shape dimension"});
  write_raw(path, R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [)" + nested + R"(, 0]}})", "");
  expect_error(path, {"'w'", "data_offsets"});
  write_raw(path, R"({"__metadata__": {"k": )" + nested + "}}", "");
  expect_error(path, {"'k'", "not a string"});
}

TEST_F(SafetensorsTest, ReadsPyTorchWrittenTokenClassifier) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const fs::path path = fixtures / "torch_bert_tokcls" / "model.safetensors";
  const SafetensorsFile file = read_safetensors(path.string());
  EXPECT_EQ(file.tensors.size(), 39u);
  EXPECT_EQ(file.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  const TensorView& words = file.tensors.at("bert.embeddings.word_embeddings.weight");
  EXPECT_EQ(words.dtype, DType::f32);
  EXPECT_EQ(words.shape, (Shape{57, 32}));
  EXPECT_EQ(words.data.size(), 57u * 32u * 4u);
  // Values as Python's struct module reads them from the file.
  EXPECT_EQ(words.float_at(0), -0.22516797482967377f);
  EXPECT_EQ(words.float_at(57 * 32 - 1), 0.30828970670700073f);
  const TensorView& classifier = file.tensors.at("classifier.weight");
  EXPECT_EQ(classifier.shape, (Shape{4, 32}));
  EXPECT_EQ(classifier.float_at(0), 0.1190498024225235f);
  const TensorView& bias = file.tensors.at("classifier.bias");
  EXPECT_EQ(bias.shape, (Shape{4}));
  EXPECT_EQ(bias.float_at(0), -0.39437827467918396f);
  EXPECT_EQ(bias.float_at(3), -0.019651269540190697f);
  // The tensors account for every byte after the header.
  uint64_t total = 0;
  for (const auto& name : file.tensors.names()) total += file.tensors.at(name).data.size();
  EXPECT_EQ(8 + 4472 + total, fs::file_size(path));
}

TEST_F(SafetensorsTest, ReadsSafetensorsLibraryWrittenBert) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const fs::path path = fixtures / "hf_tiny_bert" / "model.safetensors";
  const SafetensorsFile file = read_safetensors(path.string());
  EXPECT_EQ(file.tensors.size(), 37u);
  EXPECT_TRUE(file.metadata.empty());
  const TensorView& words = file.tensors.at("embeddings.word_embeddings.weight");
  EXPECT_EQ(words.dtype, DType::f32);
  EXPECT_EQ(words.shape, (Shape{256, 32}));
  EXPECT_EQ(words.float_at(0), 0.00609434163197875f);
  EXPECT_EQ(words.float_at(256 * 32 - 1), 0.03413715958595276f);
  EXPECT_EQ(file.tensors.at("embeddings.position_embeddings.weight").shape, (Shape{128, 32}));
  const auto names = file.tensors.names();
  EXPECT_EQ(names.front(), "embeddings.LayerNorm.bias") << "tensors should come back in data-offset order";
  uint64_t total = 0;
  for (const auto& name : names) total += file.tensors.at(name).data.size();
  EXPECT_EQ(8 + 3784 + total, fs::file_size(path));
}

TEST_F(SafetensorsTest, FixtureRewrittenThroughLayoutReadsBackIdentically) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const SafetensorsFile original = read_safetensors((fixtures / "torch_bert_tokcls" / "model.safetensors").string());
  std::vector<NamedTensor> tensors;
  for (const auto& name : original.tensors.names()) tensors.push_back({name, original.tensors.at(name)});
  const SafetensorsLayout layout(tensors, original.metadata);
  const fs::path path = file("rewritten.safetensors");
  layout.write(path.string());
  EXPECT_EQ(layout.file_size(), fs::file_size(path));
  const SafetensorsFile copy = read_safetensors(path.string());
  EXPECT_EQ(copy.metadata, original.metadata);
  ASSERT_EQ(copy.tensors.size(), original.tensors.size());
  for (const auto& name : original.tensors.names()) {
    const TensorView& a = original.tensors.at(name);
    const TensorView* b = copy.tensors.find(name);
    ASSERT_NE(b, nullptr) << name;
    EXPECT_EQ(a.dtype, b->dtype) << name;
    EXPECT_EQ(a.shape, b->shape) << name;
    EXPECT_TRUE(std::equal(a.data.begin(), a.data.end(), b->data.begin(), b->data.end())) << name;
  }
}

// Reads `path`; success and halfserve::Error are both fine, anything else is a failure. On success every view must
// lie inside the mapped file and hold exactly the bytes its dtype and shape need.
void read_must_succeed_or_throw_error(const fs::path& path, const std::string& what) {
  try {
    const SafetensorsFile file = read_safetensors(path.string());
    const auto whole = file.file->bytes();
    for (const auto& name : file.tensors.names()) {
      const TensorView& view = file.tensors.at(name);
      ASSERT_EQ(view.data.size(), static_cast<size_t>(view.numel()) * dtype_size(view.dtype)) << what;
      if (!view.data.empty()) {
        ASSERT_GE(view.data.data(), whole.data()) << what;
        ASSERT_LE(view.data.data() + view.data.size(), whole.data() + whole.size()) << what;
      }
    }
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(std::string(e.what()), path.string())) << what;
  } catch (const std::exception& e) {
    FAIL() << what << ": threw a non-halfserve exception: " << e.what();
  } catch (...) {
    FAIL() << what << ": threw a non-std exception";
  }
}

TEST_F(SafetensorsTest, FuzzedHeadersAndTruncationsNeverEscapeAsOtherExceptions) {
  const std::vector<float> a = {1, 2, 3, 4};
  const std::vector<uint16_t> b = {1, 2, 3};
  const std::vector<uint8_t> c = {9};
  const SafetensorsLayout layout({{"a", {DType::f32, {2, 2}, bytes_of(a, 16)}},
                                  {"b", {DType::f16, {3}, bytes_of(b, 6)}},
                                  {"c", {DType::u8, {1}, bytes_of(c, 1)}}},
                                 {{"format", "pt"}, {"k", "value"}});
  const fs::path valid = file("valid.safetensors");
  layout.write(valid.string());
  const std::string original = read_all(valid);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(original[static_cast<size_t>(i)]);
  const size_t header_end = 8 + header_size;
  ASSERT_LT(header_end, original.size());

  std::mt19937_64 random(20241126);
  const std::string interesting = "{}[]\":,0123456789-.eE \\\xff\x80\x00tfn";
  const fs::path mutated = file("mutated.safetensors");
  int accepted = 0;
  for (int iteration = 0; iteration < 400; ++iteration) {
    std::string bytes = original;
    const int edits = 1 + static_cast<int>(random() % 4);
    for (int e = 0; e < edits; ++e) {
      // Mostly the JSON text, sometimes the length prefix.
      const size_t at = random() % 8 == 0 ? random() % 8 : 8 + random() % header_size;
      switch (random() % 3) {
        case 0: bytes[at] = static_cast<char>(bytes[at] ^ (1 << (random() % 8))); break;
        case 1: bytes[at] = static_cast<char>(random() & 0xff); break;
        default: bytes[at] = interesting[random() % interesting.size()]; break;
      }
    }
    write_all(mutated, bytes);
    const std::string what = "mutation " + std::to_string(iteration);
    read_must_succeed_or_throw_error(mutated, what);
    if (::testing::Test::HasFatalFailure()) return;
    try {
      read_safetensors(mutated.string());
      ++accepted;
    } catch (const Error&) {
    }
  }
  // Flipping bytes in padding spaces or inside metadata strings can leave a valid file; most mutations cannot.
  EXPECT_LT(accepted, 400);

  for (int iteration = 0; iteration < 200; ++iteration) {
    const size_t length = random() % original.size();
    write_all(mutated, original.substr(0, length));
    read_must_succeed_or_throw_error(mutated, "truncated to " + std::to_string(length));
    if (::testing::Test::HasFatalFailure()) return;
    EXPECT_THROW(read_safetensors(mutated.string()), Error) << "truncated to " << length << " bytes was accepted";
  }
}

}  // namespace
}  // namespace halfserve
