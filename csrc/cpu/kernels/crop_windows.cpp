// Per-sample window copy: crop (canvas -> windows) and its backward scatter (windows -> canvas).
// A window row is contiguous in both layouts: `w` elements of one channel (NCHW) or `w * C`
// interleaved channels (channels-last), so each task copies whole rows with memcpy.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>

#include "vec_io.h"

namespace dfnas::cpu {
inline namespace CPU_CAPABILITY {

void crop_windows(const CropWindowsArgs& a) {
  const int64_t C = a.c, H = a.height, W = a.width, h = a.window_h, w = a.window_w;
  const bool nchw = a.layout == Layout::NCHW;
  const int64_t rows = nchw ? a.n * C * h : a.n * h;
  const int64_t row_bytes = (nchw ? w : w * C) * a.element_size;
  char* canvas = static_cast<char*>(a.canvas);
  char* windows = static_cast<char*>(a.windows);
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / row_bytes), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = nchw ? r / (C * h) : r / h, c = nchw ? (r / h) % C : 0, i = r % h;
      const int64_t y = a.offsets[2 * n] + i, x = a.offsets[2 * n + 1];
      const int64_t at = nchw ? ((n * C + c) * H + y) * W + x : ((n * H + y) * W + x) * C;
      char* canvas_row = canvas + at * a.element_size;
      char* window_row = windows + r * row_bytes;
      if (a.to_windows) {
        std::memcpy(window_row, canvas_row, row_bytes);
      } else {
        std::memcpy(canvas_row, window_row, row_bytes);
      }
    }
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace dfnas::cpu
