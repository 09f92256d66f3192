// BN-statistics loss on CUDA (math in dfnas/bn_stat_loss_math.h).
//
// Forward, deterministic two-stage reduction:
//   1. partial kernels: each block reduces a fixed slice of one channel (NCHW) or of a tile of
//      channels (channels-last) to shifted sums, written per (slice, channel) in float64;
//   2. finalize (one block): combines the slices of each channel in slice order, forms mean,
//      biased variance and the loss ||mean - rm|| + ||var - rv||.
// Slices depend on the shape alone, so the result does not depend on the GPU. No atomics.
// Backward: one block folds grad_loss and the norms into per-channel (shift, scale), then an
// elementwise kernel writes grad_x = shift_c + scale_c * x.
#include "common.cuh"
#include "dfnas/bn_stat_loss_math.h"

namespace dfnas::cuda {
namespace {

// Per-thread accumulators are in opmath (float for 16/32-bit data) over at most
// kReductionItemsPerBlock / kThreads = 64 elements; blocks combine them in float64.

// NCHW: block (slice, channel) reduces elements [slice * kReductionItemsPerBlock, ...) of the
// channel's n * hw elements, in packs of VEC (VEC divides hw, so a pack never spans planes).
template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
bn_partial_nchw(const T* __restrict__ x, int64_t n, int64_t c, int64_t hw, double* __restrict__ part_sum,
                double* __restrict__ part_sq) {
  using acc_t = opmath_t<T>;
  const int64_t channel = blockIdx.y;
  const int64_t packs_per_plane = hw / VEC;
  const int64_t total = n * packs_per_plane;
  constexpr int64_t kPacks = kReductionItemsPerBlock / VEC;
  const int64_t begin = blockIdx.x * kPacks;
  const int64_t end = begin + kPacks < total ? begin + kPacks : total;
  const acc_t shift = to_opmath(x[channel * hw]);
  const int64_t radix[2] = {n, packs_per_plane};  // (sample, pack in plane)
  const MixedRadix<2> step = MixedRadix<2>::of(kThreads, radix);
  MixedRadix<2> at = MixedRadix<2>::of(begin + threadIdx.x, radix);
  acc_t sum = 0, sum_sq = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const Pack<T, VEC> p = load_pack<T, VEC>(x, (at.digit[0] * c + channel) * packs_per_plane + at.digit[1]);
#pragma unroll
    for (int l = 0; l < VEC; ++l) {
      const acc_t d = to_opmath(p.v[l]) - shift;
      sum += d;
      sum_sq += d * d;
    }
    at.advance(step, radix);
  }
  double totals[2] = {static_cast<double>(sum), static_cast<double>(sum_sq)};
  block_sum(totals);
  if (threadIdx.x == 0) {
    part_sum[blockIdx.x * c + channel] = totals[0];
    part_sq[blockIdx.x * c + channel] = totals[1];
  }
}

// Channels-last: block (slice, channel tile) is a (rows x cols) thread grid, cols over groups
// of VEC channels of one pixel (coalesced), rows over the slice's pixels; the rows are then
// combined by a fixed tree in shared memory.
template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
bn_partial_nhwc(const T* __restrict__ x, int64_t pixels, int64_t c, ChannelTile tile, double* __restrict__ part_sum,
                double* __restrict__ part_sq) {
  using acc_t = opmath_t<T>;
  __shared__ double partial[2 * VEC][kThreads];
  const int64_t groups = c / VEC;
  const int64_t col = threadIdx.x % tile.cols, row = threadIdx.x / tile.cols;
  const int64_t group = blockIdx.y * tile.cols + col;
  const bool active = row < tile.rows && group < groups;
  const int64_t p_begin = blockIdx.x * tile.pixels_per_block;
  const int64_t p_end = p_begin + tile.pixels_per_block < pixels ? p_begin + tile.pixels_per_block : pixels;
  acc_t sum[VEC], sum_sq[VEC];
#pragma unroll
  for (int l = 0; l < VEC; ++l) sum[l] = sum_sq[l] = 0;
  if (active) {
    const Pack<T, VEC> first = load_pack<T, VEC>(x, group);  // pixel 0: the shift of each channel
    for (int64_t p = p_begin + row; p < p_end; p += tile.rows) {
      const Pack<T, VEC> v = load_pack<T, VEC>(x, p * groups + group);
#pragma unroll
      for (int l = 0; l < VEC; ++l) {
        const acc_t d = to_opmath(v.v[l]) - to_opmath(first.v[l]);
        sum[l] += d;
        sum_sq[l] += d * d;
      }
    }
  }
#pragma unroll
  for (int l = 0; l < VEC; ++l) {
    partial[l][threadIdx.x] = sum[l];
    partial[VEC + l][threadIdx.x] = sum_sq[l];
  }
  __syncthreads();
  int64_t span = 1;
  while (span < tile.rows) span *= 2;
  for (int64_t half = span / 2; half > 0; half /= 2) {
    if (row < half && row + half < tile.rows) {
#pragma unroll
      for (int k = 0; k < 2 * VEC; ++k) partial[k][threadIdx.x] += partial[k][threadIdx.x + half * tile.cols];
    }
    __syncthreads();
  }
  if (row == 0 && group < groups) {
#pragma unroll
    for (int l = 0; l < VEC; ++l) {
      part_sum[blockIdx.x * c + group * VEC + l] = partial[l][threadIdx.x];
      part_sq[blockIdx.x * c + group * VEC + l] = partial[VEC + l][threadIdx.x];
    }
  }
}

// One block: moments per channel (slices combined in order), then the loss.
template <class T, class S>
__global__ void __launch_bounds__(kThreads)
bn_finalize(const T* __restrict__ x, bool channels_last, int64_t c, int64_t hw, int64_t slices, double count,
            const double* __restrict__ part_sum, const double* __restrict__ part_sq, const S* __restrict__ running_mean,
            const S* __restrict__ running_var, opmath_t<T>* __restrict__ loss, opmath_t<T>* __restrict__ mean_out,
            opmath_t<T>* __restrict__ var_out) {
  double dist[2] = {0.0, 0.0};
  for (int64_t ch = threadIdx.x; ch < c; ch += kThreads) {
    double sum = 0.0, sum_sq = 0.0;
    for (int64_t s = 0; s < slices; ++s) {
      sum += part_sum[s * c + ch];
      sum_sq += part_sq[s * c + ch];
    }
    const double shift = static_cast<double>(to_opmath(x[channels_last ? ch : ch * hw]));
    double mean, var;
    bn_moments_from_shifted_sums(shift, sum, sum_sq, count, &mean, &var);
    mean_out[ch] = static_cast<opmath_t<T>>(mean);
    var_out[ch] = static_cast<opmath_t<T>>(var);
    const double dm = mean - static_cast<double>(running_mean[ch]);
    const double dv = var - static_cast<double>(running_var[ch]);
    dist[0] += dm * dm;
    dist[1] += dv * dv;
  }
  block_sum(dist);
  if (threadIdx.x == 0) *loss = static_cast<opmath_t<T>>(::sqrt(dist[0]) + ::sqrt(dist[1]));
}

// One block: grad_x = shift_c + scale_c * x with shift_c = g (a_c - b_c mean_c), scale_c = g b_c.
template <class Op, class S>
__global__ void __launch_bounds__(kThreads)
bn_backward_coefficients(int64_t c, double count, const Op* __restrict__ grad_loss, const Op* __restrict__ mean,
                         const Op* __restrict__ var, const S* __restrict__ running_mean,
                         const S* __restrict__ running_var, Op* __restrict__ shift, Op* __restrict__ scale) {
  __shared__ double norms[2];
  double dist[2] = {0.0, 0.0};
  for (int64_t ch = threadIdx.x; ch < c; ch += kThreads) {
    const double dm = static_cast<double>(mean[ch]) - static_cast<double>(running_mean[ch]);
    const double dv = static_cast<double>(var[ch]) - static_cast<double>(running_var[ch]);
    dist[0] += dm * dm;
    dist[1] += dv * dv;
  }
  block_sum(dist);
  if (threadIdx.x == 0) {
    norms[0] = ::sqrt(dist[0]);
    norms[1] = ::sqrt(dist[1]);
  }
  __syncthreads();
  const double g = static_cast<double>(*grad_loss);
  for (int64_t ch = threadIdx.x; ch < c; ch += kThreads) {
    const double m = static_cast<double>(mean[ch]);
    const double a = bn_mean_coefficient(m - static_cast<double>(running_mean[ch]), norms[0], count);
    const double b = bn_var_coefficient(static_cast<double>(var[ch]) - static_cast<double>(running_var[ch]),
                                        norms[1], count);
    scale[ch] = static_cast<Op>(g * b);
    shift[ch] = static_cast<Op>(g * (a - b * m));
  }
}

// Grid-stride over packs of a dense tensor seen as (outer, channel, inner) packs:
// NCHW (n, c, hw / VEC), one channel per pack; channels-last (pixels, 1, c / VEC), channel
// group per pack.
template <class T, int VEC, bool kChannelsLast>
__global__ void __launch_bounds__(kThreads)
bn_backward_apply(const T* __restrict__ x, T* __restrict__ grad_x, int64_t outer, int64_t channels, int64_t inner,
                  const opmath_t<T>* __restrict__ shift, const opmath_t<T>* __restrict__ scale) {
  const int64_t radix[3] = {outer, kChannelsLast ? 1 : channels, inner};
  grid_stride_loop<4>(radix, [&](int64_t i, const MixedRadix<3>& at) {
    const Pack<T, VEC> in = load_pack<T, VEC>(x, i);
    Pack<T, VEC> out;
#pragma unroll
    for (int l = 0; l < VEC; ++l) {
      const int64_t ch = kChannelsLast ? at.digit[2] * VEC + l : at.digit[1];
      out.v[l] = from_opmath<T>(shift[ch] + scale[ch] * to_opmath(in.v[l]));
    }
    store_pack<T, VEC>(grad_x, i, out);
  });
}

int element_size(Dtype dtype) {
  return dtype == Dtype::Float64 ? 8 : dtype == Dtype::Float32 ? 4 : 2;
}

// Elements per pack: 16 bytes when the vectorized axis (hw for NCHW, c for channels-last)
// holds whole packs and the pointers are aligned, else 1.
int pack_width(Dtype dtype, Layout layout, int64_t c, int64_t hw, const void* p, const void* q) {
  const int vec = 16 / element_size(dtype);
  const int64_t axis = layout == Layout::NCHW ? hw : c;
  return axis % vec == 0 && aligned16(p, q) ? vec : 1;
}

// Reduction slices per channel (NCHW) or per channel tile (channels-last).
int64_t slices_of(const BnStatsLaunch& a, int vec) {
  if (a.layout == Layout::NCHW) return blocks_for(a.n * a.hw, kReductionItemsPerBlock);
  return blocks_for(a.n * a.hw, channel_tile(a.c / vec, vec).pixels_per_block);
}

template <class F>
cudaError_t dispatch_stats_type(Dtype stats_dtype, F&& f) {
  return stats_dtype == Dtype::Float64 ? f.template operator()<double>() : f.template operator()<float>();
}

template <class T, int VEC>
void launch_partials(const BnStatsLaunch& a, int64_t slices, double* part_sum, double* part_sq, cudaStream_t stream) {
  const T* x = static_cast<const T*>(a.x);
  if (a.layout == Layout::NCHW) {
    bn_partial_nchw<T, VEC><<<dim3(slices, a.c), kThreads, 0, stream>>>(x, a.n, a.c, a.hw, part_sum, part_sq);
  } else {
    const ChannelTile tile = channel_tile(a.c / VEC, VEC);
    bn_partial_nhwc<T, VEC><<<dim3(slices, tile.channel_tiles), kThreads, 0, stream>>>(x, a.n * a.hw, a.c, tile,
                                                                                      part_sum, part_sq);
  }
}

}  // namespace

