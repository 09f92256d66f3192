// Host check of the CUDA kernels' index arithmetic (csrc/cuda/kernels/traversal.h): replays
// every block and thread of each kernel's launch plan on the CPU and checks that every element
// is visited exactly once and that the incrementally advanced digits equal a direct division.
// Built and run by tests/gpu/test_gpu_traversal.py; prints "ok" and exits 0 on success.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "traversal.h"

using namespace dfnas::cuda;

namespace {

int failures = 0;

void expect(bool ok, const char* what, long long a = 0, long long b = 0) {
  if (!ok && failures++ < 20) std::printf("FAIL %s (%lld, %lld)\n", what, a, b);
}

void expect_each_once(const std::vector<int>& visits, const char* what) {
  for (size_t i = 0; i < visits.size(); ++i) expect(visits[i] == 1, what, static_cast<long long>(i), visits[i]);
}

template <int D>
void check_mixed_radix(std::mt19937& rng) {
  int64_t radix[D];
  for (int k = 0; k < D; ++k) radix[k] = 1 + rng() % 9;
  const int64_t stride = 1 + rng() % 700, first = rng() % 50;
  const MixedRadix<D> step = MixedRadix<D>::of(stride, radix);
  MixedRadix<D> at = MixedRadix<D>::of(first, radix);
  for (int64_t i = first; i < first + 40 * stride; i += stride) {
    const MixedRadix<D> direct = MixedRadix<D>::of(i, radix);
    for (int k = 0; k < D; ++k) expect(at.digit[k] == direct.digit[k], "mixed radix digit", i, k);
    at.advance(step, radix);
  }
}

// bn_partial_nchw: slices of one channel's n * hw elements, in packs of vec.
void check_bn_nchw(int64_t n, int64_t c, int64_t hw, int64_t vec) {
  std::vector<int> visits(n * c * hw, 0);
  const int64_t packs_per_plane = hw / vec, total = n * packs_per_plane;
  const int64_t slices = blocks_for(n * hw, kReductionItemsPerBlock), packs = kReductionItemsPerBlock / vec;
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t s = 0; s < slices; ++s) {
      const int64_t begin = s * packs, end = begin + packs < total ? begin + packs : total;
      const int64_t radix[2] = {n, packs_per_plane};
      const MixedRadix<2> step = MixedRadix<2>::of(kThreads, radix);
      for (int64_t t = 0; t < kThreads; ++t) {
        MixedRadix<2> at = MixedRadix<2>::of(begin + t, radix);
        for (int64_t i = begin + t; i < end; i += kThreads) {
          const int64_t pack = (at.digit[0] * c + ch) * packs_per_plane + at.digit[1];
          for (int64_t l = 0; l < vec; ++l) ++visits[pack * vec + l];
          at.advance(step, radix);
        }
      }
    }
  }
  expect_each_once(visits, "bn nchw coverage");
}

// bn_partial_nhwc: (rows x cols) threads over (pixels x channel groups).
void check_bn_nhwc(int64_t pixels, int64_t c, int64_t vec) {
  std::vector<int> visits(pixels * c, 0);
  const int64_t groups = c / vec;
  const ChannelTile tile = channel_tile(groups, vec);
  const int64_t slices = blocks_for(pixels, tile.pixels_per_block);
  expect(tile.rows * tile.cols <= kThreads && tile.rows >= 1, "tile fits the block", tile.rows, tile.cols);
  for (int64_t s = 0; s < slices; ++s) {
    for (int64_t ct = 0; ct < tile.channel_tiles; ++ct) {
      for (int64_t t = 0; t < kThreads; ++t) {
        const int64_t col = t % tile.cols, row = t / tile.cols, group = ct * tile.cols + col;
        if (row >= tile.rows || group >= groups) continue;
        const int64_t p_begin = s * tile.pixels_per_block;
        const int64_t p_end = p_begin + tile.pixels_per_block < pixels ? p_begin + tile.pixels_per_block : pixels;
        for (int64_t p = p_begin + row; p < p_end; p += tile.rows) {
          for (int64_t l = 0; l < vec; ++l) ++visits[(p * groups + group) * vec + l];
        }
      }
    }
  }
  expect_each_once(visits, "bn nhwc coverage");
}

// bn_backward_apply / tv_backward / crop_windows / region_adam: grid-stride loops (common.cuh
// grid_stride_loop) over (outer, channel, inner).
void check_grid_stride_channels(int64_t outer, int64_t c, int64_t inner, bool channels_last, int64_t blocks) {
  const int64_t radix[3] = {outer, channels_last ? 1 : c, inner};
  const int64_t total = radix[0] * radix[1] * radix[2], stride = blocks * kThreads;
  std::vector<int> visits(total, 0);
  const MixedRadix<3> step = MixedRadix<3>::of(stride, radix);
  for (int64_t first = 0; first < stride; ++first) {
    MixedRadix<3> at = MixedRadix<3>::of(first, radix);
    for (int64_t i = first; i < total; i += stride) {
      ++visits[i];
      const int64_t channel = channels_last ? at.digit[2] : at.digit[1];
      const int64_t expected = channels_last ? i % inner : (i / inner) % c;
      expect(channel == expected, "apply channel", i, channel);
      at.advance(step, radix);
    }
  }
  expect_each_once(visits, "grid-stride coverage");
}

