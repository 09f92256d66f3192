// CUDA glue of the per-sample window crop and its backward (kernel: cuda/kernels/crop_windows.cu).
// Window offsets stay on the device (see device_window_offsets).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "cuda/glue.h"

namespace dfnas {
namespace {

at::Tensor crop_windows_cuda(const at::Tensor& canvas, const at::Tensor& offsets, int64_t height, int64_t width) {
  check_image_batch(canvas, "crop_windows", "canvas");
  const c10::cuda::CUDAGuard guard(canvas.device());
  const at::Tensor offs = device_window_offsets(offsets, canvas, canvas.size(0), canvas.size(2), canvas.size(3),
                                                height, width, "crop_windows");
  const DenseImages dense = dense_images(canvas);
  at::Tensor out = at::empty({canvas.size(0), canvas.size(1), height, width}, canvas.options(), dense.memory_format());
  const cuda::CropWindowsLaunch launch{dense.tensor.data_ptr(), out.data_ptr(),
                                       static_cast<int>(canvas.element_size()), dense.layout,
                                       canvas.size(0), canvas.size(1), canvas.size(2), canvas.size(3), height, width,
                                       offs.data_ptr<int64_t>(), /*to_windows=*/true};
  C10_CUDA_CHECK(cuda::launch_crop_windows(launch, current_stream()));
  return out;
}

at::Tensor crop_windows_backward_cuda(const at::Tensor& grad, const at::Tensor& offsets, int64_t canvas_height,
                                      int64_t canvas_width) {
  check_image_batch(grad, "crop_windows_backward", "grad");
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::Tensor offs = device_window_offsets(offsets, grad, grad.size(0), canvas_height, canvas_width,
                                                grad.size(2), grad.size(3), "crop_windows_backward");
  const DenseImages dense = dense_images(grad);
  at::Tensor canvas_grad =
      at::empty({grad.size(0), grad.size(1), canvas_height, canvas_width}, grad.options(), dense.memory_format());
  canvas_grad.zero_();
  const cuda::CropWindowsLaunch launch{canvas_grad.data_ptr(), dense.tensor.data_ptr(),
                                       static_cast<int>(grad.element_size()), dense.layout,
                                       grad.size(0), grad.size(1), canvas_height, canvas_width, grad.size(2),
                                       grad.size(3), offs.data_ptr<int64_t>(), /*to_windows=*/false};
  C10_CUDA_CHECK(cuda::launch_crop_windows(launch, current_stream()));
  return canvas_grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CUDA, m) {
  m.impl("crop_windows", &crop_windows_cuda);
  m.impl("crop_windows_backward", &crop_windows_backward_cuda);
}

}  // namespace dfnas
