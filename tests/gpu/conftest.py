"""GPU-code tests. Without a CUDA device the Triton kernels run under the Triton interpreter on
CPU tensors: TRITON_INTERPRET must be set before the kernel modules are imported (triton.jit
reads it when it decorates), so it is set here, before any test module imports them."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
