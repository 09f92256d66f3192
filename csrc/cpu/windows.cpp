// CPU glue of the per-sample window ops: crop (and its backward) and region Adam.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <vector>

#include "dfnas/adam_math.h"
#include "cpu/tensor_checks.h"

namespace dfnas {
namespace {

// Offsets as int64 host values, each window checked against the canvas.
std::vector<int64_t> window_offsets(const at::Tensor& offsets, int64_t n, int64_t H, int64_t W, int64_t height,
                                    int64_t width, const char* op) {
  check_windows(offsets, n, H, W, height, width, op);
  const at::Tensor host = offsets.to(at::kCPU).to(at::kLong).contiguous();
  std::vector<int64_t> out(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = out[2 * i], x = out[2 * i + 1];
    TORCH_CHECK(y >= 0 && x >= 0 && y + height <= H && x + width <= W, op, ": window of sample ", i, " at (y=", y,
                ", x=", x, ") with size ", height, "x", width, " leaves the ", H, "x", W, " canvas");
  }
  return out;
}

// Copies each sample's window between a canvas-shaped tensor and a window-shaped tensor that
// share one layout. A window row is contiguous: W elements of a channel (NCHW) or W*C (NHWC).
void copy_windows(const at::Tensor& canvas, const at::Tensor& windows, const std::vector<int64_t>& offsets,
                  cpu::Layout layout, bool to_windows) {
  const int64_t N = canvas.size(0), C = canvas.size(1), H = canvas.size(2), W = canvas.size(3);
  const int64_t h = windows.size(2), w = windows.size(3);
  const bool nchw = layout == cpu::Layout::NCHW;
  const int64_t rows = nchw ? N * C * h : N * h;
  const int64_t row_bytes = (nchw ? w : w * C) * canvas.element_size();
  char* canvas_bytes = static_cast<char*>(canvas.data_ptr());
  char* window_bytes = static_cast<char*>(windows.data_ptr());
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / row_bytes), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = nchw ? r / (C * h) : r / h, c = nchw ? (r / h) % C : 0, i = r % h;
      const int64_t y = offsets[2 * n] + i, x = offsets[2 * n + 1];
      const int64_t at = nchw ? ((n * C + c) * H + y) * W + x : ((n * H + y) * W + x) * C;
      char* canvas_row = canvas_bytes + at * canvas.element_size();
      char* window_row = window_bytes + r * row_bytes;
      to_windows ? std::memcpy(window_row, canvas_row, row_bytes) : std::memcpy(canvas_row, window_row, row_bytes);
    }
  });
}

at::Tensor crop_windows_cpu(const at::Tensor& canvas, const at::Tensor& offsets, int64_t height, int64_t width) {
  check_image_batch(canvas, "crop_windows", "canvas");
  const std::vector<int64_t> offs =
      window_offsets(offsets, canvas.size(0), canvas.size(2), canvas.size(3), height, width, "crop_windows");
  const DenseImages dense = dense_images(canvas);
  at::Tensor out = at::empty({canvas.size(0), canvas.size(1), height, width}, canvas.options(), dense.memory_format());
  copy_windows(dense.tensor, out, offs, dense.layout, /*to_windows=*/true);
  return out;
}

at::Tensor crop_windows_backward_cpu(const at::Tensor& grad, const at::Tensor& offsets, int64_t canvas_height,
                                     int64_t canvas_width) {
  check_image_batch(grad, "crop_windows_backward", "grad");
  const std::vector<int64_t> offs = window_offsets(offsets, grad.size(0), canvas_height, canvas_width, grad.size(2),
                                                   grad.size(3), "crop_windows_backward");
  const DenseImages dense = dense_images(grad);
  at::Tensor canvas_grad = at::zeros({grad.size(0), grad.size(1), canvas_height, canvas_width}, grad.options())
                               .contiguous(dense.memory_format());
  copy_windows(canvas_grad, dense.tensor, offs, dense.layout, /*to_windows=*/false);
  return canvas_grad;
}

std::vector<double> channel_bounds(const std::optional<at::Tensor>& bound, const at::Tensor& canvas,
                                   const char* name) {
  if (!bound.has_value()) return {};
  check_channel_vector(*bound, canvas, "region_adam_", name);
  const at::Tensor d = bound->to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

void region_adam_cpu(const at::Tensor& canvas, const at::Tensor& grad, const at::Tensor& exp_avg,
                     const at::Tensor& exp_avg_sq, const at::Tensor& offsets, int64_t step, double lr, double beta1,
                     double beta2, double eps, const std::optional<at::Tensor>& clamp_min,
                     const std::optional<at::Tensor>& clamp_max) {
  const char* op = "region_adam_";
  // The update is in place, so the canvas must already be dense in a kernel layout.
  const DenseImages dense = check_region_adam_tensors(canvas, grad, exp_avg, exp_avg_sq, step);
  const std::vector<int64_t> offs =
      window_offsets(offsets, canvas.size(0), canvas.size(2), canvas.size(3), grad.size(2), grad.size(3), op);
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

TORCH_LIBRARY_IMPL(dfnas, CPU, m) {
  m.impl("crop_windows", &crop_windows_cpu);
  m.impl("crop_windows_backward", &crop_windows_backward_cpu);
  m.impl("region_adam_", &region_adam_cpu);
}

}  // namespace dfnas
