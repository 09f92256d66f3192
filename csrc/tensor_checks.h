// Argument checks and layout selection of the ATen glue, the one definition both backends use
// (csrc/cpu/<op>.cpp and csrc/cuda/<op>.cpp), so that CPU and CUDA accept and reject the same
// inputs. Tensors map onto the kernels' torch-free Dtype / Layout (dfnas/types.h) here.
#pragma once

#include <ATen/core/Tensor.h>

#include <string_view>

#include "dfnas/tv_loss_math.h"
#include "dfnas/types.h"

namespace dfnas {

inline void check_image_batch(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(x.dim() == 4, op, ": ", name, " must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(x.numel() > 0, op, ": ", name, " must not be empty, got shape ", x.sizes());
}

inline void check_channel_vector(const at::Tensor& v, const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == x.size(1), op, ": ", name, " must have shape (", x.size(1),
              ",) to match the channels of x, got ", v.sizes());
  TORCH_CHECK(v.device() == x.device(), op, ": ", name, " is on ", v.device(), " but x is on ", x.device());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& reference, const char* op, const char* name) {
  TORCH_CHECK(t.device() == reference.device(), op, ": ", name, " is on ", t.device(), " but expected ",
              reference.device());
}

inline Dtype kernel_dtype(const at::Tensor& x, const char* op) {
  switch (x.scalar_type()) {
    case at::kFloat: return Dtype::Float32;
    case at::kDouble: return Dtype::Float64;
    case at::kBFloat16: return Dtype::BFloat16;
    case at::kHalf: return Dtype::Float16;
    default: TORCH_CHECK(false, op, ": unsupported dtype ", x.scalar_type(), " (float32, float64, bfloat16, float16)");
  }
}

// Accumulation / loss dtype: float64 for float64 input, float32 otherwise.
inline at::ScalarType opmath_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// A kernel-ready view: x itself when it is NCHW- or channels-last-contiguous (NCHW wins when
// both hold), otherwise an NCHW copy.
struct DenseImages {
  at::Tensor tensor;
  Layout layout;
  at::MemoryFormat memory_format() const {
    return layout == Layout::NHWC ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  }
};

inline DenseImages dense_images(const at::Tensor& x) {
  if (x.is_contiguous()) return {x, Layout::NCHW};
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) return {x, Layout::NHWC};
  return {x.contiguous(), Layout::NCHW};
}

// Windows (height, width) at per-sample offsets (N, 2) = (y, x) must lie inside (H, W).
inline void check_windows(const at::Tensor& offsets, int64_t n, int64_t H, int64_t W, int64_t height,
                          int64_t width, const char* op) {
  TORCH_CHECK(offsets.dim() == 2 && offsets.size(0) == n && offsets.size(1) == 2, op,
              ": offsets must have shape (", n, ", 2), got ", offsets.sizes());
  TORCH_CHECK(!at::isFloatingType(offsets.scalar_type()) && offsets.scalar_type() != at::kBool, op,
              ": offsets must be an integer tensor, got ", offsets.scalar_type());
  TORCH_CHECK(height >= 1 && width >= 1, op, ": window must be at least 1x1, got ", height, "x", width);
  TORCH_CHECK(height <= H && width <= W, op, ": window ", height, "x", width, " is larger than the canvas ", H,
              "x", W);
}

// bn_stat_loss: x (N, C, H, W) and running statistics (C,) on x's device.
inline void check_bn_stat_loss_args(const at::Tensor& x, const at::Tensor& running_mean,
                                    const at::Tensor& running_var) {
  check_image_batch(x, "bn_stat_loss", "x");
  check_channel_vector(running_mean, x, "bn_stat_loss", "running_mean");
  check_channel_vector(running_var, x, "bn_stat_loss", "running_var");
}

inline TvKind tv_kind(std::string_view kind) {
  TORCH_CHECK(kind == "l2" || kind == "l1", "tv_loss: kind must be 'l2' or 'l1', got '", kind, "'");
  return kind == "l2" ? TvKind::L2 : TvKind::L1;
}

inline void check_tv_input(const at::Tensor& x) {
  check_image_batch(x, "tv_loss", "x");
  TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2, "tv_loss: x must be at least 2x2 pixels, got ", x.size(2), "x",
              x.size(3));
}

inline void check_tv_sums(const at::Tensor& sums) {
  TORCH_CHECK(sums.numel() == 4 && sums.scalar_type() == at::kDouble, "tv_loss: sums must be 4 float64 values");
}

// region_adam_'s tensors: the canvas layout the in-place update will walk (the canvas must
// already be dense in it; the moments must share it).
inline DenseImages check_region_adam_tensors(const at::Tensor& canvas, const at::Tensor& grad,
                                             const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq, int64_t step) {
  const char* op = "region_adam_";
  check_image_batch(canvas, op, "canvas");
  check_image_batch(grad, op, "grad");
  TORCH_CHECK(canvas.scalar_type() == at::kFloat || canvas.scalar_type() == at::kDouble, op,
              ": canvas must be float32 or float64, got ", canvas.scalar_type());
  TORCH_CHECK(step >= 1, op, ": step must be >= 1 (the step count after this update), got ", step);
  for (const at::Tensor* t : {&grad, &exp_avg, &exp_avg_sq}) {
    TORCH_CHECK(t->scalar_type() == canvas.scalar_type() && t->device() == canvas.device(), op,
                ": grad and moments must match the canvas dtype and device (", canvas.scalar_type(), ", ",
                canvas.device(), "), got ", t->scalar_type(), ", ", t->device());
  }
  TORCH_CHECK(exp_avg.sizes() == canvas.sizes() && exp_avg_sq.sizes() == canvas.sizes(), op,
              ": exp_avg and exp_avg_sq must have the canvas shape ", canvas.sizes());
  TORCH_CHECK(exp_avg.strides() == canvas.strides() && exp_avg_sq.strides() == canvas.strides(), op,
              ": exp_avg and exp_avg_sq must have the canvas memory layout");
  TORCH_CHECK(grad.size(0) == canvas.size(0) && grad.size(1) == canvas.size(1), op, ": grad must be (",
              canvas.size(0), ", ", canvas.size(1), ", h, w), got ", grad.sizes());
  const DenseImages dense = dense_images(canvas);
  TORCH_CHECK(dense.tensor.is_same(canvas), op, ": canvas must be contiguous or channels_last");
  return dense;
}

}  // namespace dfnas
