// Total-variation prior over the four neighbour differences of x (N, C, H, W):
//   right d0 = x[i, j] - x[i, j+1]      down      d1 = x[i, j] - x[i+1, j]
//   diag  d2 = x[i+1, j] - x[i, j+1]    diag-down d3 = x[i, j] - x[i+1, j+1]
// l2: L = sum_k ||d_k||_F          -> dL/dd_k = (g / ||d_k||) * d_k        (0 where ||d_k|| = 0)
// l1: L = sum_k mean(|d_k|)        -> dL/dd_k = (g / count_k) * sign(d_k)
// A pixel's gradient collects +dL/dd_k where it is the first operand of a difference and
// -dL/dd_k where it is the second.
#pragma once

#include <math.h>
#include <stdint.h>

#include "dfnas/macros.h"

namespace dfnas {

enum class TvKind : int { L2 = 0, L1 = 1 };

// Number of elements of each difference tensor.
DFNAS_HD void tv_counts(int64_t n, int64_t c, int64_t h, int64_t w, double counts[4]) {
  const double planes = static_cast<double>(n) * static_cast<double>(c);
  counts[0] = planes * h * (w - 1);
  counts[1] = planes * (h - 1) * w;
  counts[2] = planes * (h - 1) * (w - 1);
  counts[3] = planes * (h - 1) * (w - 1);
}

// Per-direction reduction terms accumulated by the forward pass: d^2 (l2) or |d| (l1).
template <class T>
DFNAS_HD T tv_forward_term(TvKind kind, T d) {
  return kind == TvKind::L2 ? d * d : Math<T>::abs(d);
}

// Loss from the four per-direction sums of tv_forward_term.
DFNAS_HD double tv_loss_from_sums(TvKind kind, const double sums[4], const double counts[4]) {
  double loss = 0.0;
  for (int k = 0; k < 4; ++k) loss += kind == TvKind::L2 ? ::sqrt(sums[k]) : sums[k] / counts[k];
  return loss;
}

// Weight w_k of each direction in the backward pass (gradient = w_k * tv_backward_term(d)).
DFNAS_HD void tv_backward_weights(TvKind kind, double grad_loss, const double sums[4],
                                  const double counts[4], double weights[4]) {
  for (int k = 0; k < 4; ++k) {
    if (kind == TvKind::L2) {
      const double norm = ::sqrt(sums[k]);
      weights[k] = norm == 0.0 ? 0.0 : grad_loss / norm;
    } else {
      weights[k] = grad_loss / counts[k];
    }
  }
}

template <class T>
DFNAS_HD T tv_backward_term(TvKind kind, T d) {
  return kind == TvKind::L2 ? d : Math<T>::sign(d);
}

}  // namespace dfnas
