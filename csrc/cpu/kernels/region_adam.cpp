// Region Adam: Adam on each sample's window of the canvas, touching only window pixels.
// A window row is contiguous in both layouts: `w` elements of one channel (NCHW) or `w * C`
// interleaved channels (channels-last), so each task streams whole rows.
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "dfnas/adam_math.h"
#include "vec_io.h"

namespace dfnas::cpu {
inline namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kTaskElements = 8192;

// Adam + clamp over one contiguous run; lo/hi hold a per-element bound (len entries).
template <class T>
void adam_run(T* p, const T* g, T* m, T* v, int64_t len, const AdamConstants& constants, const T* lo,
              const T* hi) {
  if constexpr (std::is_same_v<T, float>) {
    // The last vector is partial: its lanes past the run's end are loaded as 0 and not stored.
    const AdamConstantsOf<FVec> c(constants);
    for (int64_t i = 0; i < len; i += kLanes) {
      const int64_t n = std::min(kLanes, len - i);
      FVec m_i = FVec::loadu(m + i, n), v_i = FVec::loadu(v + i, n);
      const FVec p_i = adam_update(FVec::loadu(p + i, n), FVec::loadu(g + i, n), m_i, v_i, c);
      clamp_value(p_i, FVec::loadu(lo + i, n), FVec::loadu(hi + i, n)).store(p + i, n);
      m_i.store(m + i, n);
      v_i.store(v + i, n);
    }
  } else {
    const AdamConstantsOf<T> c(constants);
    for (int64_t i = 0; i < len; ++i) {
      p[i] = clamp_value(adam_update(p[i], g[i], m[i], v[i], c), lo[i], hi[i]);
    }
  }
}

template <class T>
void region_adam_impl(const RegionAdamArgs& a) {
  T* canvas = static_cast<T*>(a.canvas);
  const T* grad = static_cast<const T*>(a.grad);
  T* exp_avg = static_cast<T*>(a.exp_avg);
  T* exp_avg_sq = static_cast<T*>(a.exp_avg_sq);
  const int64_t C = a.c, H = a.height, W = a.width, h = a.window_h, w = a.window_w;
  const bool nchw = a.layout == Layout::NCHW;
  const int64_t rows = nchw ? a.n * C * h : a.n * h;
  const int64_t row_len = nchw ? w : w * C;
  const T inf = std::numeric_limits<T>::infinity();
  // Per-element bounds of one row: a channel's bound repeated (NCHW rows are single-channel,
  // so they use one entry per channel, expanded per row below).
  std::vector<T> lo(nchw ? C : row_len), hi(lo.size());
  for (size_t i = 0; i < lo.size(); ++i) {
    const int64_t ch = static_cast<int64_t>(i) % C;
    lo[i] = a.clamp_min ? static_cast<T>(a.clamp_min[ch]) : -inf;
    hi[i] = a.clamp_max ? static_cast<T>(a.clamp_max[ch]) : inf;
  }
  const int64_t grain = std::max<int64_t>(1, kTaskElements / row_len);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> row_lo, row_hi;
    if (nchw) {
      row_lo.resize(row_len);
      row_hi.resize(row_len);
    }
    int64_t row_channel = -1;
    for (int64_t r = begin; r < end; ++r) {
      int64_t n, c, i;
      if (nchw) {
        n = r / (C * h), c = (r / h) % C, i = r % h;
      } else {
        n = r / h, c = 0, i = r % h;
      }
      const int64_t y = a.offsets[2 * n] + i, x0 = a.offsets[2 * n + 1];
      const int64_t canvas_at = nchw ? ((n * C + c) * H + y) * W + x0 : ((n * H + y) * W + x0) * C;
      const int64_t grad_at = r * row_len;
      const T* bound_lo = lo.data();
      const T* bound_hi = hi.data();
      if (nchw) {
        if (c != row_channel) {
          std::fill(row_lo.begin(), row_lo.end(), lo[c]);
          std::fill(row_hi.begin(), row_hi.end(), hi[c]);
          row_channel = c;
        }
        bound_lo = row_lo.data();
        bound_hi = row_hi.data();
      }
      adam_run(canvas + canvas_at, grad + grad_at, exp_avg + canvas_at, exp_avg_sq + canvas_at, row_len, a.adam,
               bound_lo, bound_hi);
    }
  });
}

}  // namespace

void region_adam(const RegionAdamArgs& a) {
  if (a.dtype == Dtype::Float64) {
    region_adam_impl<double>(a);
  } else {
    region_adam_impl<float>(a);
  }
}

}  // namespace CPU_CAPABILITY
}  // namespace dfnas::cpu
