// Chooses the kernel table for this CPU once, at first use.
#include <cctype>
#include <cstdlib>
#include <cstdio>
#include <string>

#include "cpu/kernels/kernels.h"

namespace dfnas::cpu {
namespace {

// Capabilities from best to most portable, with the CPU features each needs.
bool cpu_supports(const std::string& capability) {
  if (capability == "AVX512") {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  }
  if (capability == "AVX2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return true;
}

const KernelTable& table_of(const std::string& capability) {
  if (capability == "AVX512") return kernel_table_AVX512();
  if (capability == "AVX2") return kernel_table_AVX2();
  return kernel_table_DEFAULT();
}

const KernelTable& choose() {
  static const char* order[] = {"AVX512", "AVX2", "DEFAULT"};
  std::string requested = "AVX512";
  if (const char* env = std::getenv("DFNAS_CPU_CAPABILITY")) {
    std::string value(env);
    for (char& ch : value) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (value == "AVX512" || value == "AVX2" || value == "DEFAULT") {
      requested = value;
    } else {
      std::fprintf(stderr, "dfnas: ignoring DFNAS_CPU_CAPABILITY=%s (expected default, avx2 or avx512)\n", env);
    }
  }
  bool reached = false;
  for (const char* capability : order) {
    reached = reached || requested == capability;
    if (reached && cpu_supports(capability)) return table_of(capability);
  }
  return kernel_table_DEFAULT();
}

}  // namespace

const KernelTable& kernels() {
  static const KernelTable& table = choose();
  return table;
}

}  // namespace dfnas::cpu
