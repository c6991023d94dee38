#include "halfserve/util/json_depth.h"

#include "halfserve/util/error.h"

namespace halfserve {

void check_json_depth(std::string_view text, const std::string& what, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        throw Error(what + ": JSON nested deeper than " + std::to_string(max_depth) + " levels");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

nlohmann::json parse_bounded_json(std::string_view text, const std::string& what, size_t max_values) {
  check_json_depth(text, what);
  size_t values = 0;
  const nlohmann::json::parser_callback_t count = [&](int, nlohmann::json::parse_event_t event, nlohmann::json&) {
    // Arrays and objects are nodes too, and fire no `value` event: `[[],[],…]` must count.
    const bool node = event == nlohmann::json::parse_event_t::value || event == nlohmann::json::parse_event_t::array_start ||
                      event == nlohmann::json::parse_event_t::object_start;
    if (node && ++values > max_values)
      throw Error(what + ": more than " + std::to_string(max_values) + " values");
    return true;
  };
  return nlohmann::json::parse(text, count);
}

}  // namespace halfserve
