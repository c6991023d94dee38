// parse_punctuate_request: the :punctuate body through nlohmann's SAX interface. The body is one object of
// scalars and one list of strings, so the reader needs no more state than where it is and which key it read last.
#include "serve/punctuate_request.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"

namespace halfserve::rest {
namespace {

using nlohmann::json;

const char* const kFields = "text, texts, keep_existing, window, stride, labels, probabilities";

class PunctuateBodyReader {
 public:
  bool null() { return scalar("null"); }
  bool boolean(bool value) {
    if (in_object() && (key_ == "keep_existing" || key_ == "labels" || key_ == "probabilities")) {
      (key_ == "keep_existing" ? request_.options.keep_existing : key_ == "labels" ? request_.labels
                                                                                   : request_.probabilities) = value;
      return true;
    }
    return scalar("boolean");
  }
  bool number_integer(int64_t) { return scalar("number"); }  // nlohmann reads only negative integers as signed
  bool number_unsigned(uint64_t value) {
    if (in_object() && (key_ == "window" || key_ == "stride")) {
      if (value > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
        throw InvalidArgument("\"" + key_ + "\" is too large");
      (key_ == "window" ? request_.options.window : request_.options.stride) = static_cast<int64_t>(value);
      return true;
    }
    return scalar("number");
  }
  bool number_float(double, const std::string&) { return scalar("number"); }
  bool binary(json::binary_t&) { return scalar("binary"); }
  bool string(std::string& value) {
    if (in_object() && key_ == "text") {
      add_text(std::move(value));
      return true;
    }
    if (in_texts()) {
      add_text(std::move(value));
      return true;
    }
    return scalar("string");
  }
  bool start_object(size_t) { return open("an object"); }
  bool start_array(size_t) {
    if (in_object() && key_ == "texts") {
      depth_ = 2;
      return true;
    }
    return open("a list");
  }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string& name) {
    static const std::set<std::string> known = {"text", "texts", "keep_existing", "window", "stride", "labels",
                                                "probabilities"};
    if (!known.count(name))  // rejected rather than ignored, so a misspelt option does not silently do nothing
      throw InvalidArgument("unknown field \"" + name.substr(0, 64) + "\" (fields: " + kFields + ")");
    if (!seen_.insert(name).second) throw InvalidArgument("\"" + name + "\" is given twice");
    if ((name == "text" && seen_.count("texts")) || (name == "texts" && seen_.count("text")))
      throw InvalidArgument("request has both \"text\" and \"texts\"; send one");
    key_ = std::move(name);
    return true;
  }
  bool parse_error(size_t, const std::string&, const json::exception& e) {
    throw InvalidArgument(std::string("malformed JSON request: ") + e.what());
  }

  PunctuateRequest finish() {
    const bool has_text = seen_.count("text") > 0, has_texts = seen_.count("texts") > 0;
    if (!has_text && !has_texts) throw InvalidArgument("request has neither \"text\" nor \"texts\"");
    request_.single_text = has_text;
    return std::move(request_);
  }

 private:
  bool in_object() const { return depth_ == 1; }
  bool in_texts() const { return depth_ == 2; }

  // A value the request does not take where it stands: the error says what was wanted.
  [[noreturn]] void wrong(const std::string& got) const {
    if (depth_ == 0) throw InvalidArgument("request must be a JSON object with \"text\" or \"texts\"");
    if (in_texts()) throw InvalidArgument("texts[" + std::to_string(request_.texts.size()) + "] is not a string");
    if (key_ == "text") throw InvalidArgument("\"text\" must be a string");
    if (key_ == "texts") throw InvalidArgument("\"texts\" must be a list of strings");
    if (key_ == "window" || key_ == "stride")
      throw InvalidArgument("\"" + key_ + "\" must be a non-negative integer (0: the model's default), got " + got);
    throw InvalidArgument("\"" + key_ + "\" must be true or false");
  }

  bool scalar(const std::string& type) { wrong("a " + type); }

  bool open(const std::string& what) {
    if (depth_ == 0) {
      if (what != "an object") wrong(what);
      depth_ = 1;
      return true;
    }
    wrong(what);
  }

  bool close() {
    --depth_;
    return true;
  }

  void add_text(std::string text) {
    if (request_.texts.size() == kMaxPunctuateTexts)
      throw InvalidArgument("\"texts\" lists " + std::to_string(kMaxPunctuateTexts + 1) + " texts, more than the " +
                            std::to_string(kMaxPunctuateTexts) + " one request may hold: send them in several requests");
    text_bytes_ += text.size();
    if (text_bytes_ > kMaxPunctuateTextBytes)
      throw InvalidArgument("the texts hold more than the " + std::to_string(kMaxPunctuateTextBytes) +
                            " bytes one request may hold (" + std::to_string(text_bytes_) + " by texts[" +
                            std::to_string(request_.texts.size()) + "]): send them in several requests");
    request_.texts.push_back(std::move(text));
  }

  PunctuateRequest request_;
  std::set<std::string> seen_;
  std::string key_;  // the field whose value comes next
  int depth_ = 0;    // 0 before the body's object, 1 in it, 2 in "texts"
  size_t text_bytes_ = 0;
};

}  // namespace

PunctuateRequest parse_punctuate_request(std::string_view body) {
  PunctuateBodyReader reader;
  sax_parse_request(body, reader);  // rejects invalid UTF-8 in strings
  return reader.finish();
}

}  // namespace halfserve::rest
