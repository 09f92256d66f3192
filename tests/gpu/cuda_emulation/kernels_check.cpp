// Runs the CUDA launchers (csrc/cuda/kernels/*.cu, compiled for the host against emulation.h)
// on small tensors and compares them with plain double-precision loops. Prints "ok" and exits 0
// when everything matches; prints each mismatch otherwise.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "dfnas/region_adam_math.h"
#include "launchers.h"

using namespace dfnas;
using namespace dfnas::cuda;

namespace {

int failures = 0;

void expect_close(double got, double want, double tol, const char* what, long index = -1) {
  if (!(std::fabs(got - want) <= tol * (1.0 + std::fabs(want))) && failures++ < 30) {
    std::printf("FAIL %s [%ld]: got %.10g want %.10g\n", what, index, got, want);
  }
}

std::mt19937 rng(7);

template <class T> double value_of(T v) { return static_cast<double>(v); }
template <> double value_of(__half v) { return __half2float(v); }
template <> double value_of(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T> T make(double v) { return static_cast<T>(v); }
template <> __half make(double v) { return __float2half_rn(static_cast<float>(v)); }
template <> __nv_bfloat16 make(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }

template <class T> Dtype dtype_of();
template <> Dtype dtype_of<float>() { return Dtype::Float32; }
template <> Dtype dtype_of<double>() { return Dtype::Float64; }
template <> Dtype dtype_of<__half>() { return Dtype::Float16; }
template <> Dtype dtype_of<__nv_bfloat16>() { return Dtype::BFloat16; }

// The tolerance rule of tests/tolerances.py: a result stored as S, computed in A, may differ from
// the double-precision loop by eps(S)|want| + 256 eps(A) max|want| + the subnormal spacing of S.
template <class T> struct Limits;
template <> struct Limits<double> { static constexpr double eps = 0x1p-52, subnormal = 0x1p-1074; };
template <> struct Limits<float> { static constexpr double eps = 0x1p-23, subnormal = 0x1p-149; };
template <> struct Limits<__half> { static constexpr double eps = 0x1p-10, subnormal = 0x1p-24; };
template <> struct Limits<__nv_bfloat16> { static constexpr double eps = 0x1p-7, subnormal = 0x1p-133; };
constexpr double kUlps = 256;

// Every element of `got` (stored as S, computed in A) against `want` under the rule above.
template <class S, class A>
void expect_all_close(const std::vector<double>& got, const std::vector<double>& want, const char* what) {
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i) {
    const double allowed = Limits<S>::eps * std::fabs(want[i]) + kUlps * Limits<A>::eps * scale + Limits<S>::subnormal;
    if (!(std::fabs(got[i] - want[i]) <= allowed) && failures++ < 30) {
      std::printf("FAIL %s [%zu]: got %.10g want %.10g (allowed %.3g)\n", what, i, got[i], want[i], allowed);
    }
  }
}

// Element (n, c, y, x) of a dense (N, C, H, W) tensor in either layout.
struct Shape {
  int64_t n, c, h, w;
  bool nhwc;
  int64_t numel() const { return n * c * h * w; }
  int64_t at(int64_t in, int64_t ic, int64_t y, int64_t x) const {
    return nhwc ? ((in * h + y) * w + x) * c + ic : ((in * c + ic) * h + y) * w + x;
  }
};

template <class T>
std::vector<T> random_tensor(int64_t count, double scale = 1.0) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<T> out(count);
  for (T& v : out) v = make<T>(normal(rng) + 0.3);
  return out;
}

