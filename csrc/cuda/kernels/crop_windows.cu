// Per-sample window crop on CUDA, and its backward scatter. Grid-stride over the window tensor in
// memory order (traversal.h `WindowGeometry`): the window side is dense and the canvas side is
// read and written in runs of a window row, so both are coalesced. Only window elements are
// touched.
//
// Channels-last rows interleave the channels, so when C fills whole 16-byte packs each thread
// moves 16 bytes. NCHW window rows start at arbitrary x offsets, so they move single elements
// (still coalesced). Offsets are read on the device (no host synchronization); a window that
// leaves the canvas traps (common.cuh `window_loop`).
#include "common.cuh"

namespace dfnas::cuda {
namespace {

// U: an unsigned integer (or uint4) of the bytes one thread moves per step.
template <class U>
__global__ void __launch_bounds__(kThreads)
copy_windows(U* __restrict__ canvas, U* __restrict__ windows, WindowGeometry g, const int64_t* __restrict__ offsets,
             bool to_windows) {
  window_loop(g, offsets, [&](int64_t i, const MixedRadix<4>&, int64_t c) {
    if (to_windows) {
      windows[i] = canvas[c];
    } else {
      canvas[c] = windows[i];
    }
  });
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

}  // namespace dfnas::cuda
