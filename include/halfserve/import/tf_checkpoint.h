#pragma once

#include <memory>
#include <string>

#include "halfserve/import/tensor_source.h"

namespace halfserve {

// Opens a TensorFlow checkpoint (tensor bundle V2: `<prefix>.index` plus `<prefix>.data-NNNNN-of-NNNNN`), as
// written by tf.train.Saver, tf.train.Checkpoint and SavedModel. `path` may be
//   - the prefix (`dir/bert_model.ckpt`, `saved_model/variables/variables`),
//   - the `.index` file itself,
//   - a folder with a `checkpoint` state file naming the prefix, or holding exactly one `*.index`.
// Opening reads and checks the index only; data shards are mapped on the first read() that needs them, and each
// read verifies the tensor's CRC32C. Numeric tensors are listed (global_step and optimizer slots included);
// string tensors such as `_CHECKPOINTABLE_OBJECT_GRAPH` and partitioned variables are skipped and described
// in notes(). Throws Error naming the file and the problem when the checkpoint cannot be found or is corrupt.
std::unique_ptr<TensorSource> open_tf_checkpoint(const std::string& path);

// True when `path` (in any form open_tf_checkpoint accepts) leads to a file that ends in the table magic of a
// checkpoint index. Never throws; reads only the last bytes of the index.
bool is_tf_checkpoint(const std::string& path);

}  // namespace halfserve
