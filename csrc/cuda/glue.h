// ATen-side helpers of the CUDA glue: tensor dtype/layout to the launchers' enums, the current
// stream, and the launch check. Argument checks and layout choice are the CPU glue's
// (csrc/cpu/tensor_checks.h), so both backends accept and reject the same inputs.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cpu/tensor_checks.h"
#include "cuda/kernels/launchers.h"

namespace dfnas {

inline cuda::Dtype cuda_dtype(const at::Tensor& x, const char* op) {
  switch (kernel_dtype(x, op)) {
    case cpu::Dtype::Float32: return cuda::Dtype::Float32;
    case cpu::Dtype::Float64: return cuda::Dtype::Float64;
    case cpu::Dtype::BFloat16: return cuda::Dtype::BFloat16;
    case cpu::Dtype::Float16: return cuda::Dtype::Float16;
  }
  TORCH_CHECK(false, op, ": unsupported dtype ", x.scalar_type());
}

inline cuda::Layout cuda_layout(const DenseImages& dense) {
  return dense.layout == cpu::Layout::NHWC ? cuda::Layout::NHWC : cuda::Layout::NCHW;
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// A byte buffer for a launcher's workspace, from the caching allocator.
inline at::Tensor workspace(const at::Tensor& like, size_t bytes) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

// Per-channel vectors the kernels read on the device in float32 or float64 (float64 when
// either is float64; other dtypes convert exactly to float32). No copy when already so.
struct ChannelPair {
  at::Tensor first, second;
  cuda::Dtype dtype;
};

inline ChannelPair channel_pair(const at::Tensor& first, const at::Tensor& second) {
  const bool wide = first.scalar_type() == at::kDouble || second.scalar_type() == at::kDouble;
  const at::ScalarType type = wide ? at::kDouble : at::kFloat;
  return {first.to(type).contiguous(), second.to(type).contiguous(),
          wide ? cuda::Dtype::Float64 : cuda::Dtype::Float32};
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& reference, const char* op, const char* name) {
  TORCH_CHECK(t.device() == reference.device(), op, ": ", name, " is on ", t.device(), " but expected ",
              reference.device());
}

}  // namespace dfnas
