// CUDA glue of the BN-statistics loss (kernels: cuda/kernels/bn_stat_loss.cu): checks, layout,
// outputs; the kernels compute the loss, the moments and the backward on the device without
// synchronizing with the host.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "cuda/glue.h"

namespace dfnas {
namespace {

void check_args(const at::Tensor& x, const at::Tensor& running_mean, const at::Tensor& running_var) {
  check_bn_stat_loss_args(x, running_mean, running_var);
  TORCH_CHECK(x.size(1) <= 65535, "bn_stat_loss: at most 65535 channels on CUDA, got ", x.size(1));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_stat_loss_forward_cuda(const at::Tensor& x,
                                                                          const at::Tensor& running_mean,
                                                                          const at::Tensor& running_var) {
  check_args(x, running_mean, running_var);
  const c10::cuda::CUDAGuard guard(x.device());
  const DenseImages dense = dense_images(x);
  const ChannelPair running = channel_pair(running_mean, running_var);
  const auto options = x.options().dtype(opmath_dtype(x));
  const int64_t C = x.size(1);
  at::Tensor loss = at::empty({}, options), mean = at::empty({C}, options), var = at::empty({C}, options);
  cuda::BnStatsLaunch launch{dense.tensor.data_ptr(), kernel_dtype(x, "bn_stat_loss"), dense.layout,
                             x.size(0), C, x.size(2) * x.size(3), running.first.data_ptr(),
                             running.second.data_ptr(), running.dtype, loss.data_ptr(), mean.data_ptr(),
                             var.data_ptr(), nullptr};
  const at::Tensor scratch = workspace(x, cuda::bn_stats_workspace_bytes(launch));
  launch.workspace = scratch.data_ptr();
  C10_CUDA_CHECK(cuda::launch_bn_stats(launch, current_stream()));
  return {loss, mean, var};
}

at::Tensor bn_stat_loss_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& x, const at::Tensor& mean,
                                      const at::Tensor& var, const at::Tensor& running_mean,
                                      const at::Tensor& running_var) {
  check_args(x, running_mean, running_var);
  check_channel_vector(mean, x, "bn_stat_loss_backward", "mean");
  check_channel_vector(var, x, "bn_stat_loss_backward", "var");
  TORCH_CHECK(grad_loss.numel() == 1, "bn_stat_loss_backward: grad_loss must be a scalar");
  check_same_device(grad_loss, x, "bn_stat_loss_backward", "grad_loss");
  const c10::cuda::CUDAGuard guard(x.device());
  const DenseImages dense = dense_images(x);
  const at::ScalarType opmath = opmath_dtype(x);
  const at::Tensor g = grad_loss.to(opmath).contiguous();
  const at::Tensor mu = mean.to(opmath).contiguous(), sigma2 = var.to(opmath).contiguous();
  const ChannelPair running = channel_pair(running_mean, running_var);
  at::Tensor grad_x = at::empty(x.sizes(), x.options(), dense.memory_format());
  cuda::BnBackwardLaunch launch{dense.tensor.data_ptr(), grad_x.data_ptr(), kernel_dtype(x, "bn_stat_loss"),
                                dense.layout, x.size(0), x.size(1), x.size(2) * x.size(3),
                                g.data_ptr(), mu.data_ptr(), sigma2.data_ptr(), running.first.data_ptr(),
                                running.second.data_ptr(), running.dtype, nullptr};
  const at::Tensor scratch = workspace(x, cuda::bn_backward_workspace_bytes(launch));
  launch.workspace = scratch.data_ptr();
  C10_CUDA_CHECK(cuda::launch_bn_backward(launch, current_stream()));
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CUDA, m) {
  m.impl("bn_stat_loss_forward", &bn_stat_loss_forward_cuda);
  m.impl("bn_stat_loss_backward", &bn_stat_loss_backward_cuda);
}

}  // namespace dfnas
