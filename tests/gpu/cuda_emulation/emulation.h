// A CPU emulation of the small part of CUDA the dfnas kernels use, so that their code runs
// unchanged on the host (tests/gpu/test_gpu_cuda_emulation.py): a block's threads are fibers
// (ucontext) scheduled round-robin on one OS thread, switching at __syncthreads and at warp
// shuffles, which are barriers of the block and of the warp; blocks run one after another, so
// `__shared__` (a function-local static here) is per block. Kernel launches are rewritten by the test from `k<<<grid, block, smem, stream>>>(args)`
// to `::emu::Launch(grid, block, smem, stream)(k, args)`.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ucontext.h>

#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint4 {
  unsigned x, y, z, w;
};

using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };

namespace emu {

inline dim3 thread_index, block_index, grid_dim, block_dim;
inline int multiprocessors = 1;  // small: grid-stride loops take several steps

// Runs work(t) for t < threads as fibers until all return; yield() switches to the next fiber.
class Scheduler {
 public:
  void run(unsigned threads, std::function<void(unsigned)> work) {
    work_ = std::move(work);
    fibers_.assign(threads, Fiber{});
    for (Fiber& f : fibers_) {
      f.stack.resize(256 * 1024);
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack.data();
      f.context.uc_stack.ss_size = f.stack.size();
      f.context.uc_link = &scheduler_;
      makecontext(&f.context, &Scheduler::entry, 0);
    }
    for (unsigned live = threads; live > 0;) {
      for (current_ = 0; current_ < threads; ++current_) {
        if (fibers_[current_].done) continue;
        thread_index = dim3(current_ % block_dim.x, (current_ / block_dim.x) % block_dim.y,
                            current_ / (block_dim.x * block_dim.y));
        swapcontext(&scheduler_, &fibers_[current_].context);
        if (fibers_[current_].done) --live;
      }
    }
  }
  void yield() { swapcontext(&fibers_[current_].context, &scheduler_); }

 private:
  struct Fiber {
    ucontext_t context;
    std::vector<char> stack;
    bool done = false;
  };
  static void entry();
  std::function<void(unsigned)> work_;
  std::vector<Fiber> fibers_;
  ucontext_t scheduler_;
  unsigned current_ = 0;
  friend Scheduler& scheduler();
};

inline Scheduler& scheduler() {
  static Scheduler instance;
  return instance;
}

inline void Scheduler::entry() {
  Scheduler& s = scheduler();
  s.work_(s.current_);
  s.fibers_[s.current_].done = true;
}

// Waits (yielding) until `expected` fibers have arrived.
struct Barrier {
  unsigned expected, arrived = 0, generation = 0;
  void wait() {
    const unsigned mine = generation;
    if (++arrived == expected) {
      arrived = 0;
      ++generation;
      return;
    }
    while (generation == mine) scheduler().yield();
  }
};

struct BlockSync {
  Barrier block;
  std::vector<Barrier> warps;
  std::vector<unsigned char> lanes;  // 8 bytes per thread, for shuffles
  explicit BlockSync(unsigned threads) : block{threads}, warps((threads + 31) / 32, Barrier{32}), lanes(8 * threads) {}
};
inline BlockSync* sync = nullptr;

struct Launch {
  dim3 grid, block;
  Launch(dim3 g, dim3 b, size_t = 0, cudaStream_t = nullptr) : grid(g), block(b) {}

  template <class... P, class... A>
  void operator()(void (*kernel)(P...), A... args) const {
    grid_dim = grid;
    block_dim = block;
    const unsigned threads = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          BlockSync block_sync(threads);
          sync = &block_sync;
          block_index = dim3(bx, by, bz);
          scheduler().run(threads, [&](unsigned) { kernel(static_cast<P>(args)...); });
        }
  }
};

}  // namespace emu

#define threadIdx (::emu::thread_index)
#define blockIdx (::emu::block_index)
#define gridDim (::emu::grid_dim)
#define blockDim (::emu::block_dim)

inline void __syncthreads() { emu::sync->block.wait(); }
[[noreturn]] inline void __trap() { abort(); }

template <class T>
T __shfl_down_sync(unsigned, T value, unsigned offset) {
  static_assert(sizeof(T) <= 8);
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const unsigned self = threadIdx.x;
  emu::Barrier& barrier = emu::sync->warps[warp];
  memcpy(&emu::sync->lanes[8 * self], &value, sizeof(T));
  barrier.wait();
  T out = value;
  if (lane + offset < 32) memcpy(&out, &emu::sync->lanes[8 * (self + offset)], sizeof(T));
  barrier.wait();
  return out;
}

inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = emu::multiprocessors;
  return cudaSuccess;
}

// Half and bfloat16 with the CUDA conversion functions (round to nearest even).
struct __half {
  _Float16 value;
};
inline float __half2float(__half h) { return static_cast<float>(h.value); }
inline __half __float2half_rn(float f) { return __half{static_cast<_Float16>(f)}; }

struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if (isnan(f)) return __nv_bfloat16{0x7fc0};
  u += 0x7fff + ((u >> 16) & 1);
  return __nv_bfloat16{static_cast<uint16_t>(u >> 16)};
}
