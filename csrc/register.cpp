// Every dfnas op schema, in one place; kernels register per backend (csrc/cpu, csrc/cuda) and
// fake/autograd implementations live in Python (dfnas/ops/_fake.py, dfnas/ops/_autograd.py).
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "cpu/kernels/kernels.h"

namespace dfnas {
namespace {

// "key=value;..." describing the build and the CPU kernels in use (parsed by dfnas.build_info()).
std::string build_info() {
  const cpu::KernelTable& table = cpu::kernels();
#ifdef DFNAS_WITH_CUDA
  const char* cuda = "1";
#else
  const char* cuda = "0";
#endif
  const std::string built = std::string(cpu::kernel_table_DEFAULT().capability) + "," +
                            cpu::kernel_table_AVX2().capability + "," + cpu::kernel_table_AVX512().capability;
  return "capabilities_built=" + built + ";capability=" + table.capability +
         ";float_lanes=" + std::to_string(table.float_lanes) + ";openmp=" + (table.openmp ? "1" : "0") +
         ";cuda=" + cuda;
}

}  // namespace

TORCH_LIBRARY(dfnas, m) {
  m.set_python_module("dfnas.ops._fake");
  m.def("bn_stat_loss_forward(Tensor x, Tensor running_mean, Tensor running_var) -> (Tensor, Tensor, Tensor)");
  m.def(
      "bn_stat_loss_backward(Tensor grad_loss, Tensor x, Tensor mean, Tensor var, Tensor running_mean, "
      "Tensor running_var) -> Tensor");
  m.def("tv_loss_forward(Tensor x, str kind) -> (Tensor, Tensor)");
  m.def("tv_loss_backward(Tensor grad_loss, Tensor x, Tensor sums, str kind) -> Tensor");
  m.def("crop_windows(Tensor canvas, Tensor offsets, int height, int width) -> Tensor");
  m.def("crop_windows_backward(Tensor grad, Tensor offsets, int canvas_height, int canvas_width) -> Tensor");
  m.def(
      "region_adam_(Tensor(a!) canvas, Tensor grad, Tensor(b!) exp_avg, Tensor(c!) exp_avg_sq, Tensor offsets, *, "
      "int step, float lr, float beta1, float beta2, float eps, Tensor? clamp_min=None, Tensor? clamp_max=None) -> ()");
  m.def("build_info() -> str", &build_info);
}

}  // namespace dfnas

// `import dfnas._C` loads the library and runs the registrations above; no Python API is needed.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
