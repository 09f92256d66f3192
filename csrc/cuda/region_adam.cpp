// CUDA glue of region Adam (kernel: cuda/kernels/region_adam.cu, math: dfnas/region_adam_math.h).
// Window offsets and clamp bounds stay on the device, so the update never synchronizes.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>

#include "cuda/glue.h"
#include "dfnas/region_adam_math.h"

namespace dfnas {
namespace {

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
  const at::Tensor offs = device_window_offsets(offsets, canvas, canvas.size(0), canvas.size(2), canvas.size(3),
                                                grad.size(2), grad.size(3), op);
  const at::Tensor grad_dense = grad.contiguous(dense.memory_format());
  const at::Tensor lo = channel_bound(clamp_min, canvas, "clamp_min");
  const at::Tensor hi = channel_bound(clamp_max, canvas, "clamp_max");
  const cuda::RegionAdamLaunch launch{
      canvas.data_ptr(), grad_dense.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr(),
      kernel_dtype(canvas, op), dense.layout, canvas.size(0), canvas.size(1), canvas.size(2), canvas.size(3),
      grad.size(2), grad.size(3), offs.data_ptr<int64_t>(), adam_constants(step, lr, beta1, beta2, eps),
      lo.defined() ? lo.data_ptr() : nullptr, hi.defined() ? hi.data_ptr() : nullptr};
  C10_CUDA_CHECK(cuda::launch_region_adam(launch, current_stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CUDA, m) { m.impl("region_adam_", &region_adam_cuda); }

}  // namespace dfnas
