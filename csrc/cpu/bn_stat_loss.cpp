// CPU glue of the BN-statistics loss (kernels: cpu/kernels/bn_stat_loss.cpp): checks, layout, and
// the loss from per-channel moments.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "cpu/glue.h"
#include "dfnas/bn_stat_loss_math.h"

namespace dfnas {
namespace {

at::Tensor vector_tensor(const std::vector<double>& values, at::TensorOptions options) {
  at::Tensor out = at::empty({static_cast<int64_t>(values.size())}, options.dtype(at::kDouble));
  std::copy(values.begin(), values.end(), out.data_ptr<double>());
  return out.to(options.dtype());
}

double l2_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0.0;
  for (size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(sum);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_stat_loss_forward_cpu(const at::Tensor& x,
                                                                         const at::Tensor& running_mean,
                                                                         const at::Tensor& running_var) {
  check_bn_stat_loss_args(x, running_mean, running_var);
  const DenseImages dense = dense_images(x);
  const int64_t C = x.size(1);
  std::vector<double> mean(C), var(C);
  cpu::kernels().bn_stats({dense.tensor.data_ptr(), kernel_dtype(x, "bn_stat_loss"), dense.layout, x.size(0), C,
                           x.size(2) * x.size(3), mean.data(), var.data()});
  const double loss = l2_distance(mean, to_doubles(running_mean)) + l2_distance(var, to_doubles(running_var));
  const auto options = x.options().dtype(opmath_dtype(x));
  return {at::scalar_tensor(loss, options), vector_tensor(mean, options), vector_tensor(var, options)};
}

at::Tensor bn_stat_loss_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& x, const at::Tensor& mean,
                                     const at::Tensor& var, const at::Tensor& running_mean,
                                     const at::Tensor& running_var) {
  check_bn_stat_loss_args(x, running_mean, running_var);
  const int64_t C = x.size(1);
  const double count = static_cast<double>(x.size(0)) * x.size(2) * x.size(3);
  const double grad = grad_loss.item<double>();
  const std::vector<double> mu = to_doubles(mean), sigma2 = to_doubles(var);
  const std::vector<double> rm = to_doubles(running_mean), rv = to_doubles(running_var);
  const double mean_norm = l2_distance(mu, rm), var_norm = l2_distance(sigma2, rv);
  // dL/dx = g (a_c + b_c (x - mu_c)) = shift_c + scale_c x
  std::vector<double> shift(C), scale(C);
  for (int64_t c = 0; c < C; ++c) {
    const double a = bn_mean_coefficient(mu[c] - rm[c], mean_norm, count);
    const double b = bn_var_coefficient(sigma2[c] - rv[c], var_norm, count);
    scale[c] = grad * b;
    shift[c] = grad * (a - b * mu[c]);
  }
  const DenseImages dense = dense_images(x);
  at::Tensor grad_x = at::empty(x.sizes(), x.options(), dense.memory_format());
  cpu::kernels().bn_backward({dense.tensor.data_ptr(), grad_x.data_ptr(), kernel_dtype(x, "bn_stat_loss"),
                              dense.layout, x.size(0), C, x.size(2) * x.size(3), shift.data(), scale.data()});
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfnas, CPU, m) {
  m.impl("bn_stat_loss_forward", &bn_stat_loss_forward_cpu);
  m.impl("bn_stat_loss_backward", &bn_stat_loss_backward_cpu);
}

}  // namespace dfnas