// tv_partial: slices of the flat tensor; the neighbour flags must match the planes view.
void check_tv(bool channels_last, int64_t n, int64_t c, int64_t h, int64_t w) {
  const Planes p = planes_of(channels_last, n, c, h, w);
  const int64_t total = p.planes * p.rows * p.len, slices = blocks_for(total, kReductionItemsPerBlock);
  std::vector<int> visits(total, 0);
  const int64_t radix[3] = {p.planes, p.rows, p.len};
  const MixedRadix<3> step = MixedRadix<3>::of(kThreads, radix);
  for (int64_t s = 0; s < slices; ++s) {
    const int64_t begin = s * kReductionItemsPerBlock;
    const int64_t end = begin + kReductionItemsPerBlock < total ? begin + kReductionItemsPerBlock : total;
    for (int64_t t = 0; t < kThreads; ++t) {
      MixedRadix<3> at = MixedRadix<3>::of(begin + t, radix);
      for (int64_t i = begin + t; i < end; i += kThreads) {
        ++visits[i];
        // Direct: NCHW index ((n*c + ch)*h + y)*w + x; channels-last ((n*h + y)*w + x)*c + ch.
        const int64_t y = channels_last ? (i / (w * c)) % h : (i / w) % h;
        const int64_t x = channels_last ? (i / c) % w : i % w;
        expect((at.digit[1] + 1 < p.rows) == (y + 1 < h), "tv has_down", i, y);
        expect((at.digit[2] + p.step < p.len) == (x + 1 < w), "tv has_right", i, x);
        at.advance(step, radix);
      }
    }
  }
  expect_each_once(visits, "tv coverage");
}

// Window ops: the visited canvas elements are exactly the windows' elements, each once, and
// the canvas index matches the direct NCHW / channels-last formula.
void check_windows(bool channels_last, int64_t n, int64_t c, int64_t H, int64_t W, int64_t h, int64_t w,
                   int64_t group, std::mt19937& rng) {
  std::vector<int64_t> offsets(2 * n);
  for (int64_t s = 0; s < n; ++s) {
    offsets[2 * s] = rng() % (H - h + 1);
    offsets[2 * s + 1] = rng() % (W - w + 1);
  }
  const WindowGeometry g = window_geometry(channels_last, n, c, H, W, h, w, group);
  expect(g.total() * group == n * c * h * w, "window total", g.total(), n * c * h * w);
  std::vector<int> visits(n * c * H * W, 0);
  const int64_t stride = 3 * kThreads;
  const MixedRadix<4> step = MixedRadix<4>::of(stride, g.radix);
  for (int64_t first = 0; first < stride; ++first) {
    MixedRadix<4> at = MixedRadix<4>::of(first, g.radix);
    for (int64_t i = first; i < g.total(); i += stride) {
      const int64_t s = at.digit[0], y0 = offsets[2 * s], x0 = offsets[2 * s + 1];
      expect(g.inside_canvas(y0, x0), "window inside", y0, x0);
      const int64_t unit = g.canvas_index(at, y0, x0);
      for (int64_t l = 0; l < group; ++l) {
        const int64_t e = unit * group + l;  // canvas element
        if (e < 0 || e >= static_cast<int64_t>(visits.size())) {
          expect(false, "canvas index in range", e);
          continue;
        }
        const int64_t ch = g.channel(at) + l;
        int64_t y, x;
        if (channels_last) {
          y = (e / (W * c)) % H;
          x = (e / c) % W;
          expect(e % c == ch, "window channel (nhwc)", e, ch);
        } else {
          y = (e / W) % H;
          x = e % W;
          expect((e / (H * W)) % c == ch, "window channel (nchw)", e, ch);
        }
        expect(y >= y0 && y < y0 + h && x >= x0 && x < x0 + w, "element inside its window", y, x);
        ++visits[e];
      }
      at.advance(step, g.radix);
    }
  }
  int64_t visited = 0;
  for (int v : visits) {
    expect(v <= 1, "window element visited twice", v);
    visited += v;
  }
  expect(visited == n * c * h * w, "window elements visited", visited, n * c * h * w);
  expect(!g.inside_canvas(H - h + 1, 0) && !g.inside_canvas(0, -1), "out-of-canvas windows are caught");
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    check_mixed_radix<2>(rng);
    check_mixed_radix<3>(rng);
    check_mixed_radix<4>(rng);
  }
  // Shapes: tiny, odd, a plane smaller and larger than a block, several slices per channel.
  check_bn_nchw(2, 3, 5 * 7, 1);
  check_bn_nchw(3, 2, 16, 4);
  check_bn_nchw(5, 2, 64 * 64, 4);
  check_bn_nchw(9, 1, 48 * 48, 8);
  check_bn_nchw(1, 2, 130 * 131, 1);
  check_bn_nhwc(37, 3, 1);
  check_bn_nhwc(300, 16, 4);
  check_bn_nhwc(2000, 24, 8);
  check_bn_nhwc(50, 520, 4);   // more channel groups than threads: several channel tiles
  check_bn_nhwc(3, 1030, 1);
  check_grid_stride_channels(2, 3, 7, false, 1);
  check_grid_stride_channels(4, 5, 33, false, 2);
  check_grid_stride_channels(61, 1, 6, true, 3);
  check_grid_stride_channels(500, 1, 3, true, 1);
  for (bool cl : {false, true}) {
    check_tv(cl, 2, 3, 5, 7);
    check_tv(cl, 1, 1, 2, 2);
    check_tv(cl, 3, 4, 70, 90);
    check_windows(cl, 3, 5, 9, 11, 4, 6, 1, rng);
    check_windows(cl, 2, 1, 5, 5, 5, 5, 1, rng);
    check_windows(cl, 4, 3, 8, 8, 1, 1, 1, rng);
  }
  check_windows(true, 3, 8, 9, 7, 3, 2, 4, rng);   // 16-byte packs of 4 float channels
  check_windows(true, 2, 16, 6, 6, 4, 5, 8, rng);  // packs of 8 half channels
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
