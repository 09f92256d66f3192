// Device helpers shared by the kernels: element types and their float math type, aligned
// vector access, the grid-stride loop, deterministic block reductions, launch sizing and dtype
// dispatch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "launchers.h"
#include "traversal.h"

namespace dfnas::cuda {

// Math type of an element type: float for float/half/bfloat16, double for double.
template <class T> struct OpMathOf { using type = float; };
template <> struct OpMathOf<double> { using type = double; };
template <class T> using opmath_t = typename OpMathOf<T>::type;

__device__ __forceinline__ float to_opmath(float v) { return v; }
__device__ __forceinline__ double to_opmath(double v) { return v; }
__device__ __forceinline__ float to_opmath(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_opmath(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round-to-nearest-even, as torch converts float to half/bfloat16.
template <class T> __device__ __forceinline__ T from_opmath(opmath_t<T> v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half from_opmath<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_opmath<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// VEC elements moved as one aligned access (16 bytes when VEC * sizeof(T) == 16).
template <class T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <class T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* base, int64_t pack_index) {
  return reinterpret_cast<const Pack<T, VEC>*>(base)[pack_index];
}

template <class T, int VEC>
__device__ __forceinline__ void store_pack(T* base, int64_t pack_index, const Pack<T, VEC>& p) {
  reinterpret_cast<Pack<T, VEC>*>(base)[pack_index] = p;
}

// Elements per 16-byte access.
template <class T> constexpr int kVec16 = 16 / static_cast<int>(sizeof(T));

// True when every pointer is 16-byte aligned (tensor views may start mid-allocation).
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
inline bool aligned16(const void* p, const void* q) { return aligned16(p) && aligned16(q); }

// Grid-stride loop over the flat range [0, product of radix): body(i, digits of i) for every i
// this thread owns, the digits advanced incrementally (traversal.h `MixedRadix`). The body is a
// lambda of the kernel. kUnroll grid-stride steps are unrolled, for more loads in flight in
// streaming kernels (1: none).
template <int kUnroll, int D, class Body>
__device__ __forceinline__ void grid_stride_loop(const int64_t (&radix)[D], Body&& body) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t total = radix_total(radix);
  const MixedRadix<D> step = MixedRadix<D>::of(stride, radix);
  MixedRadix<D> at = MixedRadix<D>::of(first, radix);
#pragma unroll kUnroll
  for (int64_t i = first; i < total; i += stride) {
    body(i, static_cast<const MixedRadix<D>&>(at));
    at.advance(step, radix);
  }
}

// Grid-stride loop over the elements of every sample's window (traversal.h `WindowGeometry`),
// in the memory order of the window tensor: body(i, digits of i, canvas index of i). Offsets
// are read on the device, never copied to the host; a window that leaves the canvas traps,
// which fails the stream like a device-side assert.
template <class Body>
__device__ __forceinline__ void window_loop(const WindowGeometry& g, const int64_t* __restrict__ offsets,
                                            Body&& body) {
  grid_stride_loop<1>(g.radix, [&](int64_t i, const MixedRadix<4>& at) {
    const int64_t y0 = offsets[2 * at.digit[0]], x0 = offsets[2 * at.digit[0] + 1];
    if (!g.inside_canvas(y0, x0)) __trap();
    body(i, at, g.canvas_index(at, y0, x0));
  });
}

// Sum over the block of K values per thread, in a fixed order (warp shuffles, then the warp
// totals by warp 0): the result, valid in thread 0, is bitwise reproducible.
template <int K>
__device__ __forceinline__ void block_sum(double (&v)[K]) {
  constexpr int kWarps = kThreads / 32;
  __shared__ double warp_totals[kWarps][K];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < K; ++k) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v[k] += __shfl_down_sync(0xffffffffu, v[k], offset);
  }
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) warp_totals[warp][k] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      v[k] = lane < kWarps ? warp_totals[lane][k] : 0.0;
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) v[k] += __shfl_down_sync(0xffffffffu, v[k], offset);
    }
  }
  __syncthreads();  // warp_totals may be reused by a following call
}

// Blocks for a grid-stride elementwise loop: enough to fill the GPU, never more than the work.
inline int64_t elementwise_blocks(int64_t items) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0) sms = 80;
  const int64_t enough = static_cast<int64_t>(sms) * (2048 / kThreads) * 2;
  const int64_t needed = blocks_for(items, kThreads);
  return needed < enough ? (needed > 0 ? needed : 1) : enough;
}

// Calls f.template operator()<T>() with the element type of `dtype`.
template <class F>
cudaError_t dispatch_float_types(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::Float32: return f.template operator()<float>();
    case Dtype::Float64: return f.template operator()<double>();
    case Dtype::BFloat16: return f.template operator()<__nv_bfloat16>();
    case Dtype::Float16: return f.template operator()<__half>();
  }
  return cudaErrorInvalidValue;
}

}  // namespace dfnas::cuda
