// Total-variation prior on CUDA (math in dfnas/tv_loss_math.h).
//
// Both layouts are walked as planes of rows of contiguous elements (traversal.h `Planes`), one
// element per thread step, so consecutive threads read consecutive addresses; the stencil's
// neighbours (one element, one row and one row + one element away) are shifted by a single
// element, so they come from L1/L2 rather than from a second pass over memory.
//
// Forward: deterministic two-stage reduction of the four per-direction sums (fixed slices of
// the flat tensor, then one block combining the slices in order). Backward: one pass, each
// thread gathering the gradient of its pixel from its 3x3 neighbourhood.
#include "common.cuh"

namespace dfnas::cuda {
namespace {

template <class T>
__global__ void __launch_bounds__(kThreads)
tv_partial(const T* __restrict__ x, Planes p, TvKind kind, double* __restrict__ partials) {
  using acc_t = opmath_t<T>;
  const int64_t total = p.planes * p.rows * p.len;
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kReductionItemsPerBlock;
  const int64_t end = begin + kReductionItemsPerBlock < total ? begin + kReductionItemsPerBlock : total;
  const int64_t radix[3] = {p.planes, p.rows, p.len};
  const MixedRadix<3> step = MixedRadix<3>::of(kThreads, radix);
  MixedRadix<3> at = MixedRadix<3>::of(begin + threadIdx.x, radix);
  acc_t right = 0, down = 0, diag = 0, diag_down = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const bool has_right = at.digit[2] + p.step < p.len, has_down = at.digit[1] + 1 < p.rows;
    const acc_t v = to_opmath(x[i]);
    if (has_right) right += tv_forward_term(kind, v - to_opmath(x[i + p.step]));
    if (has_down) {
      const acc_t below = to_opmath(x[i + p.len]);
      down += tv_forward_term(kind, v - below);
      if (has_right) {
        diag += tv_forward_term(kind, below - to_opmath(x[i + p.step]));
        diag_down += tv_forward_term(kind, v - to_opmath(x[i + p.len + p.step]));
      }
    }
    at.advance(step, radix);
  }
  double sums[4] = {static_cast<double>(right), static_cast<double>(down), static_cast<double>(diag),
                    static_cast<double>(diag_down)};
  block_sum(sums);
  if (threadIdx.x == 0) {
    for (int k = 0; k < 4; ++k) partials[4 * blockIdx.x + k] = sums[k];
  }
}

// One block: the slices' sums in a fixed order, then the loss.
template <class Op>
__global__ void __launch_bounds__(kThreads)
tv_finalize(const double* __restrict__ partials, int64_t slices, TvKind kind, int64_t n, int64_t c, int64_t h,
            int64_t w, double* __restrict__ sums_out, Op* __restrict__ loss) {
  double sums[4] = {0.0, 0.0, 0.0, 0.0};
  for (int64_t s = threadIdx.x; s < slices; s += kThreads) {
    for (int k = 0; k < 4; ++k) sums[k] += partials[4 * s + k];
  }
  block_sum(sums);
  if (threadIdx.x == 0) {
    double counts[4];
    tv_counts(n, c, h, w, counts);
    for (int k = 0; k < 4; ++k) sums_out[k] = sums[k];
    *loss = static_cast<Op>(tv_loss_from_sums(kind, sums, counts));
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
tv_backward(const T* __restrict__ x, T* __restrict__ grad_x, Planes p, TvKind kind, int64_t n, int64_t c, int64_t h,
            int64_t w, const opmath_t<T>* __restrict__ grad_loss, const double* __restrict__ sums) {
  using acc_t = opmath_t<T>;
  __shared__ acc_t weights[4];
  if (threadIdx.x == 0) {
    double counts[4], wts[4], s[4];
    for (int k = 0; k < 4; ++k) s[k] = sums[k];
    tv_counts(n, c, h, w, counts);
    tv_backward_weights(kind, static_cast<double>(*grad_loss), s, counts, wts);
    for (int k = 0; k < 4; ++k) weights[k] = static_cast<acc_t>(wts[k]);
  }
  __syncthreads();
  const auto term = [kind](acc_t d) { return tv_backward_term(kind, d); };
  const int64_t radix[3] = {p.planes, p.rows, p.len};
  grid_stride_loop<1>(radix, [&](int64_t i, const MixedRadix<3>& at) {
    const int64_t r = at.digit[1], t = at.digit[2];
    const bool has_left = t >= p.step, has_right = t + p.step < p.len;
    const bool has_up = r > 0, has_down = r + 1 < p.rows;
    const acc_t v = to_opmath(x[i]);
    const auto at_offset = [&](int64_t offset) { return to_opmath(x[i + offset]); };
    acc_t g = 0;
    // A pixel is the first operand of the differences starting at it and the second operand of
    // those ending at it (tv_loss_math.h): d0 right, d1 down, d2 = below - right, d3 = diagonal down.
    if (has_right) g += weights[0] * term(v - at_offset(p.step));
    if (has_left) g -= weights[0] * term(at_offset(-p.step) - v);
    if (has_down) g += weights[1] * term(v - at_offset(p.len));
    if (has_up) g -= weights[1] * term(at_offset(-p.len) - v);
    if (has_up && has_right) g += weights[2] * term(v - at_offset(p.step - p.len));
    if (has_down && has_left) g -= weights[2] * term(at_offset(p.len - p.step) - v);
    if (has_down && has_right) g += weights[3] * term(v - at_offset(p.len + p.step));
    if (has_up && has_left) g -= weights[3] * term(at_offset(-p.len - p.step) - v);
    grad_x[i] = from_opmath<T>(g);
  });
}

int64_t slices_of(const TvForwardLaunch& a) {
  return blocks_for(a.n * a.c * a.h * a.w, kReductionItemsPerBlock);
}

}  // namespace

size_t tv_forward_workspace_bytes(const TvForwardLaunch& a) {
  return static_cast<size_t>(4 * slices_of(a)) * sizeof(double);
}

cudaError_t launch_tv_forward(const TvForwardLaunch& a, cudaStream_t stream) {
  return dispatch_float_types(a.dtype, [&]<class T>() {
    const int64_t slices = slices_of(a);
    double* partials = static_cast<double*>(a.workspace);
    const Planes p = planes_of(a.layout == Layout::NHWC, a.n, a.c, a.h, a.w);
    tv_partial<T><<<slices, kThreads, 0, stream>>>(static_cast<const T*>(a.x), p, a.kind, partials);
    tv_finalize<opmath_t<T>><<<1, kThreads, 0, stream>>>(partials, slices, a.kind, a.n, a.c, a.h, a.w, a.sums,
                                                         static_cast<opmath_t<T>*>(a.loss));
    return cudaGetLastError();
  });
}

cudaError_t launch_tv_backward(const TvBackwardLaunch& a, cudaStream_t stream) {
  return dispatch_float_types(a.dtype, [&]<class T>() {
    const Planes p = planes_of(a.layout == Layout::NHWC, a.n, a.c, a.h, a.w);
    const int64_t blocks = elementwise_blocks(p.planes * p.rows * p.len);
    tv_backward<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(a.x), static_cast<T*>(a.grad_x), p, a.kind,
                                                    a.n, a.c, a.h, a.w,
                                                    static_cast<const opmath_t<T>*>(a.grad_loss), a.sums);
    return cudaGetLastError();
  });
}

}  // namespace dfnas::cuda
