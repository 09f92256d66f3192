// Raw-pointer interface between the ATen glue (csrc/cpu/*.cpp) and the vectorized kernels
// (csrc/cpu/kernels/<op>.cpp), which are compiled once per CPU capability. Kernels see only
// contiguous NCHW or channels-last (NHWC) memory; the glue checks shapes and picks the layout.
#pragma once

#include <stdint.h>

#include "dfnas/region_adam_math.h"
#include "dfnas/tv_loss_math.h"
#include "dfnas/types.h"

namespace dfnas::cpu {

struct BnStatsArgs {
  const void* x;
  Dtype dtype;
  Layout layout;
  int64_t n, c, hw;
  double* mean;  // (c) outputs
  double* var;   // (c) biased variance
};

// grad_x = shift[c] + scale[c] * x: the BN-loss backward folded into one affine map per channel.
struct BnBackwardArgs {
  const void* x;
  void* grad_x;
  Dtype dtype;
  Layout layout;
  int64_t n, c, hw;
  const double* shift;  // (c)
  const double* scale;  // (c)
};

struct TvForwardArgs {
  const void* x;
  Dtype dtype;
  Layout layout;
  TvKind kind;
  int64_t n, c, h, w;
  double* sums;  // (4) outputs: per-direction sums of tv_forward_term
};

struct TvBackwardArgs {
  const void* x;
  void* grad_x;
  Dtype dtype;
  Layout layout;
  TvKind kind;
  int64_t n, c, h, w;
  double weights[4];  // tv_backward_weights
};

// Copies each sample's window between a canvas (n, c, height, width) and a window tensor
// (n, c, window_h, window_w) of the same layout. Any element type: only its size matters.
struct CropWindowsArgs {
  void* canvas;
  void* windows;
  int64_t element_size;  // bytes
  Layout layout;
  int64_t n, c, height, width;  // canvas
  int64_t window_h, window_w;
  const int64_t* offsets;  // (n, 2): window top-left (y, x), already bounds-checked
  bool to_windows;         // canvas -> windows (crop) or windows -> canvas (backward scatter)
};

struct RegionAdamArgs {
  void* canvas;
  const void* grad;
  void* exp_avg;
  void* exp_avg_sq;
  Dtype dtype;  // Float32 or Float64
  Layout layout;
  int64_t n, c, height, width;  // canvas
  int64_t window_h, window_w;   // grad
  const int64_t* offsets;       // (n, 2), as in CropWindowsArgs
  AdamConstants adam;
  const double* clamp_min;  // (c) or nullptr
  const double* clamp_max;  // (c) or nullptr
};

struct KernelTable {
  const char* capability;
  int float_lanes;  // at::vec::Vectorized<float>::size() in this variant
  bool openmp;      // compiled with OpenMP (at::parallel_for really parallel)
  void (*bn_stats)(const BnStatsArgs&);
  void (*bn_backward)(const BnBackwardArgs&);
  void (*tv_forward)(const TvForwardArgs&);
  void (*tv_backward)(const TvBackwardArgs&);
  void (*crop_windows)(const CropWindowsArgs&);
  void (*region_adam)(const RegionAdamArgs&);
};

// One table per capability (defined in kernels/table.cpp, compiled per capability).
const KernelTable& kernel_table_DEFAULT();
const KernelTable& kernel_table_AVX2();
const KernelTable& kernel_table_AVX512();

// The table in use: the best the CPU supports, or DFNAS_CPU_CAPABILITY (default|avx2|avx512),
// never above what the CPU supports. Defined in csrc/cpu/capability.cpp.
const KernelTable& kernels();

}  // namespace dfnas::cpu
