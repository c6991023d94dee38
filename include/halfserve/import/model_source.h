#pragma once

#include <string>
#include <string_view>

#include "halfserve/format/frozen_model.h"

namespace halfserve {

// Source formats `halfserve convert` reads. `automatic` looks at the content, not the name.
enum class SourceFormat : uint8_t { automatic, hf, frozen };

SourceFormat parse_source_format(std::string_view name);  // "auto" | "hf" | "frozen"
std::string_view source_format_name(SourceFormat format);
SourceFormat detect_source_format(const std::string& path);  // throws Error when nothing matches

// Imports any supported source into a model under canonical names (weights in their source precision).
FrozenModel import_model(const std::string& path, SourceFormat format);

}  // namespace halfserve
