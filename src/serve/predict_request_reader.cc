// parse_predict_request: TF Serving's REST predict body read as a stream of JSON events (nlohmann's SAX interface).
// Ids go straight into int32 columns as they are read and every check runs while reading, so a body costs about four
// bytes per id: a document of the body (tens of bytes per value) is never built. Budgets: nesting (checked before
// reading, without allocating), values (three inputs of the engine's largest batch), names.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "halfserve/serve/predict_json.h"
#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"
#include "serve/named_inputs.h"

namespace halfserve {
namespace {

using nlohmann::json;

// Values a predict body may hold: three inputs (ids, mask, type ids) of the engine's largest batch, plus names and
// options. A body of more can never run, and reading stops there.
constexpr size_t kMaxPredictJsonValues = 3 * (size_t{1} << 18) + 4096;
// Distinct input names in one request: a signature has at most three inputs; more can only be wrong, and each name
// would hold a column.
constexpr size_t kMaxInputNames = 8;
// How much of a bad value an error message quotes.
constexpr size_t kMaxQuotedBytes = 64;

// One input's values, row after row (no name: the bare forms' ids, named after the signature once it is known).
using Column = NamedInput;

std::string shortened(const std::string& text) {
  return text.size() > kMaxQuotedBytes ? text.substr(0, kMaxQuotedBytes) + "..." : text;
}

// A JSON value that is not an array or object, as SAX hands it over. Its text for an error is made only when an
// error needs it: an id costs no string.
struct Scalar {
  const char* type_name;           // JSON's type names, as nlohmann writes them
  std::optional<int64_t> integer;  // set for an integer, or an integral float small enough to be one
  std::string_view text = {};      // the value's own text where SAX gives one ("null", a float, a string's content)
  bool is_string = false;
  std::optional<uint64_t> beyond_int64 = std::nullopt;  // an unsigned integer too large for int64

  // How an error quotes the value: a string as JSON writes it, cut short ("\"a\"").
  std::string shown() const {
    if (is_string) return json(shortened(std::string(text))).dump(-1, ' ', false, json::error_handler_t::replace);
    if (!text.empty()) return std::string(text);
    if (beyond_int64) return std::to_string(*beyond_int64);
    return integer ? std::to_string(*integer) : std::string(type_name);
  }
};

// Where the reader stands: one frame per open array or object.
enum class Frame {
  top,              // the body's object
  skipped,          // the value of a key the request does not use (or anything inside it)
  named_inputs,     // "inputs": {NAME: [[…]], …}
  matrix,           // a 2-D input: [[…], […]]
  row,              // one row of integers
  instances,        // "instances": [ROW or OBJECT, …]
  instance_object,  // one instance: {NAME: […], …}
};

class PredictBodyReader {
 public:
  bool null() { return scalar({"null", std::nullopt, "null"}); }
  bool boolean(bool value) { return scalar({"boolean", std::nullopt, value ? "true" : "false"}); }
  bool number_integer(int64_t value) { return scalar({"number", value}); }
  bool number_unsigned(uint64_t value) {
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return scalar({"number", std::numeric_limits<int64_t>::max(), {}, false, value});
    return scalar({"number", static_cast<int64_t>(value)});
  }
  bool number_float(double value, const std::string& text) {
    // 3.0 is an integer; TF Serving accepts it too.
    const bool integral = std::floor(value) == value && std::fabs(value) < 1e15;
    return scalar({"number", integral ? std::optional<int64_t>(static_cast<int64_t>(value)) : std::nullopt, text});
  }
  bool string(std::string& value) {
    if (frames_.size() == 1 && frames_.back().kind == Frame::top && pending_key_ == "signature_name") {
      count_value();
      signature_name_ = std::move(value);
      return true;
    }
    return scalar({"string", std::nullopt, value, true});
  }
  bool binary(json::binary_t&) { return scalar({"binary", std::nullopt, "binary"}); }
  bool start_object(size_t) { return open(true); }
  bool start_array(size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string& name) {
    count_value();
    switch (frames_.back().kind) {
      case Frame::top: return top_key(name);
      case Frame::named_inputs: return named_input_key(name);
      case Frame::instance_object: return instance_key(name);
      default: return true;  // a skipped object's keys
    }
  }
  bool parse_error(size_t, const std::string&, const json::exception& e) {
    throw InvalidArgument(std::string("malformed JSON request: ") + e.what());
  }

  // After a whole body: the request, its signature chosen and every input checked against it.
  PredictRequest finish(const ModelMetadata& metadata);

 private:
  struct Open {
    Open(Frame kind, size_t column = 0, int64_t index = 0, std::string where = {})
        : kind(kind), column(column), index(index), where(std::move(where)) {}
    Frame kind;
    size_t column;  // matrix, row: the column it fills
    int64_t index;  // matrix, instances: the next row; row: the next value; instance_object: its row
    std::string where;  // row, matrix, instance_object: how errors name it ("instances[3].attention_mask")
    std::set<std::string> names;  // instance_object: the names it gave
  };

