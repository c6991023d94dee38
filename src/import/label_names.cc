#include "halfserve/import/label_names.h"

#include <cctype>
#include <map>

#include "halfserve/util/utf8.h"

namespace halfserve {

namespace {

bool is_all_punctuation(const std::string& text) {
  if (text.empty()) return false;
  for (size_t at = 0; at < text.size();) {
    char32_t codepoint = 0;
    const size_t length = decode_utf8(text, at, codepoint);
    if (length == 0 || !is_punctuation(codepoint)) return false;
    at += length;
  }
  return true;
}

}  // namespace

std::string punctuation_mark_for_label(const std::string& name) {
  static const std::map<std::string, std::string> kNamed = {
      {"COMMA", ","},     {"PERIOD", "."},       {"FULLSTOP", "."},   {"QUESTION", "?"},
      {"QUESTIONMARK", "?"}, {"EXCLAMATION", "!"}, {"EXCLAMATIONMARK", "!"}, {"COLON", ":"},
      {"SEMICOLON", ";"}, {"DASH", "-"},         {"ELLIPSIS", "..."}};
  if (is_all_punctuation(name)) return name;
  std::string upper;
  for (char c : name)
    if (c != '_' && c != '-' && c != ' ') upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const auto it = kNamed.find(upper);
  return it == kNamed.end() ? "" : it->second;
}

Label label_for_name(const std::string& name) {
  constexpr std::string_view kCapitalize = "+U";
  const bool capitalize = name.size() > kCapitalize.size() && name.ends_with(kCapitalize);
  const std::string base = capitalize ? name.substr(0, name.size() - kCapitalize.size()) : name;
  return {name, punctuation_mark_for_label(base), capitalize};
}

}  // namespace halfserve
