// Region Adam on CUDA (math in dfnas/region_adam_math.h): Adam on each sample's window of the
// canvas, then the optional per-channel clamp. Grid-stride over the window tensor in memory order
// (traversal.h `WindowGeometry`), as crop_windows.cu: grad is dense, canvas and moments are read
// and written in runs of a window row. Only window elements are touched, which is the region
// semantics: canvas pixels and Adam moments outside the windows stay bit-identical.
//
// Channels-last rows interleave the channels, so when C fills whole 16-byte packs each thread
// updates a pack of each tensor. A window that leaves the canvas traps (common.cuh `window_loop`).
#include <math.h>

#include "common.cuh"

namespace dfnas::cuda {
namespace {

template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
region_adam(T* __restrict__ canvas, const T* __restrict__ grad, T* __restrict__ exp_avg, T* __restrict__ exp_avg_sq,
            WindowGeometry g, const int64_t* __restrict__ offsets, AdamConstants constants,
            const T* __restrict__ clamp_min, const T* __restrict__ clamp_max) {
  const AdamConstantsOf<T> adam(constants);
  const T inf = static_cast<T>(INFINITY);
  window_loop(g, offsets, [&](int64_t i, const MixedRadix<4>& at, int64_t c) {
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
  });
}

}  // namespace

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
