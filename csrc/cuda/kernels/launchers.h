// Torch-free interface between the ATen glue (csrc/cuda/*.cpp) and the CUDA kernels
// (csrc/cuda/kernels/<op>.cu): raw device pointers, sizes and a stream. Tensors arrive dense in
// NCHW or channels-last (NHWC) layout; the glue checks shapes, picks the layout, allocates
// outputs and workspaces. Every launcher returns the launch's cudaError_t.
//
// Small per-channel inputs (running statistics, clamp bounds) and scalars (grad_loss) stay on
// the device, so no launcher synchronizes with the host.
#pragma once

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "dfnas/region_adam_math.h"
#include "dfnas/tv_loss_math.h"
#include "dfnas/types.h"

namespace dfnas::cuda {

// "opmath": the dtype of losses, statistics and coefficients, float64 for Float64 data and
// float32 otherwise. Running statistics come as Float32 or Float64 (`stats_dtype`).

struct BnStatsLaunch {
  const void* x;
  Dtype dtype;
  Layout layout;
  int64_t n, c, hw;
  const void* running_mean;  // (c), stats_dtype
  const void* running_var;   // (c), stats_dtype
  Dtype stats_dtype;         // Float32 or Float64
  void* loss;                // () opmath out
  void* mean;                // (c) opmath out
  void* var;                 // (c) opmath out, biased
  void* workspace;           // bn_stats_workspace_bytes
};
size_t bn_stats_workspace_bytes(const BnStatsLaunch& a);
cudaError_t launch_bn_stats(const BnStatsLaunch& a, cudaStream_t stream);

struct BnBackwardLaunch {
  const void* x;
  void* grad_x;  // x's dtype and layout
  Dtype dtype;
  Layout layout;
  int64_t n, c, hw;
  const void* grad_loss;  // () opmath
  const void* mean;       // (c) opmath
  const void* var;        // (c) opmath
  const void* running_mean;
  const void* running_var;
  Dtype stats_dtype;
  void* workspace;  // bn_backward_workspace_bytes
};
size_t bn_backward_workspace_bytes(const BnBackwardLaunch& a);
cudaError_t launch_bn_backward(const BnBackwardLaunch& a, cudaStream_t stream);

struct TvForwardLaunch {
  const void* x;
  Dtype dtype;
  Layout layout;
  TvKind kind;
  int64_t n, c, h, w;
  void* loss;       // () opmath out
  double* sums;     // (4) out: per-direction sums of tv_forward_term
  void* workspace;  // tv_forward_workspace_bytes
};
size_t tv_forward_workspace_bytes(const TvForwardLaunch& a);
cudaError_t launch_tv_forward(const TvForwardLaunch& a, cudaStream_t stream);

struct TvBackwardLaunch {
  const void* x;
  void* grad_x;  // x's dtype and layout
  Dtype dtype;
  Layout layout;
  TvKind kind;
  int64_t n, c, h, w;
  const void* grad_loss;  // () opmath
  const double* sums;     // (4) from the forward
};
cudaError_t launch_tv_backward(const TvBackwardLaunch& a, cudaStream_t stream);

// Copies windows between a canvas (n, c, height, width) and a window tensor (n, c, window_h,
// window_w) of the same layout. Any element type: only its size matters.
struct CropWindowsLaunch {
  void* canvas;
  void* windows;
  int element_size;  // bytes
  Layout layout;
  int64_t n, c, height, width, window_h, window_w;
  const int64_t* offsets;  // (n, 2) window top-left (y, x); out-of-canvas windows trap
  bool to_windows;         // canvas -> windows (crop) or windows -> canvas (backward scatter)
};
cudaError_t launch_crop_windows(const CropWindowsLaunch& a, cudaStream_t stream);

struct RegionAdamLaunch {
  void* canvas;
  const void* grad;  // (n, c, window_h, window_w), canvas layout
  void* exp_avg;
  void* exp_avg_sq;
  Dtype dtype;  // Float32 or Float64, all four tensors
  Layout layout;
  int64_t n, c, height, width, window_h, window_w;
  const int64_t* offsets;  // (n, 2), as in CropWindowsLaunch
  AdamConstants adam;
  const void* clamp_min;  // (c) canvas dtype, or nullptr
  const void* clamp_max;  // (c) canvas dtype, or nullptr
};
cudaError_t launch_region_adam(const RegionAdamLaunch& a, cudaStream_t stream);

}  // namespace dfnas::cuda
