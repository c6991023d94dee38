#pragma once

#include <cuda_runtime.h>

#include "halfserve/engine/backend.h"

// Host-side launchers of the CUDA kernels (the *_gpu.cu files). Each queues work on `stream` and returns; launch
// errors are thrown as halfserve::Error.
namespace halfserve::cuda {

// dst (f32) = LayerNorm(word[id] + position[pos] + token_type[type]); dst_low, when given, gets an f16/bf16 copy.
void launch_embed_layer_norm(const PackedTokens& tokens, const EmbeddingTables& tables, const LayerNormParams& norm,
                             const MatrixRef& dst, const MatrixRef* dst_low, cudaStream_t stream);
// dst (f32) = LayerNorm(src) with fp32 statistics; src may alias dst.
void launch_layer_norm(const float* src, const LayerNormParams& norm, const MatrixRef& dst, const MatrixRef* dst_low,
                       cudaStream_t stream);
// data = GELU(data) in place (erf or tanh form), for f32, f16 or bf16 matrices.
void launch_gelu(const MatrixRef& data, Activation activation, cudaStream_t stream);
// Fused scale + mask + softmax + context per (sequence, head); `offsets` are the sequence offsets in device memory.
void launch_attention(const AttentionArgs& args, const int32_t* offsets, int sequences, int longest, cudaStream_t stream);

}  // namespace halfserve::cuda
