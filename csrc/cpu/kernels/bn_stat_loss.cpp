// BN-statistics loss kernels: per-channel mean / biased variance (one read of x) and the
// backward's per-channel affine map (one read of x, one write of grad_x).
//
// Reductions are split into tasks fixed by the shape alone and combined in task order, so
// results are bitwise identical for any thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "dfnas/bn_stat_loss_math.h"
#include "vec_io.h"

namespace dfnas::cpu {
inline namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kTaskElements = 32768;  // elements per reduction task
constexpr int64_t kFlushElements = 2048;  // float lane accumulators are flushed to double this often

struct Sums {
  double sum = 0.0, sum_sq = 0.0;
};

// Sums of (x - shift) and (x - shift)^2 over a contiguous run.
template <class T>
Sums shifted_sums(const T* x, int64_t len, float shift) {
  Sums out;
  const FVec shift_v(shift);
  const int64_t simd = simd_extent<T>(len);
  for (int64_t start = 0; start < simd; start += kFlushElements) {
    const int64_t stop = std::min(simd, start + kFlushElements);
    FVec s0(0.f), s1(0.f), q0(0.f), q1(0.f);
    int64_t i = start;
    for (; i + 2 * kLanes <= stop; i += 2 * kLanes) {
      const FVec d0 = load_float(x + i) - shift_v;
      const FVec d1 = load_float(x + i + kLanes) - shift_v;
      s0 = s0 + d0;
      s1 = s1 + d1;
      q0 = at::vec::fmadd(d0, d0, q0);
      q1 = at::vec::fmadd(d1, d1, q1);
    }
    for (; i < stop; i += kLanes) {
      const FVec d0 = load_float(x + i) - shift_v;
      s0 = s0 + d0;
      q0 = at::vec::fmadd(d0, d0, q0);
    }
    out.sum += at::vec::vec_reduce_all<float>(std::plus<FVec>(), s0 + s1);
    out.sum_sq += at::vec::vec_reduce_all<float>(std::plus<FVec>(), q0 + q1);
  }
  for (int64_t i = simd; i < len; ++i) {
    const double d = static_cast<double>(x[i]) - shift;
    out.sum += d;
    out.sum_sq += d * d;
  }
  return out;
}

// Double-data variant: exact shift, double accumulation.
Sums shifted_sums(const double* x, int64_t len, double shift) {
  Sums out;
  for (int64_t i = 0; i < len; ++i) {
    const double d = x[i] - shift;
    out.sum += d;
    out.sum_sq += d * d;
  }
  return out;
}

template <class T>
void bn_stats_nchw(const BnStatsArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  const int64_t rows_per_task = std::max<int64_t>(1, kTaskElements / std::max<int64_t>(a.hw, 1));
  const int64_t tasks_per_channel = (a.n + rows_per_task - 1) / rows_per_task;
  std::vector<Sums> partial(a.c * tasks_per_channel);
  at::parallel_for(0, a.c * tasks_per_channel, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t c = task / tasks_per_channel;
      const int64_t n0 = (task % tasks_per_channel) * rows_per_task;
      const int64_t n1 = std::min(a.n, n0 + rows_per_task);
      const auto shift = static_cast<opmath_t<T>>(x[c * a.hw]);
      Sums acc;
      for (int64_t n = n0; n < n1; ++n) {
        const Sums s = shifted_sums(x + (n * a.c + c) * a.hw, a.hw, shift);
        acc.sum += s.sum;
        acc.sum_sq += s.sum_sq;
      }
      partial[task] = acc;
    }
  });
  const double count = static_cast<double>(a.n) * static_cast<double>(a.hw);
  for (int64_t c = 0; c < a.c; ++c) {
    Sums total;
    for (int64_t t = 0; t < tasks_per_channel; ++t) {
      total.sum += partial[c * tasks_per_channel + t].sum;
      total.sum_sq += partial[c * tasks_per_channel + t].sum_sq;
    }
    const double shift = static_cast<opmath_t<T>>(x[c * a.hw]);
    bn_moments_from_shifted_sums(shift, total.sum, total.sum_sq, count, &a.mean[c], &a.var[c]);
  }
}

