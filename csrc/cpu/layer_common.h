// Helpers shared by the CPU layer kernels (bias_act, blur, linear_act, lreq_adam) on top of
// cpu_common.h: the block-wise float16/bfloat16 loops and the layout test.
//
// The kernels are written as plain loops over contiguous arrays of the accumulation type and
// compiled twice: once for the baseline target and once inlined into a function compiled for
// AVX2 (with_avx2), which GCC then vectorises 8 floats wide. The AVX2 copy runs only where the
// CPU has it. float16 and bfloat16 data are converted to float in blocks of kBlock elements
// so the same float loops serve every dtype.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include "csrc/cpu/cpu_common.h"

namespace alae_fast {
namespace layer {

using namespace cpu;

// Elements per converted block of a float16/bfloat16 array (two blocks fit in L1 easily).
constexpr int64_t kBlock = 256;
// Elements per task of the element-wise kernels: below this a kernel runs on one thread.
constexpr int64_t kGrain = 32768;

// Calls f(xb, yb, offset, len) over [0, n) in pieces of at most kBlock, with xb the input
// converted to acc_t and yb an acc_t buffer that is stored to y afterwards. For float and
// double there is no copy: one call with the arrays themselves.
template <bool kAvx2, typename scalar_t, typename F>
ALAE_INLINE void map_blocks(const scalar_t* x, scalar_t* y, int64_t n, const F& f) {
  if constexpr (is_reduced<scalar_t>()) {
    float xb[kBlock], yb[kBlock];
    for (int64_t off = 0; off < n; off += kBlock) {
      const int64_t len = std::min(kBlock, n - off);
      to_acc<kAvx2>(x + off, xb, len);
      f(static_cast<const float*>(xb), static_cast<float*>(yb), off, len);
      from_acc<kAvx2>(yb, y + off, len);
    }
  } else {
    f(x, y, int64_t(0), n);
  }
}

// True for a 4-D tensor laid out channels_last that is not also plain contiguous.
inline bool is_channels_last_only(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() &&
         t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace layer
}  // namespace alae_fast
