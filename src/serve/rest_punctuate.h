#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "halfserve/format/model_metadata.h"
#include "halfserve/text/punctuator.h"
#include "halfserve/text/tokenizer.h"

// The REST server's :punctuate verb (not part of TF Serving): raw text in, punctuated text out.
//   request  {"text": "…"} or {"texts": ["…", …]}, optional "keep_existing": bool, "window": int, "stride": int,
//            "labels": bool (add per-token labels), "probabilities": bool (add them with the label's probability)
//   reply    {"text": "…"} or {"texts": […]}; with labels or probabilities also "tokens", shaped like the texts (a
//            list for "text", a list per text for "texts") of {"token", "begin", "end", "label", "mark",
//            "capitalize"? (true for a capitalizing label), "probability"?}. begin/end are byte offsets of the token
//            in the text as sent.
namespace halfserve::rest {

// Throws ServingError (FAILED_PRECONDITION for a model without a vocabulary or head) or InvalidArgument (malformed
// request, invalid UTF-8, bad window or stride, more than 1 MiB of text).
std::string punctuate_json(std::string_view body, const ModelMetadata& metadata,
                           std::shared_ptr<const BertTokenizer> tokenizer, const ModelRunner& run);

}  // namespace halfserve::rest
