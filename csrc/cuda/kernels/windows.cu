// Per-sample window ops on CUDA: crop (and its backward scatter) and region Adam (math in
// dfnas/adam_math.h). Grid-stride over the window tensor in memory order (traversal.h
// `WindowGeometry`): the window side is dense and the canvas side is read and written in runs
// of a window row, so both are coalesced. Only window elements are touched, which is the
// region semantics: canvas pixels and Adam moments outside the windows stay bit-identical.
//
// Channels-last rows interleave the channels, so when C fills whole 16-byte packs each thread
// moves 16 bytes per tensor. NCHW window rows start at arbitrary x offsets, so they move
// single elements (still coalesced).
//
// Offsets are read on the device (no host synchronization); a window that leaves the canvas
// traps, which fails the stream like a device-side assert.
#include <math.h>

#include "common.cuh"

namespace dfnas::cuda {
namespace {

__device__ __forceinline__ void window_origin(const int64_t* __restrict__ offsets, const WindowGeometry& g, int64_t n,
                                              int64_t* y0, int64_t* x0) {
  *y0 = offsets[2 * n];
  *x0 = offsets[2 * n + 1];
  if (!g.inside_canvas(*y0, *x0)) __trap();
}

// U: an unsigned integer (or uint4) of the bytes one thread moves per step.
template <class U>
__global__ void __launch_bounds__(kThreads)
copy_windows(U* __restrict__ canvas, U* __restrict__ windows, WindowGeometry g, const int64_t* __restrict__ offsets,
             bool to_windows) {
  const int64_t total = g.total();
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const MixedRadix<4> step = MixedRadix<4>::of(stride, g.radix);
  MixedRadix<4> at = MixedRadix<4>::of(first, g.radix);
  for (int64_t i = first; i < total; i += stride) {
    int64_t y0, x0;
    window_origin(offsets, g, at.digit[0], &y0, &x0);
    const int64_t c = g.canvas_index(at, y0, x0);
    if (to_windows) {
      windows[i] = canvas[c];
    } else {
      canvas[c] = windows[i];
    }
    at.advance(step, g.radix);
  }
}

template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
region_adam(T* __restrict__ canvas, const T* __restrict__ grad, T* __restrict__ exp_avg, T* __restrict__ exp_avg_sq,
            WindowGeometry g, const int64_t* __restrict__ offsets, AdamConstants constants,
            const T* __restrict__ clamp_min, const T* __restrict__ clamp_max) {
  const AdamConstantsOf<T> adam(constants);
  const T inf = static_cast<T>(INFINITY);
  const int64_t total = g.total();
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const MixedRadix<4> step = MixedRadix<4>::of(stride, g.radix);
  MixedRadix<4> at = MixedRadix<4>::of(first, g.radix);
  for (int64_t i = first; i < total; i += stride) {
    int64_t y0, x0;
    window_origin(offsets, g, at.digit[0], &y0, &x0);
    const int64_t c = g.canvas_index(at, y0, x0);
    const int64_t channel = g.channel(at);
    Pack<T, VEC> p = load_pack<T, VEC>(canvas, c);
    Pack<T, VEC> m = load_pack<T, VEC>(exp_avg, c);
    Pack<T, VEC> v = load_pack<T, VEC>(exp_avg_sq, c);
    const Pack<T, VEC> gr = load_pack<T, VEC>(grad, i);
#pragma unroll
    for (int l = 0; l < VEC; ++l) {
      const T lo = clamp_min != nullptr ? clamp_min[channel + l] : -inf;
      const T hi = clamp_max != nullptr ? clamp_max[channel + l] : inf;
      p.v[l] = clamp_value(adam_update(p.v[l], gr.v[l], m.v[l], v.v[l], adam), lo, hi);
    }
    store_pack<T, VEC>(canvas, c, p);
    store_pack<T, VEC>(exp_avg, c, m);
    store_pack<T, VEC>(exp_avg_sq, c, v);
    at.advance(step, g.radix);
  }
}

template <class U>
cudaError_t launch_copy(const CropWindowsLaunch& a, int64_t group, cudaStream_t stream) {
  const WindowGeometry g = window_geometry(a.layout == Layout::NHWC, a.n, a.c, a.height, a.width, a.window_h,
                                           a.window_w, group);
  copy_windows<U><<<elementwise_blocks(g.total()), kThreads, 0, stream>>>(
      static_cast<U*>(a.canvas), static_cast<U*>(a.windows), g, a.offsets, a.to_windows);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_crop_windows(const CropWindowsLaunch& a, cudaStream_t stream) {
  const bool packs = a.layout == Layout::NHWC && (a.c * a.element_size) % 16 == 0 && aligned16(a.canvas, a.windows);
  if (packs) return launch_copy<uint4>(a, 16 / a.element_size, stream);
  switch (a.element_size) {
    case 1: return launch_copy<uint8_t>(a, 1, stream);
    case 2: return launch_copy<uint16_t>(a, 1, stream);
    case 4: return launch_copy<uint32_t>(a, 1, stream);
    case 8: return launch_copy<uint64_t>(a, 1, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_region_adam(const RegionAdamLaunch& a, cudaStream_t stream) {
  const auto run = [&]<class T, int VEC>() {
    const WindowGeometry g = window_geometry(a.layout == Layout::NHWC, a.n, a.c, a.height, a.width, a.window_h,
                                             a.window_w, VEC);
    region_adam<T, VEC><<<elementwise_blocks(g.total()), kThreads, 0, stream>>>(
        static_cast<T*>(a.canvas), static_cast<const T*>(a.grad), static_cast<T*>(a.exp_avg),
        static_cast<T*>(a.exp_avg_sq), g, a.offsets, a.adam, static_cast<const T*>(a.clamp_min),
        static_cast<const T*>(a.clamp_max));
    return cudaGetLastError();
  };
  const auto with_packs = [&]<class T>() {
    const bool packs = a.layout == Layout::NHWC && a.c % kVec16<T> == 0 && aligned16(a.canvas, a.grad) &&
                       aligned16(a.exp_avg, a.exp_avg_sq);
    return packs ? run.template operator()<T, kVec16<T>>() : run.template operator()<T, 1>();
  };
  switch (a.dtype) {
    case Dtype::Float32: return with_packs.template operator()<float>();
    case Dtype::Float64: return with_packs.template operator()<double>();
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dfnas::cuda
