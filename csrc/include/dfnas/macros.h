// Shared by g++ and nvcc: nothing in csrc/include/dfnas may include torch headers.
#pragma once

#if defined(__CUDACC__)
#define DFNAS_HD __host__ __device__ __forceinline__
#else
#define DFNAS_HD inline
#endif

namespace dfnas {

// Elementary functions for the templated math below. Specialized for float and double here and
// for vector types by the CPU kernels, so one template serves scalars, SIMD vectors and CUDA.
template <class T>
struct Math;

template <>
struct Math<float> {
  static DFNAS_HD float sqrt(float x) { return ::sqrtf(x); }
  static DFNAS_HD float abs(float x) { return ::fabsf(x); }
  static DFNAS_HD float sign(float x) { return static_cast<float>((x > 0.f) - (x < 0.f)); }
  static DFNAS_HD float max(float a, float b) { return a < b ? b : a; }  // NaN in a propagates
  static DFNAS_HD float min(float a, float b) { return b < a ? b : a; }
};

template <>
struct Math<double> {
  static DFNAS_HD double sqrt(double x) { return ::sqrt(x); }
  static DFNAS_HD double abs(double x) { return ::fabs(x); }
  static DFNAS_HD double sign(double x) { return static_cast<double>((x > 0.0) - (x < 0.0)); }
  static DFNAS_HD double max(double a, double b) { return a < b ? b : a; }
  static DFNAS_HD double min(double a, double b) { return b < a ? b : a; }
};

}  // namespace dfnas
