// CPU kernel of linear_act: y = lrelu(x @ weight.T + bias) * gain in one op call: torch's CPU
// GEMM (addmm or mm, called directly, not through the dispatcher), then, unless the
// activation is the identity with gain 1, one parallel in-place pass for the leaky ReLU and
// the gain. (Folding the gain into addmm's scale factors measured slower: torch then scales
// the bias in a separate pass.)
#include "csrc/cpu/layer_common.h"

#include <ATen/Parallel.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/mm_cpu_dispatch.h>
#include <torch/library.h>

namespace alae_fast {
namespace {

using namespace layer;

// y[j] *= (y[j] > 0 ? pos : neg) over [begin, end).
template <typename scalar_t, bool kAvx2>
ALAE_INLINE void act_inplace(scalar_t* y, acc_t<scalar_t> pos, acc_t<scalar_t> neg,
                             int64_t begin, int64_t end) {
  using acc = acc_t<scalar_t>;
  map_blocks<kAvx2>(y + begin, y + begin, end - begin,
                    [&](const acc* in, acc* out, int64_t, int64_t m) {
                      for (int64_t j = 0; j < m; ++j) {
                        out[j] = in[j] * (in[j] > acc(0) ? pos : neg);
                      }
                    });
}

at::Tensor linear_act_fwd(const at::Tensor& x, const at::Tensor& weight,
                          const c10::optional<at::Tensor>& bias, double alpha, double gain) {
  constexpr const char* op = "linear_act_fwd";
  check_cpu_float(x, op, "x");
  check_cpu_float(weight, op, "weight");
  check_same_dtype(x, weight, op, "weight");
  ALAE_CHECK_CPU(x.dim() == 2 && x.is_contiguous(), op,
                 "x must be a contiguous 2-D [B, IN] tensor, got shape ", x.sizes());
  ALAE_CHECK_CPU(weight.dim() == 2 && weight.is_contiguous() && weight.size(1) == x.size(1), op,
                 "weight must be a contiguous [OUT, ", x.size(1), "] tensor, got shape ",
                 weight.sizes());
  if (bias.has_value()) {
    check_cpu_float(*bias, op, "bias");
    check_same_dtype(x, *bias, op, "bias");
    ALAE_CHECK_CPU(bias->dim() == 1 && bias->size(0) == weight.size(0), op,
                   "bias must have shape [", weight.size(0), "], got ", bias->sizes());
  }
  at::Tensor y = bias.has_value() ? at::cpu::addmm(*bias, x, weight.t())
                                  : at::cpu::mm(x, weight.t());
  if ((alpha == 1.0 && gain == 1.0) || y.numel() == 0) {
    return y;
  }
  ALAE_DISPATCH_FLOATS(y.scalar_type(), op, [&] {
    scalar_t* py = y.data_ptr<scalar_t>();
    const auto p = static_cast<acc_t<scalar_t>>(gain);
    const auto n = static_cast<acc_t<scalar_t>>(alpha * gain);
    at::parallel_for(0, y.numel(), kGrain, [&](int64_t begin, int64_t end) {
      dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
        act_inplace<scalar_t, decltype(isa)::value>(py, p, n, begin, end);
      });
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(alae_fast_C, CPU, m) {
  m.impl("linear_act_fwd", &linear_act_fwd);
}

}  // namespace alae_fast
