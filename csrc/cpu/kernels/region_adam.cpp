// Region Adam: Adam on each sample's window of the canvas, touching only window pixels.
// A window row is contiguous in both layouts: `w` elements of one channel (NCHW) or `w * C`
// interleaved channels (channels-last), so each task streams whole rows.
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "dfnas/region_adam_math.h"
#include "vec_io.h"

namespace dfnas::cpu {
inline namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kTaskElements = 8192;

// Clamp bounds of a run: one channel's pair broadcast (NCHW rows are single-channel) or a
// per-element pattern (channels-last rows interleave the channels).
template <class T>
struct ChannelBound {
  T value;
  FVec vec(int64_t, int64_t) const { return FVec(static_cast<float>(value)); }
  T at(int64_t) const { return value; }
};

template <class T>
struct PatternBound {
  const T* values;
  FVec vec(int64_t i, int64_t n) const { return FVec::loadu(values + i, n); }
  T at(int64_t i) const { return values[i]; }
};

// Adam + clamp over one contiguous run.
template <class T, class Bound>
void adam_run(T* p, const T* g, T* m, T* v, int64_t len, const AdamConstants& constants, const Bound& lo,
              const Bound& hi) {
  if constexpr (std::is_same_v<T, float>) {
    // The last vector is partial: its lanes past the run's end are loaded as 0 and not stored.
    const AdamConstantsOf<FVec> c(constants);
    for (int64_t i = 0; i < len; i += kLanes) {
      const int64_t n = std::min(kLanes, len - i);
      FVec m_i = FVec::loadu(m + i, n), v_i = FVec::loadu(v + i, n);
      const FVec p_i = adam_update(FVec::loadu(p + i, n), FVec::loadu(g + i, n), m_i, v_i, c);
      clamp_value(p_i, lo.vec(i, n), hi.vec(i, n)).store(p + i, n);
      m_i.store(m + i, n);
      v_i.store(v + i, n);
    }
  } else {
    const AdamConstantsOf<T> c(constants);
    for (int64_t i = 0; i < len; ++i) {
      p[i] = clamp_value(adam_update(p[i], g[i], m[i], v[i], c), lo.at(i), hi.at(i));
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
  const T inf = std::numeric_limits<T>::infinity();
  const auto lo_of = [&](int64_t c) { return a.clamp_min ? static_cast<T>(a.clamp_min[c]) : -inf; };
  const auto hi_of = [&](int64_t c) { return a.clamp_max ? static_cast<T>(a.clamp_max[c]) : inf; };
  const auto update = [&](int64_t canvas_at, int64_t grad_at, int64_t len, const auto& lo, const auto& hi) {
    adam_run(canvas + canvas_at, grad + grad_at, exp_avg + canvas_at, exp_avg_sq + canvas_at, len, a.adam, lo, hi);
  };
  if (a.layout == Layout::NCHW) {
    // Task = one (sample, channel) window: h rows of w elements.
    const int64_t grain = std::max<int64_t>(1, kTaskElements / (h * w));
    at::parallel_for(0, a.n * C, grain, [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t n = plane / C, c = plane % C;
        const ChannelBound<T> lo{lo_of(c)}, hi{hi_of(c)};
        const int64_t y0 = a.offsets[2 * n], x0 = a.offsets[2 * n + 1];
        for (int64_t i = 0; i < h; ++i) {
          update((plane * H + y0 + i) * W + x0, (plane * h + i) * w, w, lo, hi);
        }
      }
    });
    return;
  }
  // Channels-last: task = one window row of w * C interleaved elements.
  const int64_t row_len = w * C;
  std::vector<T> lo_pattern(row_len), hi_pattern(row_len);
  for (int64_t i = 0; i < row_len; ++i) {
    lo_pattern[i] = lo_of(i % C);
    hi_pattern[i] = hi_of(i % C);
  }
  const PatternBound<T> lo{lo_pattern.data()}, hi{hi_pattern.data()};
  const int64_t grain = std::max<int64_t>(1, kTaskElements / row_len);
  at::parallel_for(0, a.n * h, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / h, i = r % h;
      const int64_t y = a.offsets[2 * n] + i, x0 = a.offsets[2 * n + 1];
      update(((n * H + y) * W + x0) * C, r * row_len, row_len, lo, hi);
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
