// CUDA glue of the total-variation prior.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <string_view>

#include "cuda/glue.h"

namespace dfnas {
namespace {

TvKind tv_kind(std::string_view kind) {
  TORCH_CHECK(kind == "l2" || kind == "l1", "tv_loss: kind must be 'l2' or 'l1', got '", kind, "'");
  return kind == "l2" ? TvKind::L2 : TvKind::L1;
}

void check_x(const at::Tensor& x) {
  check_image_batch(x, "tv_loss", "x");
  TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2, "tv_loss: x must be at least 2x2 pixels, got ", x.size(2), "x",
              x.size(3));
}

std::tuple<at::Tensor, at::Tensor> tv_loss_forward_cuda(const at::Tensor& x, c10::string_view kind) {
  check_x(x);
  const TvKind k = tv_kind(kind);
  const c10::cuda::CUDAGuard guard(x.device());
  const DenseImages dense = dense_images(x);
  at::Tensor loss = at::empty({}, x.options().dtype(opmath_dtype(x)));
  at::Tensor sums = at::empty({4}, x.options().dtype(at::kDouble));
  cuda::TvForwardLaunch launch{dense.tensor.data_ptr(), cuda_dtype(x, "tv_loss"), cuda_layout(dense), k,
                               x.size(0), x.size(1), x.size(2), x.size(3), loss.data_ptr(),
                               sums.data_ptr<double>(), nullptr};
  const at::Tensor scratch = workspace(x, cuda::tv_forward_workspace_bytes(launch));
  launch.workspace = scratch.data_ptr();
  C10_CUDA_CHECK(cuda::launch_tv_forward(launch, current_stream()));
  return {loss, sums};
}

at::Tensor tv_loss_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& x, const at::Tensor& sums,
                                 c10::string_view kind) {
  check_x(x);
  TORCH_CHECK(sums.numel() == 4 && sums.scalar_type() == at::kDouble, "tv_loss: sums must be 4 float64 values");
  TORCH_CHECK(grad_loss.numel() == 1, "tv_loss_backward: grad_loss must be a scalar");
  check_same_device(sums, x, "tv_loss_backward", "sums");
  check_same_device(grad_loss, x, "tv_loss_backward", "grad_loss");
  const TvKind k = tv_kind(kind);
  const c10::cuda::CUDAGuard guard(x.device());
  const DenseImages dense = dense_images(x);
  const at::Tensor g = grad_loss.to(opmath_dtype(x)).contiguous();
  const at::Tensor sums_c = sums.contiguous();
  at::Tensor grad_x = at::empty(x.sizes(), x.options(), dense.memory_format());
  const cuda::TvBackwardLaunch launch{dense.tensor.data_ptr(), grad_x.data_ptr(), cuda_dtype(x, "tv_loss"),
                                      cuda_layout(dense), k, x.size(0), x.size(1), x.size(2), x.size(3),
                                      g.data_ptr(), sums_c.data_ptr<double>()};
  C10_CUDA_CHECK(cuda::launch_tv_backward(launch, current_stream()));
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CUDA, m) {
  m.impl("tv_loss_forward", &tv_loss_forward_cuda);
  m.impl("tv_loss_backward", &tv_loss_backward_cuda);
}

}  // namespace dfnas