template <class T>
void check_bn(Shape s) {
  using Op = std::conditional_t<sizeof(T) == 8, double, float>;
  const std::vector<T> x = random_tensor<T>(s.numel());
  std::vector<float> rm(s.c), rv(s.c);
  for (int64_t c = 0; c < s.c; ++c) rm[c] = 0.1f * c, rv[c] = 1.0f + 0.05f * c;
  Op loss = 0;
  std::vector<Op> mean(s.c), var(s.c);
  BnStatsLaunch a{x.data(), dtype_of<T>(), s.nhwc ? Layout::NHWC : Layout::NCHW, s.n, s.c, s.h * s.w,
                  rm.data(), rv.data(), Dtype::Float32, &loss, mean.data(), var.data(), nullptr};
  std::vector<unsigned char> workspace(bn_stats_workspace_bytes(a));
  a.workspace = workspace.data();
  launch_bn_stats(a, nullptr);

  const double count = static_cast<double>(s.n * s.h * s.w);
  double dm2 = 0, dv2 = 0;
  std::vector<double> want_mean(s.c), want_var(s.c);
  for (int64_t c = 0; c < s.c; ++c) {
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t xx = 0; xx < s.w; ++xx) sum += value_of(x[s.at(n, c, y, xx)]);
    want_mean[c] = sum / count;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t xx = 0; xx < s.w; ++xx) {
          const double d = value_of(x[s.at(n, c, y, xx)]) - want_mean[c];
          sq += d * d;
        }
    want_var[c] = sq / count;
    dm2 += (want_mean[c] - rm[c]) * (want_mean[c] - rm[c]);
    dv2 += (sq / count - rv[c]) * (sq / count - rv[c]);
  }
  expect_all_close<Op, Op>(std::vector<double>(mean.begin(), mean.end()), want_mean, "bn mean");
  expect_all_close<Op, Op>(std::vector<double>(var.begin(), var.end()), want_var, "bn var");
  expect_all_close<Op, Op>({double(loss)}, {std::sqrt(dm2) + std::sqrt(dv2)}, "bn loss");

  // Backward from the kernel's own (rounded) statistics, as autograd passes them.
  const Op grad_loss = static_cast<Op>(1.3);
  std::vector<T> grad(s.numel());
  BnBackwardLaunch b{x.data(), grad.data(), dtype_of<T>(), a.layout, s.n, s.c, s.h * s.w, &grad_loss, mean.data(),
                     var.data(), rm.data(), rv.data(), Dtype::Float32, nullptr};
  std::vector<unsigned char> coefficients(bn_backward_workspace_bytes(b));
  b.workspace = coefficients.data();
  launch_bn_backward(b, nullptr);
  double mean_norm = 0, var_norm = 0;
  for (int64_t c = 0; c < s.c; ++c) {
    mean_norm += (double(mean[c]) - rm[c]) * (double(mean[c]) - rm[c]);
    var_norm += (double(var[c]) - rv[c]) * (double(var[c]) - rv[c]);
  }
  mean_norm = std::sqrt(mean_norm), var_norm = std::sqrt(var_norm);
  std::vector<double> got_grad(s.numel()), want_grad(s.numel());
  for (int64_t i = 0; i < s.numel(); ++i) {
    const int64_t c = s.nhwc ? i % s.c : (i / (s.h * s.w)) % s.c;
    const double a_c = (double(mean[c]) - rm[c]) / (count * mean_norm);
    const double b_c = 2.0 * (double(var[c]) - rv[c]) / (count * var_norm);
    want_grad[i] = 1.3 * (a_c + b_c * (value_of(x[i]) - double(mean[c])));
    got_grad[i] = value_of(grad[i]);
  }
  expect_all_close<T, Op>(got_grad, want_grad, "bn grad");
}

