// ATen-side helpers of the CUDA glue (csrc/cuda/<op>.cpp): the current stream, workspaces,
// device-side small inputs. Argument checks and layout choice are the shared ones
// (csrc/tensor_checks.h), so both backends accept and reject the same inputs.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/kernels/launchers.h"
#include "tensor_checks.h"

namespace dfnas {

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// A byte buffer for a launcher's workspace, from the caching allocator.
inline at::Tensor workspace(const at::Tensor& like, size_t bytes) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

// Per-channel vectors the kernels read on the device in float32 or float64 (float64 when
// either is float64; other dtypes convert exactly to float32). No copy when already so.
struct ChannelPair {
  at::Tensor first, second;
  Dtype dtype;
};

inline ChannelPair channel_pair(const at::Tensor& first, const at::Tensor& second) {
  const bool wide = first.scalar_type() == at::kDouble || second.scalar_type() == at::kDouble;
  const at::ScalarType type = wide ? at::kDouble : at::kFloat;
  return {first.to(type).contiguous(), second.to(type).contiguous(),
          wide ? Dtype::Float64 : Dtype::Float32};
}

// Window offsets (n, 2) on the canvas's device, as int64 (no copy when already so). Only the
// shapes are checked here: the kernels check each window against the canvas on the device (a
// window outside traps) instead of copying the offsets to the host, which would synchronize.
inline at::Tensor device_window_offsets(const at::Tensor& offsets, const at::Tensor& canvas_like, int64_t n,
                                        int64_t H, int64_t W, int64_t height, int64_t width, const char* op) {
  check_windows(offsets, n, H, W, height, width, op);
  check_same_device(offsets, canvas_like, op, "offsets");
  return offsets.to(at::kLong).contiguous();
}

}  // namespace dfnas
