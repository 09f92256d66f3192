// Adam element update, as torch.optim.Adam computes it (no weight decay, no amsgrad):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^step
// followed by an optional clamp of p to [lo, hi]. Bias corrections are computed once on the host
// in double (as torch does) and passed in AdamConstants.
#pragma once

#include <math.h>
#include <stdint.h>

#include "dfnas/macros.h"

namespace dfnas {

struct AdamConstants {
  double beta1, beta2, one_minus_beta1, one_minus_beta2;
  double step_size;       // lr / bc1
  double bias2_sqrt;      // sqrt(bc2)
  double eps;
};

DFNAS_HD AdamConstants adam_constants(int64_t step, double lr, double beta1, double beta2, double eps) {
  const double bc1 = 1.0 - ::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - ::pow(beta2, static_cast<double>(step));
  return AdamConstants{beta1, beta2, 1.0 - beta1, 1.0 - beta2, lr / bc1, ::sqrt(bc2), eps};
}

// T is a scalar (float, double) or a SIMD vector type with a Math<T> specialization; the
// constants arrive already converted to T.
template <class T>
struct AdamConstantsOf {
  T beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, bias2_sqrt, eps;
  explicit DFNAS_HD AdamConstantsOf(const AdamConstants& c)
      : beta1(static_cast<float>(c.beta1)), beta2(static_cast<float>(c.beta2)),
        one_minus_beta1(static_cast<float>(c.one_minus_beta1)),
        one_minus_beta2(static_cast<float>(c.one_minus_beta2)),
        step_size(static_cast<float>(c.step_size)), bias2_sqrt(static_cast<float>(c.bias2_sqrt)),
        eps(static_cast<float>(c.eps)) {}
};

template <>
struct AdamConstantsOf<double> {
  double beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, bias2_sqrt, eps;
  explicit DFNAS_HD AdamConstantsOf(const AdamConstants& c)
      : beta1(c.beta1), beta2(c.beta2), one_minus_beta1(c.one_minus_beta1),
        one_minus_beta2(c.one_minus_beta2), step_size(c.step_size), bias2_sqrt(c.bias2_sqrt),
        eps(c.eps) {}
};

// Returns the new parameter; updates the moments in place.
template <class T>
DFNAS_HD T adam_update(T param, T grad, T& exp_avg, T& exp_avg_sq, const AdamConstantsOf<T>& c) {
  exp_avg = c.beta1 * exp_avg + c.one_minus_beta1 * grad;
  exp_avg_sq = c.beta2 * exp_avg_sq + c.one_minus_beta2 * grad * grad;
  const T denom = Math<T>::sqrt(exp_avg_sq) / c.bias2_sqrt + c.eps;
  return param - c.step_size * exp_avg / denom;
}

template <class T>
DFNAS_HD T clamp_value(T x, T lo, T hi) {
  return Math<T>::min(Math<T>::max(x, lo), hi);
}

}  // namespace dfnas
