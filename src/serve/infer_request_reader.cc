// read_infer_request: the v2 protocol's REST infer body read as a stream of JSON events (nlohmann's SAX interface),
// like TF Serving's predict body (predict_request_reader.cc): ids go straight into int32 values as they are read, and
// every budget is checked while reading, so no document of the body is ever built.
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"
#include "serve/rest_v2.h"

namespace halfserve::rest {
namespace {

using nlohmann::json;

// Values an infer body may hold: three inputs of the engine's largest batch, plus names, shapes and parameters.
constexpr size_t kMaxInferJsonValues = 3 * (size_t{1} << 18) + 4096;
// Inputs and outputs one request may list: the model has three inputs and four outputs; more can only be wrong.
constexpr size_t kMaxTensors = 8;
constexpr size_t kMaxRank = 8;
constexpr size_t kMaxQuotedBytes = 64;

std::string quoted_name(const std::string& text) {
  return "'" + (text.size() > kMaxQuotedBytes ? text.substr(0, kMaxQuotedBytes) + "..." : text) + "'";
}

enum class Frame {
  top,               // the body's object
  skipped,           // a value the reader does not use, and anything inside it
  parameters,        // "parameters": {...} of the request
  inputs,            // "inputs": [...]
  input,             // one input: {"name", "datatype", "shape", "parameters", "data"}
  input_shape,       // its "shape": [...]
  input_parameters,  // its "parameters": {"binary_data_size": N}
  input_data,        // its "data", flat or nested arrays
  outputs,           // "outputs": [...]
  output,            // one requested output: {"name", "parameters"}
  output_parameters  // its "parameters": {"binary_data": true}
};

// One input as the JSON describes it; its values are either in "data" or among the binary bytes.
struct InputDescription {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  bool has_shape = false;
  std::optional<int64_t> binary_size;
  bool has_data = false;
  std::vector<int32_t> values;
};

class InferBodyReader {
 public:
  bool null() { return scalar(Value{"null"}); }
  bool boolean(bool value) { return scalar(Value{"boolean", std::nullopt, value}); }
  bool number_integer(int64_t value) { return scalar(Value{"number", value}); }
  bool number_unsigned(uint64_t value) {
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return scalar(Value{"number"});
    return scalar(Value{"number", static_cast<int64_t>(value)});
  }
  bool number_float(double value, const std::string&) {
    const bool integral = std::floor(value) == value && std::fabs(value) < 1e15;
    return scalar(Value{"number", integral ? std::optional<int64_t>(static_cast<int64_t>(value)) : std::nullopt});
  }
  bool string(std::string& value) { return scalar(Value{"string", std::nullopt, std::nullopt, &value}); }
  bool binary(json::binary_t&) { return scalar(Value{"binary"}); }
  bool start_object(size_t) { return open(true); }
  bool start_array(size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string& name) {
    count_value();
    key_ = std::move(name);
    return true;
  }
  bool parse_error(size_t, const std::string&, const json::exception& e) {
    throw InvalidArgument(std::string("malformed JSON request: ") + e.what());
  }

  v2::InferRequest finish(std::string_view binary, bool has_binary);

 private:
  struct Value {
    const char* type;
    std::optional<int64_t> integer = std::nullopt;
    std::optional<bool> flag = std::nullopt;
    std::string* text = nullptr;
  };

  void count_value() {
    if (++values_ > kMaxInferJsonValues)
      throw InvalidArgument("request refused: more than " + std::to_string(kMaxInferJsonValues) + " values");
  }

  std::string input_where() const { return "inputs[" + std::to_string(inputs_.size() - 1) + "]"; }
  std::string output_where() const { return "outputs[" + std::to_string(outputs_.size() - 1) + "]"; }

  std::string take_string(const Value& value, const std::string& where) {
    if (value.text == nullptr) throw InvalidArgument(where + " must be a string, got " + value.type);
    return std::move(*value.text);
  }

  bool scalar(const Value& value) {
    count_value();
    if (frames_.empty()) throw not_an_object();
    switch (frames_.back()) {
      case Frame::top:
        if (key_ == "id") id_ = take_string(value, "\"id\"");
        else if (key_ == "inputs" || key_ == "outputs" || key_ == "parameters")
          throw InvalidArgument("\"" + key_ + "\" must be " + (key_ == "parameters" ? "an object" : "a list"));
        return true;
      case Frame::parameters:
        if (key_ == "binary_data_output") binary_outputs_ = flag(value, "parameters.binary_data_output");
        return true;
      case Frame::inputs: throw InvalidArgument(input_where_next() + " must be an object, got " + value.type);
      case Frame::input: return input_scalar(value);
      case Frame::input_shape: return shape_value(value);
      case Frame::input_parameters:
        if (key_ == "binary_data_size") {
          if (!value.integer || *value.integer < 0)
            throw InvalidArgument(input_where() + ".parameters.binary_data_size must be a non-negative integer");
          inputs_.back().binary_size = value.integer;
        }
        return true;
      case Frame::input_data: return data_value(value);
      case Frame::outputs: throw InvalidArgument(output_where_next() + " must be an object, got " + value.type);
      case Frame::output:
        if (key_ == "name") outputs_.back().name = take_string(value, output_where() + ".name");
        else if (key_ == "parameters") throw InvalidArgument(output_where() + ".parameters must be an object");
        return true;
      case Frame::output_parameters:
        if (key_ == "binary_data") outputs_.back().binary = flag(value, output_where() + ".parameters.binary_data");
        else if (key_ == "classification")
          throw InvalidArgument("the classification extension is not supported: request the logits or label_ids");
        return true;
      case Frame::skipped: return true;
    }
    return true;
  }

