// CUDA glue of the per-sample window ops: crop (and its backward) and region Adam. Window
// offsets stay on the device: the kernels check each window against the canvas there (a
// window outside traps) instead of copying the offsets to the host, which would synchronize.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>

#include "cuda/glue.h"

namespace dfnas {
namespace {

// offsets (n, 2) on the canvas's device, as int64 (no copy when already so).
at::Tensor device_offsets(const at::Tensor& offsets, const at::Tensor& canvas_like, int64_t n, int64_t H, int64_t W,
                          int64_t height, int64_t width, const char* op) {
  check_windows(offsets, n, H, W, height, width, op);
  check_same_device(offsets, canvas_like, op, "offsets");
  return offsets.to(at::kLong).contiguous();
}

at::Tensor crop_windows_cuda(const at::Tensor& canvas, const at::Tensor& offsets, int64_t height, int64_t width) {
  check_image_batch(canvas, "crop_windows", "canvas");
  const c10::cuda::CUDAGuard guard(canvas.device());
  const at::Tensor offs = device_offsets(offsets, canvas, canvas.size(0), canvas.size(2), canvas.size(3), height,
                                         width, "crop_windows");
  const DenseImages dense = dense_images(canvas);
  at::Tensor out = at::empty({canvas.size(0), canvas.size(1), height, width}, canvas.options(), dense.memory_format());
  const cuda::CropWindowsLaunch launch{dense.tensor.data_ptr(), out.data_ptr(),
                                       static_cast<int>(canvas.element_size()), cuda_layout(dense),
                                       canvas.size(0), canvas.size(1), canvas.size(2), canvas.size(3), height, width,
                                       offs.data_ptr<int64_t>(), /*to_windows=*/true};
  C10_CUDA_CHECK(cuda::launch_crop_windows(launch, current_stream()));
  return out;
}

at::Tensor crop_windows_backward_cuda(const at::Tensor& grad, const at::Tensor& offsets, int64_t canvas_height,
                                      int64_t canvas_width) {
  check_image_batch(grad, "crop_windows_backward", "grad");
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::Tensor offs = device_offsets(offsets, grad, grad.size(0), canvas_height, canvas_width, grad.size(2),
                                         grad.size(3), "crop_windows_backward");
  const DenseImages dense = dense_images(grad);
  at::Tensor canvas_grad =
      at::empty({grad.size(0), grad.size(1), canvas_height, canvas_width}, grad.options(), dense.memory_format());
  canvas_grad.zero_();
  const cuda::CropWindowsLaunch launch{canvas_grad.data_ptr(), dense.tensor.data_ptr(),
                                       static_cast<int>(grad.element_size()), cuda_layout(dense),
                                       grad.size(0), grad.size(1), canvas_height, canvas_width, grad.size(2),
                                       grad.size(3), offs.data_ptr<int64_t>(), /*to_windows=*/false};
  C10_CUDA_CHECK(cuda::launch_crop_windows(launch, current_stream()));
  return canvas_grad;
}

// A per-channel bound in the canvas dtype, or an undefined tensor.
at::Tensor channel_bound(const std::optional<at::Tensor>& bound, const at::Tensor& canvas, const char* name) {
  if (!bound.has_value()) return {};
  check_channel_vector(*bound, canvas, "region_adam_", name);
  return bound->to(canvas.scalar_type()).contiguous();
}

void region_adam_cuda(const at::Tensor& canvas, const at::Tensor& grad, const at::Tensor& exp_avg,
                      const at::Tensor& exp_avg_sq, const at::Tensor& offsets, int64_t step, double lr, double beta1,
                      double beta2, double eps, const std::optional<at::Tensor>& clamp_min,
                      const std::optional<at::Tensor>& clamp_max) {
  const char* op = "region_adam_";
  const c10::cuda::CUDAGuard guard(canvas.device());
  const DenseImages dense = check_region_adam_tensors(canvas, grad, exp_avg, exp_avg_sq, step);
  const at::Tensor offs = device_offsets(offsets, canvas, canvas.size(0), canvas.size(2), canvas.size(3),
                                         grad.size(2), grad.size(3), op);
  const at::Tensor grad_dense = grad.contiguous(dense.memory_format());
  const at::Tensor lo = channel_bound(clamp_min, canvas, "clamp_min");
  const at::Tensor hi = channel_bound(clamp_max, canvas, "clamp_max");
  const cuda::RegionAdamLaunch launch{
      canvas.data_ptr(), grad_dense.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr(),
      cuda_dtype(canvas, op), cuda_layout(dense), canvas.size(0), canvas.size(1), canvas.size(2), canvas.size(3),
      grad.size(2), grad.size(3), offs.data_ptr<int64_t>(), adam_constants(step, lr, beta1, beta2, eps),
      lo.defined() ? lo.data_ptr() : nullptr, hi.defined() ? hi.data_ptr() : nullptr};
  C10_CUDA_CHECK(cuda::launch_region_adam(launch, current_stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CUDA, m) {
  m.impl("crop_windows", &crop_windows_cuda);
  m.impl("crop_windows_backward", &crop_windows_backward_cuda);
  m.impl("region_adam_", &region_adam_cuda);
}

}  // namespace dfnas
