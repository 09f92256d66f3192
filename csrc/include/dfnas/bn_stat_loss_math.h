// BN-statistics loss: L = ||mean - running_mean||_2 + ||var - running_var||_2, per-channel mean and
// biased variance over (N, H, W), M = N*H*W elements per channel.
//
// dL/dx = a_c + b_c * (x - mean_c) with a_c = (mean_c - rm_c) / (M ||mean - rm||) and
// b_c = 2 (var_c - rv_c) / (M ||var - rv||); a norm of exactly zero contributes zero gradient
// (torch's subgradient of ||.|| at 0). NaN norms propagate.
#pragma once

#include <math.h>

#include "dfnas/macros.h"

namespace dfnas {

// Moments from sums of (x - shift) and (x - shift)^2; the shift (a sample of the channel) keeps
// the single-pass variance free of catastrophic cancellation.
template <class T>
DFNAS_HD void bn_moments_from_shifted_sums(T shift, T sum, T sum_sq, T count, T* mean, T* var) {
  const T shifted_mean = sum / count;
  const T v = sum_sq / count - shifted_mean * shifted_mean;
  *mean = shift + shifted_mean;
  *var = v < T(0) ? T(0) : v;  // rounding can push a zero variance below 0; NaN passes through
}

template <class T>
DFNAS_HD T bn_mean_coefficient(T mean_minus_running, T mean_norm, T count) {
  return mean_norm == T(0) ? T(0) : mean_minus_running / (count * mean_norm);
}

template <class T>
DFNAS_HD T bn_var_coefficient(T var_minus_running, T var_norm, T count) {
  return var_norm == T(0) ? T(0) : T(2) * var_minus_running / (count * var_norm);
}

}  // namespace dfnas
