// Total-variation prior kernels (math in dfnas/tv_loss_math.h).
//
// Both layouts are walked as planes of `h` rows of `len` contiguous elements where the right
// neighbour is `step` elements away: NCHW planes are the N*C images (len = W, step = 1);
// channels-last planes are the N images (len = W*C, step = C). The forward is one read of x,
// the backward one read of x (a 3-row stencil that stays in cache) and one write of grad_x.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "vec_io.h"

namespace dfnas::cpu {
inline namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kTaskElements = 16384;

struct Planes {
  int64_t planes, rows, len, step;
};

Planes planes_of(Layout layout, int64_t n, int64_t c, int64_t h, int64_t w) {
  return layout == Layout::NCHW ? Planes{n * c, h, w, 1} : Planes{n, h, w * c, c};
}

template <TvKind kind, class V>
V forward_term(const V& d) {
  if constexpr (kind == TvKind::L2) {
    return d * d;
  } else {
    return Math<V>::abs(d);
  }
}

// Adds this row's four direction sums into out[4]. `below` is the next row or nullptr.
template <class T, TvKind kind>
void tv_forward_row(const T* row, const T* below, int64_t len, int64_t step, double out[4]) {
  using acc_t = opmath_t<T>;
  const int64_t pairs = len - step;  // columns that have a right neighbour
  // SIMD over [0, pairs), the last vector partial (zero lanes add nothing); `simd` is its end.
  const int64_t simd = kHasSimd<T> ? std::max<int64_t>(pairs, 0) : 0;
  if constexpr (kHasSimd<T>) {
    FVec right(0.f), down(0.f), diag(0.f), diag_down(0.f);
    for (int64_t t = 0; t < simd; t += kLanes) {
      const int64_t count = std::min(kLanes, simd - t);
      const FVec x = load_float(row + t, count), x_right = load_float(row + t + step, count);
      right = right + forward_term<kind>(x - x_right);
      if (below != nullptr) {
        const FVec b = load_float(below + t, count), b_right = load_float(below + t + step, count);
        down = down + forward_term<kind>(x - b);
        diag = diag + forward_term<kind>(b - x_right);
        diag_down = diag_down + forward_term<kind>(x - b_right);
      }
    }
    const auto reduce = [](const FVec& v) { return static_cast<double>(at::vec::vec_reduce_all<float>(std::plus<FVec>(), v)); };
    if (simd > 0) {
      out[0] += reduce(right);
      out[1] += reduce(down);
      out[2] += reduce(diag);
      out[3] += reduce(diag_down);
    }
  }
  for (int64_t t = simd; t < len; ++t) {
    const acc_t x = static_cast<acc_t>(row[t]);
    const bool has_right = t < pairs;
    const acc_t x_right = has_right ? static_cast<acc_t>(row[t + step]) : acc_t(0);
    if (has_right) out[0] += tv_forward_term(kind, x - x_right);
    if (below != nullptr) {
      const acc_t b = static_cast<acc_t>(below[t]);
      out[1] += tv_forward_term(kind, x - b);
      if (has_right) {
        out[2] += tv_forward_term(kind, b - x_right);
        out[3] += tv_forward_term(kind, x - static_cast<acc_t>(below[t + step]));
      }
    }
  }
}

template <class T, TvKind kind>
void tv_forward_impl(const TvForwardArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  const Planes p = planes_of(a.layout, a.n, a.c, a.h, a.w);
  const int64_t rows_per_task = std::max<int64_t>(1, kTaskElements / p.len);
  const int64_t tasks_per_plane = (p.rows + rows_per_task - 1) / rows_per_task;
  std::vector<double> partial(p.planes * tasks_per_plane * 4, 0.0);
  at::parallel_for(0, p.planes * tasks_per_plane, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const T* plane = x + (task / tasks_per_plane) * p.rows * p.len;
      const int64_t r0 = (task % tasks_per_plane) * rows_per_task;
      const int64_t r1 = std::min(p.rows, r0 + rows_per_task);
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = plane + r * p.len;
        tv_forward_row<T, kind>(row, r + 1 < p.rows ? row + p.len : nullptr, p.len, p.step, &partial[task * 4]);
      }
    }
  });
  for (int k = 0; k < 4; ++k) a.sums[k] = 0.0;
  for (size_t t = 0; t < partial.size(); t += 4) {
    for (int k = 0; k < 4; ++k) a.sums[k] += partial[t + k];
  }
}

// Gradient of one pixel from its 3x3 neighbourhood. Rows above/below that do not exist are
// passed as the row itself with zero weights, which keeps the SIMD loop branch-free.
template <class S>
struct RowWeights {
  S right;                     // d0, pixel as first and as second operand
  S down_first, down_second;   // d1: (x - below), (above - x)
  S diag_first, diag_second;   // d2: (x - above_right), (below_left - x)
  S ddown_first, ddown_second; // d3: (x - below_right), (above_left - x)
};