  static bool flag(const Value& value, const std::string& where) {
    if (!value.flag) throw InvalidArgument(where + " must be true or false, got " + value.type);
    return *value.flag;
  }

  std::string input_where_next() const { return "inputs[" + std::to_string(inputs_.size()) + "]"; }
  std::string output_where_next() const { return "outputs[" + std::to_string(outputs_.size()) + "]"; }

  bool input_scalar(const Value& value) {
    InputDescription& input = inputs_.back();
    if (key_ == "name") input.name = take_string(value, input_where() + ".name");
    else if (key_ == "datatype") input.datatype = take_string(value, input_where() + ".datatype");
    else if (key_ == "shape") throw InvalidArgument(input_where() + ".shape must be a list of sizes");
    else if (key_ == "data") throw InvalidArgument(input_where() + ".data must be a list");
    else if (key_ == "parameters") throw InvalidArgument(input_where() + ".parameters must be an object");
    return true;
  }

  bool shape_value(const Value& value) {
    InputDescription& input = inputs_.back();
    if (input.shape.size() == kMaxRank)
      throw InvalidArgument(input_where() + ".shape has more than " + std::to_string(kMaxRank) + " dimensions");
    if (!value.integer || *value.integer < 0)
      throw InvalidArgument(input_where() + ".shape must hold non-negative integers, got " + value.type);
    input.shape.push_back(*value.integer);
    return true;
  }

  // The hot path: one call per id.
  bool data_value(const Value& value) {
    InputDescription& input = inputs_.back();
    if (!value.integer)
      throw InvalidArgument(input_where() + ".data[" + std::to_string(input.values.size()) + "] is not an integer (" +
                            value.type + ")");
    const int64_t number = *value.integer;
    if (number < std::numeric_limits<int32_t>::min() || number > std::numeric_limits<int32_t>::max())
      throw InvalidArgument(input_where() + ".data[" + std::to_string(input.values.size()) + "] = " +
                            std::to_string(number) + " is out of int32 range");
    input.values.push_back(static_cast<int32_t>(number));
    return true;
  }

  bool open(bool object) {
    count_value();
    if (frames_.empty()) {
      if (!object) throw not_an_object();
      frames_.push_back(Frame::top);
      return true;
    }
    frames_.push_back(child_frame(frames_.back(), object));
    return true;
  }

  Frame child_frame(Frame parent, bool object) {
    const char* type = object ? "an object" : "a list";
    switch (parent) {
      case Frame::top:
        if (key_ == "parameters") return expect(object, "\"parameters\" must be an object", Frame::parameters);
        if (key_ == "inputs") return expect(!object, "\"inputs\" must be a list", Frame::inputs);
        if (key_ == "outputs") return expect(!object, "\"outputs\" must be a list", Frame::outputs);
        if (key_ == "id") throw InvalidArgument(std::string("\"id\" must be a string, got ") + type);
        return Frame::skipped;
      case Frame::inputs:
        if (!object) throw InvalidArgument(input_where_next() + " must be an object, got a list");
        if (inputs_.size() == kMaxTensors)
          throw InvalidArgument("request has more than " + std::to_string(kMaxTensors) + " inputs");
        inputs_.emplace_back();
        return Frame::input;
      case Frame::input: return input_child(object);
      case Frame::input_data:
        if (object) throw InvalidArgument(input_where() + ".data holds an object; expected numbers");
        return Frame::input_data;
      case Frame::outputs:
        if (!object) throw InvalidArgument(output_where_next() + " must be an object, got a list");
        if (outputs_.size() == kMaxTensors)
          throw InvalidArgument("request has more than " + std::to_string(kMaxTensors) + " outputs");
        outputs_.emplace_back();
        return Frame::output;
      case Frame::output:
        if (key_ == "parameters")
          return expect(object, output_where() + ".parameters must be an object", Frame::output_parameters);
        if (key_ == "name") throw InvalidArgument(output_where() + ".name must be a string, got " + type);
        return Frame::skipped;
      case Frame::input_shape: throw InvalidArgument(input_where() + ".shape must hold integers, got " + type);
      default: return Frame::skipped;
    }
  }

