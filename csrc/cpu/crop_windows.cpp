// CPU glue of the per-sample window crop and its backward (kernel: cpu/kernels/crop_windows.cpp).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "cpu/glue.h"

namespace dfnas {
namespace {

// Copies the windows between a canvas-shaped and a window-shaped tensor of one layout.
void copy_windows(const at::Tensor& canvas, const at::Tensor& windows, const std::vector<int64_t>& offsets,
                  Layout layout, bool to_windows) {
  cpu::kernels().crop_windows({canvas.data_ptr(), windows.data_ptr(), canvas.element_size(), layout, canvas.size(0),
                               canvas.size(1), canvas.size(2), canvas.size(3), windows.size(2), windows.size(3),
                               offsets.data(), to_windows});
}

at::Tensor crop_windows_cpu(const at::Tensor& canvas, const at::Tensor& offsets, int64_t height, int64_t width) {
  check_image_batch(canvas, "crop_windows", "canvas");
  const std::vector<int64_t> offs =
      host_window_offsets(offsets, canvas.size(0), canvas.size(2), canvas.size(3), height, width, "crop_windows");
  const DenseImages dense = dense_images(canvas);
  at::Tensor out = at::empty({canvas.size(0), canvas.size(1), height, width}, canvas.options(), dense.memory_format());
  copy_windows(dense.tensor, out, offs, dense.layout, /*to_windows=*/true);
  return out;
}

at::Tensor crop_windows_backward_cpu(const at::Tensor& grad, const at::Tensor& offsets, int64_t canvas_height,
                                     int64_t canvas_width) {
  check_image_batch(grad, "crop_windows_backward", "grad");
  const std::vector<int64_t> offs = host_window_offsets(offsets, grad.size(0), canvas_height, canvas_width,
                                                        grad.size(2), grad.size(3), "crop_windows_backward");
  const DenseImages dense = dense_images(grad);
  at::Tensor canvas_grad = at::zeros({grad.size(0), grad.size(1), canvas_height, canvas_width}, grad.options())
                               .contiguous(dense.memory_format());
  copy_windows(canvas_grad, dense.tensor, offs, dense.layout, /*to_windows=*/false);
  return canvas_grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CPU, m) {
  m.impl("crop_windows", &crop_windows_cpu);
  m.impl("crop_windows_backward", &crop_windows_backward_cpu);
}

}  // namespace dfnas