size_t bn_stats_workspace_bytes(const BnStatsLaunch& a) {
  const int64_t slices = slices_of(a, pack_width(a.dtype, a.layout, a.c, a.hw, a.x, a.x));
  return static_cast<size_t>(2 * slices * a.c) * sizeof(double);
}

cudaError_t launch_bn_stats(const BnStatsLaunch& a, cudaStream_t stream) {
  if (a.c > 65535) return cudaErrorInvalidConfiguration;  // channels index grid.y
  return dispatch_float_types(a.dtype, [&]<class T>() {
    const bool packs = pack_width(a.dtype, a.layout, a.c, a.hw, a.x, a.x) > 1;
    const int64_t slices = slices_of(a, packs ? kVec16<T> : 1);
    double* part_sum = static_cast<double*>(a.workspace);
    double* part_sq = part_sum + slices * a.c;
    if (packs) {
      launch_partials<T, kVec16<T>>(a, slices, part_sum, part_sq, stream);
    } else {
      launch_partials<T, 1>(a, slices, part_sum, part_sq, stream);
    }
    using Op = opmath_t<T>;
    return dispatch_stats_type(a.stats_dtype, [&]<class S>() {
      bn_finalize<T, S><<<1, kThreads, 0, stream>>>(
          static_cast<const T*>(a.x), a.layout == Layout::NHWC, a.c, a.hw, slices,
          static_cast<double>(a.n) * static_cast<double>(a.hw), part_sum, part_sq,
          static_cast<const S*>(a.running_mean), static_cast<const S*>(a.running_var), static_cast<Op*>(a.loss),
          static_cast<Op*>(a.mean), static_cast<Op*>(a.var));
      return cudaGetLastError();
    });
  });
}