template <class T>
void check_tv(Shape s, TvKind kind) {
  using Op = std::conditional_t<sizeof(T) == 8, double, float>;
  const std::vector<T> x = random_tensor<T>(s.numel());
  const auto v = [&](int64_t n, int64_t c, int64_t y, int64_t xx) { return value_of(x[s.at(n, c, y, xx)]); };
  Op loss = 0;
  double sums[4];
  TvForwardLaunch a{x.data(), dtype_of<T>(), s.nhwc ? Layout::NHWC : Layout::NCHW, kind, s.n, s.c, s.h, s.w,
                    &loss, sums, nullptr};
  std::vector<unsigned char> workspace(tv_forward_workspace_bytes(a));
  a.workspace = workspace.data();
  launch_tv_forward(a, nullptr);

  // Differences d_k[i, j] = first - second, k = right, down, diag (below - right), diag down.
  const int64_t dy[4][2] = {{0, 0}, {0, 1}, {1, 0}, {0, 1}}, dx[4][2] = {{0, 1}, {0, 0}, {0, 1}, {0, 1}};
  const int64_t extent_h[4] = {s.h, s.h - 1, s.h - 1, s.h - 1}, extent_w[4] = {s.w - 1, s.w, s.w - 1, s.w - 1};
  const auto term = [kind](double d) { return kind == TvKind::L2 ? d * d : std::fabs(d); };
  double want_sums[4] = {0, 0, 0, 0}, counts[4];
  tv_counts(s.n, s.c, s.h, s.w, counts);
  for (int k = 0; k < 4; ++k)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t i = 0; i < extent_h[k]; ++i)
          for (int64_t j = 0; j < extent_w[k]; ++j)
            want_sums[k] += term(v(n, c, i + dy[k][0], j + dx[k][0]) - v(n, c, i + dy[k][1], j + dx[k][1]));
  expect_all_close<double, Op>(std::vector<double>(sums, sums + 4), std::vector<double>(want_sums, want_sums + 4),
                               "tv sum");  // double, accumulated in Op
  expect_all_close<Op, Op>({double(loss)}, {tv_loss_from_sums(kind, want_sums, counts)}, "tv loss");

  const Op grad_loss = static_cast<Op>(0.7);
  std::vector<T> grad(s.numel());
  const TvBackwardLaunch b{x.data(), grad.data(), dtype_of<T>(), a.layout, kind, s.n, s.c, s.h, s.w, &grad_loss,
                           sums};
  launch_tv_backward(b, nullptr);
  double weights[4];
  tv_backward_weights(kind, 0.7, want_sums, counts, weights);
  std::vector<double> want(s.numel(), 0.0);
  for (int k = 0; k < 4; ++k)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t i = 0; i < extent_h[k]; ++i)
          for (int64_t j = 0; j < extent_w[k]; ++j) {
            const int64_t first = s.at(n, c, i + dy[k][0], j + dx[k][0]);
            const int64_t second = s.at(n, c, i + dy[k][1], j + dx[k][1]);
            const double g = weights[k] * tv_backward_term(kind, value_of(x[first]) - value_of(x[second]));
            want[first] += g;
            want[second] -= g;
          }
  std::vector<double> got_grad(s.numel());
  for (int64_t i = 0; i < s.numel(); ++i) got_grad[i] = value_of(grad[i]);
  expect_all_close<T, Op>(got_grad, want, "tv grad");
}

std::vector<int64_t> random_offsets(Shape s, int64_t h, int64_t w) {
  std::vector<int64_t> out(2 * s.n);
  for (int64_t n = 0; n < s.n; ++n) {
    out[2 * n] = n == 0 ? 0 : static_cast<int64_t>(rng() % (s.h - h + 1));
    out[2 * n + 1] = n == s.n - 1 ? s.w - w : static_cast<int64_t>(rng() % (s.w - w + 1));
  }
  return out;
}

template <class T>
void check_crop(Shape s, int64_t h, int64_t w) {
  const std::vector<T> canvas = random_tensor<T>(s.numel());
  const std::vector<int64_t> offsets = random_offsets(s, h, w);
  const Shape ws{s.n, s.c, h, w, s.nhwc};
  std::vector<T> windows(ws.numel());
  CropWindowsLaunch a{const_cast<T*>(canvas.data()), windows.data(), static_cast<int>(sizeof(T)),
                      s.nhwc ? Layout::NHWC : Layout::NCHW, s.n, s.c, s.h, s.w, h, w, offsets.data(), true};
  launch_crop_windows(a, nullptr);
  std::vector<T> scattered(s.numel(), make<T>(0.0));
  a.canvas = scattered.data();
  a.to_windows = false;
  launch_crop_windows(a, nullptr);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x) {
          const int64_t i = y - offsets[2 * n], j = x - offsets[2 * n + 1];
          const bool inside = i >= 0 && i < h && j >= 0 && j < w;
          const double canvas_value = value_of(canvas[s.at(n, c, y, x)]);
          if (inside) expect_close(value_of(windows[ws.at(n, c, i, j)]), canvas_value, 0, "crop", ws.at(n, c, i, j));
          expect_close(value_of(scattered[s.at(n, c, y, x)]), inside ? canvas_value : 0.0, 0, "crop scatter",
                       s.at(n, c, y, x));
        }
}

