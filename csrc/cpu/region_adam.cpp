// CPU glue of region Adam (kernel: cpu/kernels/region_adam.cpp, math: dfnas/region_adam_math.h).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "cpu/glue.h"
#include "dfnas/region_adam_math.h"

namespace dfnas {
namespace {

std::vector<double> channel_bounds(const std::optional<at::Tensor>& bound, const at::Tensor& canvas,
                                   const char* name) {
  if (!bound.has_value()) return {};
  check_channel_vector(*bound, canvas, "region_adam_", name);
  return to_doubles(*bound);
}

void region_adam_cpu(const at::Tensor& canvas, const at::Tensor& grad, const at::Tensor& exp_avg,
                     const at::Tensor& exp_avg_sq, const at::Tensor& offsets, int64_t step, double lr, double beta1,
                     double beta2, double eps, const std::optional<at::Tensor>& clamp_min,
                     const std::optional<at::Tensor>& clamp_max) {
  const char* op = "region_adam_";
  // The update is in place, so the canvas must already be dense in a kernel layout.
  const DenseImages dense = check_region_adam_tensors(canvas, grad, exp_avg, exp_avg_sq, step);
  const std::vector<int64_t> offs =
      host_window_offsets(offsets, canvas.size(0), canvas.size(2), canvas.size(3), grad.size(2), grad.size(3), op);
  const at::Tensor grad_dense = grad.contiguous(dense.memory_format());
  const std::vector<double> lo = channel_bounds(clamp_min, canvas, "clamp_min");
  const std::vector<double> hi = channel_bounds(clamp_max, canvas, "clamp_max");
  cpu::kernels().region_adam({canvas.data_ptr(), grad_dense.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr(),
                              kernel_dtype(canvas, op), dense.layout, canvas.size(0), canvas.size(1),
                              canvas.size(2), canvas.size(3), grad.size(2), grad.size(3), offs.data(),
                              adam_constants(step, lr, beta1, beta2, eps), lo.empty() ? nullptr : lo.data(),
                              hi.empty() ? nullptr : hi.data()});
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CPU, m) { m.impl("region_adam_", &region_adam_cpu); }

}  // namespace dfnas
