// CPU glue of the total-variation prior.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include <string_view>

#include "cpu/tensor_checks.h"

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

std::tuple<at::Tensor, at::Tensor> tv_loss_forward_cpu(const at::Tensor& x, c10::string_view kind) {
  check_x(x);
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
  check_x(x);
  TORCH_CHECK(sums.numel() == 4 && sums.scalar_type() == at::kDouble, "tv_loss: sums must be 4 float64 values");
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