// Channels-last: each pixel holds C contiguous channels; tasks own blocks of pixels and keep
// per-channel lane accumulators in a small buffer.
template <class T>
void bn_stats_nhwc(const BnStatsArgs& a) {
  using acc_t = opmath_t<T>;
  const T* x = static_cast<const T*>(a.x);
  const int64_t pixels = a.n * a.hw, C = a.c;
  const int64_t pixels_per_task = std::max<int64_t>(1, kTaskElements / C);
  const int64_t tasks = (pixels + pixels_per_task - 1) / pixels_per_task;
  const int64_t pixels_per_flush = std::max<int64_t>(1, kFlushElements / C);
  const int64_t simd = simd_extent<T>(C);
  std::vector<acc_t> shift(C);
  for (int64_t c = 0; c < C; ++c) shift[c] = static_cast<acc_t>(x[c]);
  std::vector<double> partial_sum(tasks * C), partial_sq(tasks * C);
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> lane_sum(C), lane_sq(C);
    for (int64_t task = begin; task < end; ++task) {
      double* out_sum = partial_sum.data() + task * C;
      double* out_sq = partial_sq.data() + task * C;
      const int64_t p_end = std::min(pixels, (task + 1) * pixels_per_task);
      for (int64_t p0 = task * pixels_per_task; p0 < p_end; p0 += pixels_per_flush) {
        std::fill(lane_sum.begin(), lane_sum.end(), acc_t(0));
        std::fill(lane_sq.begin(), lane_sq.end(), acc_t(0));
        for (int64_t p = p0; p < std::min(p_end, p0 + pixels_per_flush); ++p) {
          const T* px = x + p * C;
          if constexpr (kHasSimd<T>) {
            for (int64_t c = 0; c < simd; c += kLanes) {
              const FVec d = load_float(px + c) - FVec::loadu(shift.data() + c);
              (FVec::loadu(lane_sum.data() + c) + d).store(lane_sum.data() + c);
              at::vec::fmadd(d, d, FVec::loadu(lane_sq.data() + c)).store(lane_sq.data() + c);
            }
          }
          for (int64_t c = simd; c < C; ++c) {
            const acc_t d = static_cast<acc_t>(px[c]) - shift[c];
            lane_sum[c] += d;
            lane_sq[c] += d * d;
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          out_sum[c] += lane_sum[c];
          out_sq[c] += lane_sq[c];
        }
      }
    }
  });
  const double count = static_cast<double>(pixels);
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0.0, sum_sq = 0.0;
    for (int64_t t = 0; t < tasks; ++t) {
      sum += partial_sum[t * C + c];
      sum_sq += partial_sq[t * C + c];
    }
    bn_moments_from_shifted_sums(static_cast<double>(shift[c]), sum, sum_sq, count, &a.mean[c], &a.var[c]);
  }
}

// y = shift + scale * x over a contiguous run with one (shift, scale) pair.
template <class T>
void affine_run(const T* x, T* y, int64_t len, double shift, double scale) {
  using acc_t = opmath_t<T>;
  const int64_t simd = simd_extent<T>(len);
  const FVec shift_v(static_cast<float>(shift)), scale_v(static_cast<float>(scale));
  if constexpr (kHasSimd<T>) {
    for (int64_t i = 0; i < simd; i += kLanes) {
      store_float(y + i, at::vec::fmadd(load_float(x + i), scale_v, shift_v));
    }
  }
  for (int64_t i = simd; i < len; ++i) {
    y[i] = static_cast<T>(static_cast<acc_t>(shift) + static_cast<acc_t>(scale) * static_cast<acc_t>(x[i]));
  }
}

template <class T>
void bn_backward_nchw(const BnBackwardArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.grad_x);
  const int64_t grain = std::max<int64_t>(1, kTaskElements / std::max<int64_t>(a.hw, 1));
  at::parallel_for(0, a.n * a.c, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t c = row % a.c;
      affine_run(x + row * a.hw, y + row * a.hw, a.hw, a.shift[c], a.scale[c]);
    }
  });
}

template <class T>
void bn_backward_nhwc(const BnBackwardArgs& a) {
  using acc_t = opmath_t<T>;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.grad_x);
  const int64_t C = a.c, simd = simd_extent<T>(C);
  std::vector<acc_t> shift(a.shift, a.shift + C), scale(a.scale, a.scale + C);
  const int64_t grain = std::max<int64_t>(1, kTaskElements / C);
  at::parallel_for(0, a.n * a.hw, grain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* px = x + p * C;
      T* py = y + p * C;
      if constexpr (kHasSimd<T>) {
        for (int64_t c = 0; c < simd; c += kLanes) {
          store_float(py + c, at::vec::fmadd(load_float(px + c), FVec::loadu(scale.data() + c),
                                             FVec::loadu(shift.data() + c)));
        }
      }
      for (int64_t c = simd; c < C; ++c) py[c] = static_cast<T>(shift[c] + scale[c] * static_cast<acc_t>(px[c]));
    }
  });
}

}  // namespace

void bn_stats(const BnStatsArgs& a) {
  dispatch_dtype(a.dtype, [&]<class T>() {
    a.layout == Layout::NCHW ? bn_stats_nchw<T>(a) : bn_stats_nhwc<T>(a);
  });
}

void bn_backward(const BnBackwardArgs& a) {
  dispatch_dtype(a.dtype, [&]<class T>() {
    a.layout == Layout::NCHW ? bn_backward_nchw<T>(a) : bn_backward_nhwc<T>(a);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace dfnas::cpu
