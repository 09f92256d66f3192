// CUDA glue of the total-variation prior (kernels: cuda/kernels/tv_loss.cu).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "cuda/glue.h"

namespace dfnas {
namespace {

std::tuple<at::Tensor, at::Tensor> tv_loss_forward_cuda(const at::Tensor& x, c10::string_view kind) {
  check_tv_input(x);
  const TvKind k = tv_kind(kind);
  const c10::cuda::CUDAGuard guard(x.device());
  const DenseImages dense = dense_images(x);
  at::Tensor loss = at::empty({}, x.options().dtype(opmath_dtype(x)));
  at::Tensor sums = at::empty({4}, x.options().dtype(at::kDouble));
  cuda::TvForwardLaunch launch{dense.tensor.data_ptr(), kernel_dtype(x, "tv_loss"), dense.layout, k,
                               x.size(0), x.size(1), x.size(2), x.size(3), loss.data_ptr(),
                               sums.data_ptr<double>(), nullptr};
  const at::Tensor scratch = workspace(x, cuda::tv_forward_workspace_bytes(launch));
  launch.workspace = scratch.data_ptr();
  C10_CUDA_CHECK(cuda::launch_tv_forward(launch, current_stream()));
  return {loss, sums};
}

at::Tensor tv_loss_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& x, const at::Tensor& sums,
                                 c10::string_view kind) {
  check_tv_input(x);
  check_tv_sums(sums);
  TORCH_CHECK(grad_loss.numel() == 1, "tv_loss_backward: grad_loss must be a scalar");
  check_same_device(sums, x, "tv_loss_backward", "sums");
  check_same_device(grad_loss, x, "tv_loss_backward", "grad_loss");
  const TvKind k = tv_kind(kind);
  const c10::cuda::CUDAGuard guard(x.device());
  const DenseImages dense = dense_images(x);
  const at::Tensor g = grad_loss.to(opmath_dtype(x)).contiguous();
  const at::Tensor sums_c = sums.contiguous();
  at::Tensor grad_x = at::empty(x.sizes(), x.options(), dense.memory_format());
  const cuda::TvBackwardLaunch launch{dense.tensor.data_ptr(), grad_x.data_ptr(), kernel_dtype(x, "tv_loss"),
                                      dense.layout, k, x.size(0), x.size(1), x.size(2), x.size(3),
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
