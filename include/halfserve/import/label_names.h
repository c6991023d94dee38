#pragma once

#include <string>

#include "halfserve/format/model_metadata.h"

// What a label name in a model's config stands for. Importers decide it once, when they make a frozen file, and
// the file records the mark: format only stores it, text only inserts it.
namespace halfserve {

// The punctuation a label name stands for: the name itself when it is made of punctuation ("，"), a known
// English name ("COMMA" -> ","), or "" ("O", unknown names).
std::string punctuation_mark_for_label(const std::string& name);
// The label a name stands for: its mark as above, and "NAME+U" is NAME that also capitalizes its word (",+U",
// "O+U"), so one token-classification head restores punctuation and capitalization together.
Label label_for_name(const std::string& name);

}  // namespace halfserve
