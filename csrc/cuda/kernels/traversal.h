// Index arithmetic of the CUDA kernels, kept free of CUDA so that g++ can test it on the host
// (tests/gpu/traversal_check.cpp walks every block and thread of each launch plan and checks
// that each element is visited exactly once).
//
// Kernels walk a flat range with a fixed stride (a block's threads, or a grid). Dividing the
// flat index into (sample, channel, row, column) on every step would cost several 64-bit
// divisions per element; instead each thread divides once and then advances a mixed-radix
// counter by the stride's precomputed digits, which costs a few adds and compares per step.
#pragma once

#include <stdint.h>

#include "dfnas/macros.h"

namespace dfnas::cuda {

// Digits of a flat index in a mixed-radix system, most significant first. digit[0] is never
// wrapped, so it runs past radix[0] once the index leaves the range.
template <int D>
struct MixedRadix {
  int64_t digit[D];

  static DFNAS_HD MixedRadix of(int64_t index, const int64_t (&radix)[D]) {
    MixedRadix out;
    for (int k = D - 1; k > 0; --k) {
      out.digit[k] = index % radix[k];
      index /= radix[k];
    }
    out.digit[0] = index;
    return out;
  }

  // Adds `step` (the digits of a fixed stride, from `of`): digit-wise with one carry per digit,
  // valid because every step digit is below its radix.
  DFNAS_HD void advance(const MixedRadix& step, const int64_t (&radix)[D]) {
    int64_t carry = 0;
    for (int k = D - 1; k > 0; --k) {
      digit[k] += step.digit[k] + carry;
      carry = digit[k] >= radix[k] ? 1 : 0;
      if (carry) digit[k] -= radix[k];
    }
    digit[0] += step.digit[0] + carry;
  }
};

// Number of items of a flat range with these digit extents.
template <int D>
DFNAS_HD int64_t radix_total(const int64_t (&radix)[D]) {
  int64_t total = 1;
  for (int k = 0; k < D; ++k) total *= radix[k];
  return total;
}

// Number of blocks of `per_block` items covering `total` items.
DFNAS_HD int64_t blocks_for(int64_t total, int64_t per_block) { return (total + per_block - 1) / per_block; }

// Elements (or vectors) one block of a deterministic reduction owns. Fixed per op, so the
// split of a reduction, and with it the rounding of its result, depends on the shape alone
// and not on the GPU model.
constexpr int64_t kReductionItemsPerBlock = 16384;
constexpr int kThreads = 256;

// Channels-last per-channel reduction: a block is a (rows x cols) grid of threads, cols over
// channel groups of one pixel (coalesced), rows over pixels.
struct ChannelTile {
  int64_t cols;              // threads across channel groups
  int64_t rows;              // threads across pixels
  int64_t channel_tiles;     // blocks across channel groups
  int64_t pixels_per_block;  // pixels one block reduces
};

DFNAS_HD ChannelTile channel_tile(int64_t groups, int64_t group_size) {
  ChannelTile t;
  t.cols = groups < kThreads ? groups : kThreads;
  t.rows = kThreads / t.cols;
  t.channel_tiles = blocks_for(groups, t.cols);
  const int64_t per_pixel = t.cols * group_size;
  t.pixels_per_block = per_pixel >= kReductionItemsPerBlock ? 1 : kReductionItemsPerBlock / per_pixel;
  return t;
}

// Planes of `rows` rows of `len` contiguous elements whose right neighbour is `step` elements
// away: NCHW images are N*C planes (len W, step 1), channels-last images N planes (len W*C,
// step C). The TV stencil walks this view of both layouts.
struct Planes {
  int64_t planes, rows, len, step;
};

DFNAS_HD Planes planes_of(bool channels_last, int64_t n, int64_t c, int64_t h, int64_t w) {
  return channels_last ? Planes{n, h, w * c, c} : Planes{n * c, h, w, 1};
}

// Per-sample windows: a window element is (sample, a, b, d) where (a, b, d) is (channel, row,
// column) for NCHW and (row, column, channel group) for channels-last; `d` is innermost in
// memory in both, so consecutive threads touch consecutive addresses.
struct WindowGeometry {
  int64_t radix[4];  // (N, a, b, d) extents of the window tensor
  bool channels_last;
  int64_t canvas_h, canvas_w, window_h, window_w, channels;
  int64_t group;  // channels per innermost unit: 1 for NCHW, a 16-byte pack or 1 for NHWC

  DFNAS_HD int64_t total() const { return radix_total(radix); }

  DFNAS_HD bool inside_canvas(int64_t y0, int64_t x0) const {
    return y0 >= 0 && x0 >= 0 && y0 + window_h <= canvas_h && x0 + window_w <= canvas_w;
  }

  // Canvas element (in units of `group` channels for NHWC) of window element `e` of a sample
  // whose window starts at (y0, x0).
  DFNAS_HD int64_t canvas_index(const MixedRadix<4>& e, int64_t y0, int64_t x0) const {
    const int64_t n = e.digit[0];
    if (channels_last) {
      const int64_t groups = channels / group;
      return ((n * canvas_h + y0 + e.digit[1]) * canvas_w + x0 + e.digit[2]) * groups + e.digit[3];
    }
    return ((n * channels + e.digit[1]) * canvas_h + y0 + e.digit[2]) * canvas_w + x0 + e.digit[3];
  }

  // First channel of window element `e`.
  DFNAS_HD int64_t channel(const MixedRadix<4>& e) const {
    return channels_last ? e.digit[3] * group : e.digit[1];
  }
};

DFNAS_HD WindowGeometry window_geometry(bool channels_last, int64_t n, int64_t c, int64_t canvas_h,
                                        int64_t canvas_w, int64_t window_h, int64_t window_w, int64_t group) {
  WindowGeometry g;
  g.channels_last = channels_last;
  g.canvas_h = canvas_h;
  g.canvas_w = canvas_w;
  g.window_h = window_h;
  g.window_w = window_w;
  g.channels = c;
  g.group = group;
  g.radix[0] = n;
  if (channels_last) {
    g.radix[1] = window_h;
    g.radix[2] = window_w;
    g.radix[3] = c / group;
  } else {
    g.radix[1] = c;
    g.radix[2] = window_h;
    g.radix[3] = window_w;
  }
  return g;
}

}  // namespace dfnas::cuda
