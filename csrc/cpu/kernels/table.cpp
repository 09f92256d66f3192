// The kernel table of this CPU capability (this file is compiled once per capability).
#include "vec_io.h"

namespace dfnas::cpu {
inline namespace CPU_CAPABILITY {
void bn_stats(const BnStatsArgs&);
void bn_backward(const BnBackwardArgs&);
void tv_forward(const TvForwardArgs&);
void tv_backward(const TvBackwardArgs&);
void crop_windows(const CropWindowsArgs&);
void region_adam(const RegionAdamArgs&);
}  // namespace CPU_CAPABILITY

#ifdef _OPENMP
constexpr bool kOpenMP = true;
#else
constexpr bool kOpenMP = false;
#endif

#define DFNAS_TABLE_FUNCTION(capability) DFNAS_TABLE_FUNCTION_(capability)
#define DFNAS_TABLE_FUNCTION_(capability) kernel_table_##capability

const KernelTable& DFNAS_TABLE_FUNCTION(CPU_CAPABILITY)() {
  static const KernelTable table{
      C10_STRINGIZE(CPU_CAPABILITY), static_cast<int>(kLanes), kOpenMP,
      &bn_stats, &bn_backward, &tv_forward, &tv_backward, &crop_windows, &region_adam,
  };
  return table;
}
}  // namespace dfnas::cpu
