// CPU glue of the total-variation prior (kernels: cpu/kernels/tv_loss.cpp).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include "cpu/glue.h"

namespace dfnas {
namespace {

std::tuple<at::Tensor, at::Tensor> tv_loss_forward_cpu(const at::Tensor& x, c10::string_view kind) {
  check_tv_input(x);
  const TvKind k = tv_kind(kind);
  const DenseImages dense = dense_images(x);
  at::Tensor sums = at::empty({4}, x.options().dtype(at::kDouble));
  cpu::kernels().tv_forward({dense.tensor.data_ptr(), kernel_dtype(x, "tv_loss"), dense.layout, k, x.size(0),
                             x.size(1), x.size(2), x.size(3), sums.data_ptr<double>()});
  double counts[4];
  tv_counts(x.size(0), x.size(1), x.size(2), x.size(3), counts);
  const double loss = tv_loss_from_sums(k, sums.data_ptr<double>(), counts);
  return {at::scalar_tensor(loss, x.options().dtype(opmath_dtype(x))), sums};
}

at::Tensor tv_loss_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& x, const at::Tensor& sums,
                                c10::string_view kind) {
  check_tv_input(x);
  check_tv_sums(sums);
  const TvKind k = tv_kind(kind);
  const DenseImages dense = dense_images(x);
  cpu::TvBackwardArgs args{dense.tensor.data_ptr(), nullptr, kernel_dtype(x, "tv_loss"), dense.layout, k,
                           x.size(0), x.size(1), x.size(2), x.size(3), {}};
  double counts[4];
  tv_counts(x.size(0), x.size(1), x.size(2), x.size(3), counts);
  const at::Tensor sums_c = sums.contiguous();
  tv_backward_weights(k, grad_loss.item<double>(), sums_c.data_ptr<double>(), counts, args.weights);
  at::Tensor grad_x = at::empty(x.sizes(), x.options(), dense.memory_format());
  args.grad_x = grad_x.data_ptr();
  cpu::kernels().tv_backward(args);
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CPU, m) {
  m.impl("tv_loss_forward", &tv_loss_forward_cpu);
  m.impl("tv_loss_backward", &tv_loss_backward_cpu);
}

}  // namespace dfnas