  void count_value() {
    if (++values_ > kMaxPredictJsonValues)
      throw InvalidArgument("request refused: request: more than " + std::to_string(kMaxPredictJsonValues) + " values");
  }

  // The name errors use for a column before the signature is known.
  std::string column_name(const Column& column) const { return column.name.value_or("input_ids"); }

  size_t add_column(std::optional<std::string> name) {
    if (columns_.size() == kMaxInputNames)
      throw InvalidArgument("request names more than " + std::to_string(kMaxInputNames) + " inputs");
    columns_.push_back(Column{std::move(name), {}});
    return columns_.size() - 1;
  }

  size_t column_named(const std::string& name) {
    for (size_t c = 0; c < columns_.size(); ++c)
      if (columns_[c].name == name) return c;
    return add_column(name);
  }

  size_t bare_column() {
    for (size_t c = 0; c < columns_.size(); ++c)
      if (!columns_[c].name) return c;
    return add_column(std::nullopt);
  }

  bool top_key(const std::string& name) {
    pending_key_ = name;
    const bool inputs = name == "inputs", instances = name == "instances";
    if (!inputs && !instances && name != "signature_name") return true;
    if (!seen_keys_.insert(name).second) throw InvalidArgument("request has \"" + name + "\" twice");
    if ((inputs && seen_keys_.count("instances")) || (instances && seen_keys_.count("inputs")))
      throw InvalidArgument("request has both \"instances\" and \"inputs\"; send one");
    return true;
  }

  bool named_input_key(const std::string& name) {
    for (const Column& column : columns_)
      if (column.name == name) throw InvalidArgument("\"inputs\" names '" + name + "' twice");
    pending_key_ = name;
    return true;
  }

  bool instance_key(const std::string& name) {
    Open& instance = frames_.back();
    if (!instance.names.insert(name).second) throw InvalidArgument(instance.where + " names '" + name + "' twice");
    if (instance.index > 0 && !instance_names_.count(name))
      throw InvalidArgument(instance.where + " names input '" + name + "' that instances[0] lacks");
    pending_key_ = name;
    return true;
  }

  // A scalar value, wherever it stands.
  bool scalar(const Scalar& value) {
    count_value();
    if (frames_.empty()) throw not_an_object();
    Open& frame = frames_.back();
    switch (frame.kind) {
      case Frame::top: return top_scalar(value);
      case Frame::skipped: return true;
      case Frame::named_inputs: throw not_2d(pending_key_);
      case Frame::matrix:
        throw InvalidArgument(frame.where + "[" + std::to_string(frame.index) + "] must be an array of integers, got " +
                              value.type_name);
      case Frame::row: return row_value(frame, value);
      case Frame::instances:
        throw InvalidArgument("instances[" + std::to_string(frame.index) + "] must be an array of integers, got " +
                              value.type_name);
      case Frame::instance_object:
        throw InvalidArgument(frame.where + "." + pending_key_ + " must be an array of integers, got " + value.type_name);
    }
    return true;
  }

  bool top_scalar(const Scalar& value) {
    if (pending_key_ == "signature_name") {
      throw InvalidArgument("signature_name must be a string");  // a string never comes here (string())
    } else if (pending_key_ == "inputs") {
      throw not_2d(std::nullopt);
    } else if (pending_key_ == "instances") {
      throw InvalidArgument("\"instances\" must be a list");
    }
    return true;
  }

  // The hot path: one call per id, no string made unless the id is refused.
  bool row_value(Open& row, const Scalar& value) {
    const auto where = [&] { return row.where + "[" + std::to_string(row.index) + "]"; };
    if (!value.integer) throw InvalidArgument(where() + " is not an integer: " + value.shown());
    const int64_t number = *value.integer;
    if (number < std::numeric_limits<int32_t>::min() || number > std::numeric_limits<int32_t>::max())
      throw InvalidArgument(where() + " = " + value.shown() + " is out of int32 range");
    columns_[row.column].matrix.values.push_back(static_cast<int32_t>(number));
    ++row.index;
    return true;
  }

