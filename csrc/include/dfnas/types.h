// Element types and memory layouts as the kernels see them, shared by the CPU kernels
// (csrc/cpu/kernels), the CUDA launchers (csrc/cuda/kernels) and the ATen glue that maps tensors
// onto them (csrc/tensor_checks.h). Torch-free, like everything in csrc/include/dfnas.
#pragma once

namespace dfnas {

enum class Dtype : int { Float32, Float64, BFloat16, Float16 };

// Dense 4-D image batches: NCHW-contiguous or channels-last (NHWC) contiguous.
enum class Layout : int { NCHW, NHWC };

}  // namespace dfnas