template <class T>
void check_region_adam(Shape s, int64_t h, int64_t w, bool clamp) {
  std::vector<T> p = random_tensor<T>(s.numel()), m = random_tensor<T>(s.numel(), 0.1), v(s.numel());
  for (T& e : v) e = static_cast<T>(std::fabs(value_of(e)) + 0.01);
  const std::vector<T> p0 = p, m0 = m, v0 = v;
  const Shape ws{s.n, s.c, h, w, s.nhwc};
  const std::vector<T> g = random_tensor<T>(ws.numel());
  const std::vector<int64_t> offsets = random_offsets(s, h, w);
  std::vector<T> lo(s.c), hi(s.c);
  for (int64_t c = 0; c < s.c; ++c) lo[c] = static_cast<T>(-0.2 - 0.1 * c), hi[c] = static_cast<T>(0.5 + 0.1 * c);
  const AdamConstants constants = adam_constants(3, 0.05, 0.9, 0.99, 1e-8);
  const RegionAdamLaunch a{p.data(), g.data(), m.data(), v.data(), dtype_of<T>(), s.nhwc ? Layout::NHWC : Layout::NCHW,
                           s.n, s.c, s.h, s.w, h, w, offsets.data(), constants, clamp ? lo.data() : nullptr,
                           clamp ? hi.data() : nullptr};
  launch_region_adam(a, nullptr);
  const AdamConstantsOf<T> c_of(constants);
  const T inf = static_cast<T>(INFINITY);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x) {
          const int64_t e = s.at(n, c, y, x), i = y - offsets[2 * n], j = x - offsets[2 * n + 1];
          T want_p = p0[e], want_m = m0[e], want_v = v0[e];
          if (i >= 0 && i < h && j >= 0 && j < w) {
            want_p = clamp_value(adam_update(want_p, g[ws.at(n, c, i, j)], want_m, want_v, c_of),
                                 clamp ? lo[c] : -inf, clamp ? hi[c] : inf);
          }
          // Bit-identical: the same shared math in the same precision, and untouched outside.
          expect_close(p[e], want_p, 0, "adam param", e);
          expect_close(m[e], want_m, 0, "adam exp_avg", e);
          expect_close(v[e], want_v, 0, "adam exp_avg_sq", e);
        }
}

}  // namespace

int main() {
  for (bool nhwc : {false, true}) {
    check_bn<float>({2, 3, 5, 7, nhwc});        // odd sizes: single elements
    check_bn<float>({3, 8, 16, 16, nhwc});      // 16-byte packs in both layouts
    check_bn<double>({2, 4, 6, 6, nhwc});
    check_bn<__half>({2, 16, 4, 4, nhwc});
    check_bn<__nv_bfloat16>({2, 3, 3, 5, nhwc});
    check_bn<float>({2, 2, 100, 100, nhwc});    // several slices per channel (NCHW) / per tile
    check_bn<float>({1, 1100, 2, 3, nhwc});     // channels-last: several channel tiles
    for (TvKind kind : {TvKind::L2, TvKind::L1}) {
      check_tv<float>({2, 3, 5, 7, nhwc}, kind);
      check_tv<double>({1, 2, 2, 2, nhwc}, kind);
      check_tv<__half>({2, 2, 4, 3, nhwc}, kind);
      check_tv<__nv_bfloat16>({2, 3, 5, 6, nhwc}, kind);
    }
    check_tv<float>({2, 3, 64, 70, nhwc}, TvKind::L2);  // several slices; grid-stride backward
    check_crop<float>({3, 4, 9, 11, nhwc}, 5, 6);       // NHWC: 16-byte packs of 4 channels
    check_crop<float>({3, 3, 9, 11, nhwc}, 9, 11);      // whole canvas
    check_crop<__half>({2, 8, 6, 7, nhwc}, 3, 4);
    check_crop<double>({2, 3, 5, 5, nhwc}, 2, 3);
    for (bool clamp : {false, true}) {
      check_region_adam<float>({3, 4, 9, 10, nhwc}, 4, 5, clamp);
      check_region_adam<float>({2, 3, 40, 44, nhwc}, 33, 30, clamp);  // grid-stride, no packs
      check_region_adam<double>({2, 4, 7, 8, nhwc}, 3, 3, clamp);
    }
  }
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