  // An array or object opens; what it is follows from where it stands.
  bool open(bool object) {
    count_value();
    if (frames_.empty()) {
      if (!object) throw not_an_object();
      frames_.push_back({Frame::top});
      return true;
    }
    Open& parent = frames_.back();
    const char* type = object ? "object" : "array";
    switch (parent.kind) {
      case Frame::top: return open_top_value(object);
      case Frame::skipped: frames_.push_back({Frame::skipped}); return true;
      case Frame::named_inputs: {
        if (object) throw not_2d(pending_key_);
        const size_t column = column_named(pending_key_);
        frames_.push_back({Frame::matrix, column, 0, pending_key_});
        return true;
      }
      case Frame::matrix: {
        const std::string where = parent.where + "[" + std::to_string(parent.index) + "]";
        if (object) throw InvalidArgument(where + " must be an array of integers, got object");
        frames_.push_back({Frame::row, parent.column, 0, where});
        return true;
      }
      case Frame::row:
        throw InvalidArgument(parent.where + "[" + std::to_string(parent.index) + "] is not an integer: a JSON " + type);
      case Frame::instances: return open_instance(parent, object);
      case Frame::instance_object: {
        const std::string where = parent.where + "." + pending_key_;
        if (object) throw InvalidArgument(where + " must be an array of integers, got object");
        frames_.push_back({Frame::row, column_named(pending_key_), 0, where});
        return true;
      }
    }
    return true;
  }

  bool open_top_value(bool object) {
    if (pending_key_ == "inputs") {
      frames_.push_back(object ? Open{Frame::named_inputs} : Open{Frame::matrix, bare_column(), 0, "input_ids"});
    } else if (pending_key_ == "instances") {
      if (object) throw InvalidArgument("\"instances\" must be a list");
      frames_.push_back({Frame::instances});
    } else if (pending_key_ == "signature_name") {
      throw InvalidArgument("signature_name must be a string");
    } else {
      frames_.push_back({Frame::skipped});
    }
    return true;
  }

  bool open_instance(Open& instances, bool object) {
    const std::string where = "instances[" + std::to_string(instances.index) + "]";
    if (instances.index == 0) instances_are_objects_ = object;
    if (object != instances_are_objects_)
      throw InvalidArgument(where + (object ? " is an object but instances[0] is a list"
                                            : " is a list but instances[0] is an object"));
    if (object) {
      frames_.push_back({Frame::instance_object, 0, instances.index, where});
    } else {
      frames_.push_back({Frame::row, bare_column(), 0, where});
    }
    return true;
  }

  bool close() {
    Open frame = std::move(frames_.back());
    frames_.pop_back();
    if (frame.kind == Frame::row) end_row(columns_[frame.column]);
    if (frame.kind == Frame::instance_object) {
      if (frame.index == 0) instance_names_ = frame.names;
      else if (frame.names.size() != instance_names_.size())
        throw InvalidArgument(frame.where + " names different inputs than instances[0]");
    }
    if (!frames_.empty() && (frames_.back().kind == Frame::matrix || frames_.back().kind == Frame::instances))
      ++frames_.back().index;
    return true;
  }

  void end_row(Column& column) {
    IntMatrix& matrix = column.matrix;
    const int64_t count = static_cast<int64_t>(matrix.values.size()) - matrix.rows * matrix.cols;
    if (matrix.rows == 0) {
      matrix.cols = count;
    } else if (count != matrix.cols) {
      throw InvalidArgument(column_name(column) + " is ragged: row " + std::to_string(matrix.rows) + " has " +
                            std::to_string(count) + " values, row 0 has " + std::to_string(matrix.cols) +
                            " (pad rows to one length and mask the padding)");
    }
    ++matrix.rows;
  }

  static InvalidArgument not_an_object() {
    return InvalidArgument("request must be a JSON object with \"instances\" or \"inputs\"");
  }
  static InvalidArgument not_2d(const std::optional<std::string>& name) {
    return InvalidArgument("input '" + name.value_or("input_ids") + "' must be a 2-D array [batch, length]");
  }

  std::vector<Open> frames_;
  std::vector<Column> columns_;
  std::set<std::string> seen_keys_;       // of the body's object: "inputs", "instances", "signature_name"
  std::set<std::string> instance_names_;  // the names instances[0] gave
  bool instances_are_objects_ = false;
  std::string pending_key_;  // the key whose value comes next
  std::optional<std::string> signature_name_;
  size_t values_ = 0;
};

PredictRequest PredictBodyReader::finish(const ModelMetadata& metadata) {
  const bool has_inputs = seen_keys_.count("inputs") > 0, has_instances = seen_keys_.count("instances") > 0;
  if (!has_inputs && !has_instances) throw InvalidArgument("request has neither \"instances\" nor \"inputs\"");
  PredictRequest request;
  request.row_format = has_instances;
  request.signature = metadata.find_signature(signature_name_.value_or("serving_default"));
  if (request.signature == nullptr) {
    if (signature_name_) throw InvalidArgument("unknown signature_name '" + shortened(*signature_name_) + "'");
    request.signature = &metadata.default_signature();
  }
  request.inputs = assemble_input_batch(std::move(columns_), *request.signature);
  return request;
}

}  // namespace

PredictRequest parse_predict_request(std::string_view body, const ModelMetadata& metadata) {
  PredictBodyReader reader;
  sax_parse_request(body, reader);
  return reader.finish(metadata);
}

}  // namespace halfserve