  Frame input_child(bool object) {
    InputDescription& input = inputs_.back();
    if (key_ == "shape") {
      if (input.has_shape) throw InvalidArgument(input_where() + " has \"shape\" twice");
      input.has_shape = true;
      return expect(!object, input_where() + ".shape must be a list of sizes", Frame::input_shape);
    }
    if (key_ == "data") {
      if (input.has_data) throw InvalidArgument(input_where() + " has \"data\" twice");
      input.has_data = true;
      return expect(!object, input_where() + ".data must be a list", Frame::input_data);
    }
    if (key_ == "parameters")
      return expect(object, input_where() + ".parameters must be an object", Frame::input_parameters);
    if (key_ == "name" || key_ == "datatype")
      throw InvalidArgument(input_where() + "." + key_ + " must be a string");
    return Frame::skipped;
  }

  static Frame expect(bool ok, const std::string& message, Frame frame) {
    if (!ok) throw InvalidArgument(message);
    return frame;
  }

  bool close() {
    frames_.pop_back();
    return true;
  }

  static InvalidArgument not_an_object() { return InvalidArgument("request must be a JSON object with \"inputs\""); }

  std::vector<Frame> frames_;
  std::string key_;
  std::string id_;
  bool binary_outputs_ = false;
  std::vector<InputDescription> inputs_;
  std::vector<v2::RequestedOutput> outputs_;
  size_t values_ = 0;
};

// One input's matrix, from its "data" or from its share of the binary bytes (`binary` advances past it).
IntMatrix input_matrix(InputDescription& input, size_t index, std::string_view& binary, bool has_binary) {
  const std::string where = "inputs[" + std::to_string(index) + "] (" + quoted_name(input.name) + ")";
  if (input.name.empty()) throw InvalidArgument("inputs[" + std::to_string(index) + "] has no name");
  if (!input.has_shape) throw InvalidArgument(where + " has no shape");
  if (input.datatype.empty()) throw InvalidArgument(where + " has no datatype");
  const int64_t count = v2::check_input_tensor(input.name, input.datatype, input.shape);
  if (input.binary_size) {
    if (!has_binary)
      throw InvalidArgument(where + " has binary_data_size but the request has no " + kInferenceHeaderLength +
                            " header");
    if (input.has_data) throw InvalidArgument(where + " has both \"data\" and binary_data_size");
    const auto size = static_cast<uint64_t>(*input.binary_size);
    if (size > binary.size())
      throw InvalidArgument(where + " declares " + std::to_string(size) + " bytes of binary data; only " +
                            std::to_string(binary.size()) + " remain in the body");
    const std::string_view bytes = binary.substr(0, size);
    binary.remove_prefix(size);
    return v2::read_raw_matrix(input.name, input.datatype, input.shape, bytes);
  }
  if (!input.has_data) throw InvalidArgument(where + " has neither \"data\" nor binary_data_size");
  if (static_cast<int64_t>(input.values.size()) != count)
    throw InvalidArgument(where + " has " + std::to_string(input.values.size()) + " values; its shape [" +
                          std::to_string(input.shape[0]) + ", " + std::to_string(input.shape[1]) + "] needs " +
                          std::to_string(count));
  return IntMatrix{input.shape[0], input.shape[1], std::move(input.values)};
}

v2::InferRequest InferBodyReader::finish(std::string_view binary, bool has_binary) {
  if (inputs_.empty()) throw InvalidArgument("request has no \"inputs\"");
  v2::InferRequest request;
  request.id = std::move(id_);
  request.binary_outputs = binary_outputs_;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    IntMatrix matrix = input_matrix(inputs_[i], i, binary, has_binary);
    request.inputs.push_back({inputs_[i].name, std::move(matrix)});
  }
  if (!binary.empty())
    throw InvalidArgument(std::to_string(binary.size()) + " bytes of binary data follow the inputs' declared sizes");
  for (size_t i = 0; i < outputs_.size(); ++i)
    if (outputs_[i].name.empty()) throw InvalidArgument("outputs[" + std::to_string(i) + "] has no name");
  request.outputs = std::move(outputs_);
  return request;
}

size_t parse_header_length(const std::string& text, size_t body_size) {
  size_t length = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), length);
  if (text.empty() || error != std::errc() || end != text.data() + text.size())
    throw InvalidArgument(std::string(kInferenceHeaderLength) + " '" + text.substr(0, 32) + "' is not a byte count");
  if (length > body_size)
    throw InvalidArgument(std::string(kInferenceHeaderLength) + " " + text + " exceeds the body's " +
                          std::to_string(body_size) + " bytes");
  return length;
}

}  // namespace

v2::InferRequest read_infer_request(std::string_view body, const std::string& header_length) {
  const bool has_binary = !header_length.empty();
  const size_t json_size = has_binary ? parse_header_length(header_length, body.size()) : body.size();
  const std::string_view header = body.substr(0, json_size);
  InferBodyReader reader;
  sax_parse_request(header, reader);
  return reader.finish(body.substr(json_size), has_binary);
}

}  // namespace halfserve::rest