template <TvKind kind, class V>
V pixel_grad(const RowWeights<float>& w, const V& x, const V& left, const V& right, const V& up,
             const V& down, const V& up_left, const V& up_right, const V& down_left, const V& down_right) {
  const auto term = [](const V& d) {
    if constexpr (kind == TvKind::L2) {
      return d;
    } else {
      return Math<V>::sign(d);
    }
  };
  return V(w.right) * (term(x - right) - term(left - x)) + V(w.down_first) * term(x - down) -
         V(w.down_second) * term(up - x) + V(w.diag_first) * term(x - up_right) -
         V(w.diag_second) * term(down_left - x) + V(w.ddown_first) * term(x - down_right) -
         V(w.ddown_second) * term(up_left - x);
}

template <class T, TvKind kind>
void tv_backward_row(const T* row, const T* up, const T* down, T* out,
                     const RowWeights<opmath_t<T>>& w, int64_t len, int64_t step) {
  using acc_t = opmath_t<T>;
  // Interior columns [step, len - step) have all horizontal neighbours.
  // Interior columns [step, len - step) have all horizontal neighbours: SIMD, the last vector
  // partial. `interior_end` is where the SIMD part stops.
  const int64_t interior_end = kHasSimd<T> ? std::max(len - step, step) : step;
  if constexpr (kHasSimd<T>) {
    for (int64_t t = step; t < interior_end; t += kLanes) {
      const int64_t n = std::min(kLanes, interior_end - t);
      const FVec g = pixel_grad<kind, FVec>(
          w, load_float(row + t, n), load_float(row + t - step, n), load_float(row + t + step, n),
          load_float(up + t, n), load_float(down + t, n), load_float(up + t - step, n),
          load_float(up + t + step, n), load_float(down + t - step, n), load_float(down + t + step, n));
      store_float(out + t, g, n);
    }
  }
  // Border columns: differences with a missing horizontal neighbour do not exist.
  const auto scalar = [&](int64_t t) {
    const bool has_left = t >= step, has_right = t + step < len;
    const auto term = [&](acc_t d) { return tv_backward_term(kind, d); };
    const auto at = [](const T* r, int64_t i) { return static_cast<acc_t>(r[i]); };
    const acc_t x = at(row, t);
    acc_t g = w.down_first * term(x - at(down, t)) - w.down_second * term(at(up, t) - x);
    if (has_right) {
      g += w.right * term(x - at(row, t + step)) + w.diag_first * term(x - at(up, t + step)) +
           w.ddown_first * term(x - at(down, t + step));
    }
    if (has_left) {
      g -= w.right * term(at(row, t - step) - x) + w.diag_second * term(at(down, t - step) - x) +
           w.ddown_second * term(at(up, t - step) - x);
    }
    out[t] = static_cast<T>(g);
  };
  for (int64_t t = 0; t < std::min(step, len); ++t) scalar(t);
  for (int64_t t = interior_end; t < len; ++t) scalar(t);
}

template <class T, TvKind kind>
void tv_backward_impl(const TvBackwardArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.grad_x);
  const Planes p = planes_of(a.layout, a.n, a.c, a.h, a.w);
  using acc_t = opmath_t<T>;
  const acc_t w0 = static_cast<acc_t>(a.weights[0]), w1 = static_cast<acc_t>(a.weights[1]);
  const acc_t w2 = static_cast<acc_t>(a.weights[2]), w3 = static_cast<acc_t>(a.weights[3]);
  const int64_t grain = std::max<int64_t>(1, kTaskElements / p.len);
  at::parallel_for(0, p.planes * p.rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task % p.rows;
      const T* row = x + task * p.len;
      const bool has_up = r > 0, has_down = r + 1 < p.rows;
      const acc_t zero(0);
      const RowWeights<acc_t> w{w0,
                                has_down ? w1 : zero, has_up ? w1 : zero,
                                has_up ? w2 : zero, has_down ? w2 : zero,
                                has_down ? w3 : zero, has_up ? w3 : zero};
      tv_backward_row<T, kind>(row, has_up ? row - p.len : row, has_down ? row + p.len : row, y + task * p.len, w,
                      p.len, p.step);
    }
  });
}

}  // namespace

void tv_forward(const TvForwardArgs& a) {
  dispatch_dtype(a.dtype, [&]<class T>() {
    a.kind == TvKind::L2 ? tv_forward_impl<T, TvKind::L2>(a) : tv_forward_impl<T, TvKind::L1>(a);
  });
}

void tv_backward(const TvBackwardArgs& a) {
  dispatch_dtype(a.dtype, [&]<class T>() {
    a.kind == TvKind::L2 ? tv_backward_impl<T, TvKind::L2>(a) : tv_backward_impl<T, TvKind::L1>(a);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace dfnas::cpu