size_t bn_backward_workspace_bytes(const BnBackwardLaunch& a) {
  return static_cast<size_t>(2 * a.c) * (a.dtype == Dtype::Float64 ? sizeof(double) : sizeof(float));
}

cudaError_t launch_bn_backward(const BnBackwardLaunch& a, cudaStream_t stream) {
  return dispatch_float_types(a.dtype, [&]<class T>() {
    using Op = opmath_t<T>;
    Op* shift = static_cast<Op*>(a.workspace);
    Op* scale = shift + a.c;
    const cudaError_t coefficients = dispatch_stats_type(a.stats_dtype, [&]<class S>() {
      bn_backward_coefficients<Op, S><<<1, kThreads, 0, stream>>>(
          a.c, static_cast<double>(a.n) * static_cast<double>(a.hw), static_cast<const Op*>(a.grad_loss),
          static_cast<const Op*>(a.mean), static_cast<const Op*>(a.var), static_cast<const S*>(a.running_mean),
          static_cast<const S*>(a.running_var), shift, scale);
      return cudaGetLastError();
    });
    if (coefficients != cudaSuccess) return coefficients;
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.grad_x);
    const bool nchw = a.layout == Layout::NCHW;
    const auto apply = [&]<int VEC>() {
      const int64_t outer = nchw ? a.n : a.n * a.hw;
      const int64_t inner = (nchw ? a.hw : a.c) / VEC;
      const int64_t blocks = elementwise_blocks(outer * (nchw ? a.c : 1) * inner);
      if (nchw) {
        bn_backward_apply<T, VEC, false><<<blocks, kThreads, 0, stream>>>(x, y, outer, a.c, inner, shift, scale);
      } else {
        bn_backward_apply<T, VEC, true><<<blocks, kThreads, 0, stream>>>(x, y, outer, a.c, inner, shift, scale);
      }
    };
    if (pack_width(a.dtype, a.layout, a.c, a.hw, x, y) > 1) {
      apply.template operator()<kVec16<T>>();
    } else {
      apply.template operator()<1>();
    }
    return cudaGetLastError();
  });
}

}  // namespace dfnas::cuda
