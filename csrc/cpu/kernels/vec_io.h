// Loads/stores between any supported element type and float SIMD vectors, and the Math<>
// specialization that lets the shared element math (csrc/include/dfnas) run on vectors.
// Included only by kernel sources, which are compiled once per CPU capability.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

#include "dfnas/macros.h"
#include "kernels.h"

namespace dfnas {

template <>
struct Math<at::vec::Vectorized<float>> {
  using V = at::vec::Vectorized<float>;
  static V sqrt(const V& x) { return x.sqrt(); }
  static V abs(const V& x) { return x.abs(); }
  static V sign(const V& x) { return x.gt(V(0.f)) - x.lt(V(0.f)); }
  static V max(const V& a, const V& b) { return at::vec::maximum(a, b); }
  static V min(const V& a, const V& b) { return at::vec::minimum(a, b); }
};

namespace cpu {
inline namespace CPU_CAPABILITY {

using FVec = at::vec::Vectorized<float>;
constexpr int64_t kLanes = FVec::size();

// double data runs the scalar loops throughout (it serves float64 references and gradcheck).
template <class T>
constexpr bool kHasSimd = !std::is_same_v<T, double>;

// Elements handled by the SIMD loop of a run of `len`.
template <class T>
constexpr int64_t simd_extent(int64_t len) {
  return kHasSimd<T> ? len - len % kLanes : 0;
}

template <class T>
inline FVec load_float(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return FVec::loadu(p);
  } else {
    FVec out;
    at::vec::load_to_float<T>(p, out);
    return out;
  }
}

template <class T>
inline void store_float(T* p, const FVec& v) {
  if constexpr (std::is_same_v<T, float>) {
    v.store(p);
  } else {
    at::vec::convert_from_float<T>(v, v).store(p, kLanes);
  }
}

// Partial-vector variants for a run's last `count` < kLanes elements: loaded lanes past `count`
// are zero, stores write only `count` elements.
template <class T>
inline FVec load_float(const T* p, int64_t count) {
  if constexpr (std::is_same_v<T, float>) {
    return FVec::loadu(p, count);
  } else {
    float buffer[kLanes] = {};
    for (int64_t i = 0; i < count; ++i) buffer[i] = static_cast<float>(p[i]);
    return FVec::loadu(buffer);
  }
}

template <class T>
inline void store_float(T* p, const FVec& v, int64_t count) {
  if constexpr (std::is_same_v<T, float>) {
    v.store(p, count);
  } else {
    float buffer[kLanes];
    v.store(buffer);
    for (int64_t i = 0; i < count; ++i) p[i] = static_cast<T>(buffer[i]);
  }
}

// Scalar accumulation type: double for double data, float otherwise.
template <class T>
using opmath_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Calls fn.template operator()<T>() for the runtime dtype.
template <class Fn>
inline void dispatch_dtype(Dtype dtype, Fn&& fn) {
  switch (dtype) {
    case Dtype::Float32: fn.template operator()<float>(); break;
    case Dtype::Float64: fn.template operator()<double>(); break;
    case Dtype::BFloat16: fn.template operator()<c10::BFloat16>(); break;
    case Dtype::Float16: fn.template operator()<c10::Half>(); break;
  }
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace dfnas
