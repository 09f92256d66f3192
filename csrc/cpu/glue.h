// Helpers of the CPU glue (csrc/cpu/<op>.cpp) on top of the shared checks: small tensors read
// into host vectors for the kernels' raw-pointer arguments.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "cpu/kernels/kernels.h"
#include "tensor_checks.h"

namespace dfnas {

// A small tensor's values as float64, in memory order of its contiguous form.
inline std::vector<double> to_doubles(const at::Tensor& v) {
  const at::Tensor d = v.to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

// Window offsets (n, 2) = (y, x) as int64 host values, each window checked against the canvas.
inline std::vector<int64_t> host_window_offsets(const at::Tensor& offsets, int64_t n, int64_t H, int64_t W,
                                                int64_t height, int64_t width, const char* op) {
  check_windows(offsets, n, H, W, height, width, op);
  const at::Tensor host = offsets.to(at::kCPU).to(at::kLong).contiguous();
  std::vector<int64_t> out(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = out[2 * i], x = out[2 * i + 1];
    TORCH_CHECK(y >= 0 && x >= 0 && y + height <= H && x + width <= W, op, ": window of sample ", i, " at (y=", y,
                ", x=", x, ") with size ", height, "x", width, " leaves the ", H, "x", W, " canvas");
  }
  return out;
}

}  // namespace dfnas
