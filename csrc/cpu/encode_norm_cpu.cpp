// CPU kernels of encode_norm (spec section 3): bias + leaky ReLU + instance norm, also giving
// the per-row style statistics (mean, std) of the StyleALAE encoder. One task handles whole
// (n, c) rows: the forward reads x once (the activation is kept in the output row for the two
// later passes), the backward reads x and grad_y twice from cache.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "csrc/cpu/norm_common.h"

namespace alae_fast {
namespace {

using namespace norm_cpu;

template <typename scalar_t>
struct FwdArgs {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  const scalar_t* bias;
  scalar_t* y;
  scalar_t* style;
  acc_t* stats;
  int64_t channels, m;
  acc_t alpha;
  double eps;
};

template <int kBytes, typename scalar_t>
ALAE_INLINE void fwd_rows(const FwdArgs<scalar_t>& p, int64_t r0, int64_t r1) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = p.channels, m = p.m;
  RowBuffers<scalar_t> buffers(m, 2);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / C, c = r % C;
    const acc_t* x = buffers.load(0, p.x + r * m);
    acc_t* a = buffers.out(1, p.y + r * m);
    const acc_t b = static_cast<acc_t>(p.bias[c]);
    const acc_t* no_noise = nullptr;
    // Exactly the row's value for a constant row: then a - mu == 0, var == 0 and y == 0.
    const acc_t mu = static_cast<acc_t>(
        act_row_mean<false, kBytes>(x, no_noise, acc_t(0), b, p.alpha, a, m));
    const double var = sq_dev_row<kBytes>(a, mu, m) / static_cast<double>(m);
    const double rstd = 1.0 / std::sqrt(var + p.eps);
    normalize_row(a, mu, static_cast<acc_t>(rstd), acc_t(0), m);
    buffers.store(1, p.y + r * m);
    const double sd = std::sqrt(var);
    p.style[n * 2 * C + c] = static_cast<scalar_t>(mu);
    p.style[n * 2 * C + C + c] = static_cast<scalar_t>(sd);
    p.stats[n * 3 * C + c] = mu;
    p.stats[n * 3 * C + C + c] = static_cast<acc_t>(sd);
    p.stats[n * 3 * C + 2 * C + c] = static_cast<acc_t>(rstd);
  }
}

template <typename scalar_t>
struct BwdArgs {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* grad_y;
  const scalar_t* grad_style;
  const scalar_t* x;
  const scalar_t* bias;
  const acc_t* stats;
  scalar_t* grad_x;
  double* bias_partial;  // [N * C]: sum of grad_x over each row
  int64_t channels, m;
  acc_t alpha;
};

template <int kBytes, typename scalar_t>
ALAE_INLINE void bwd_rows(const BwdArgs<scalar_t>& p, int64_t r0, int64_t r1) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = p.channels, m = p.m;
  const double inv_m = 1.0 / static_cast<double>(m);
  RowBuffers<scalar_t> buffers(m, 3);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / C, c = r % C;
    const acc_t* g = buffers.load(0, p.grad_y + r * m);
    const acc_t* x = buffers.load(1, p.x + r * m);
    acc_t* gx = buffers.out(2, p.grad_x + r * m);
    const acc_t b = static_cast<acc_t>(p.bias[c]);
    const acc_t mu = p.stats[n * 3 * C + c];
    const double sd = p.stats[n * 3 * C + C + c];
    const double rstd = p.stats[n * 3 * C + 2 * C + c];
    const double g_mu = static_cast<double>(p.grad_style[n * 2 * C + c]);
    const double g_std = static_cast<double>(p.grad_style[n * 2 * C + C + c]);
    const acc_t* no_noise = nullptr;
    const auto [sum_g, sum_gd] =
        grad_sums_row<false, kBytes>(g, x, no_noise, acc_t(0), b, p.alpha, mu, m);
    // sum(grad_y * y) = rstd * sum(grad_y * d).
    const acc_t c0 = static_cast<acc_t>(-rstd * sum_g * inv_m + g_mu * inv_m);
    // No std gradient means no std term, even for a constant row (std 0, where 0/0 is NaN).
    const double std_term = g_std == 0.0 ? 0.0 : g_std / (static_cast<double>(m) * sd);
    const acc_t c1 = static_cast<acc_t>(-rstd * rstd * rstd * sum_gd * inv_m + std_term);
    p.bias_partial[r] = grad_input_row<false, kBytes>(g, x, no_noise, acc_t(0), b, p.alpha, mu,
                                                      static_cast<acc_t>(rstd), c0, c1, gx, m)[0];
    buffers.store(2, p.grad_x + r * m);
  }
}

constexpr const char* kFwd = "alae_fast_C.encode_norm_fwd";
constexpr const char* kBwd = "alae_fast_C.encode_norm_bwd";

std::tuple<at::Tensor, at::Tensor, at::Tensor> encode_norm_fwd(const at::Tensor& x,
                                                               const at::Tensor& bias,
                                                               double alpha, double eps) {
  check_x(kFwd, x, "x");
  const int64_t N = x.size(0), C = x.size(1), m = x.size(2) * x.size(3);
  check_arg(kFwd, bias, "bias", {C}, x.scalar_type());
  at::Tensor y = at::empty(x.sizes(), x.options());
  at::Tensor style = at::empty({N, 2 * C}, x.options());
  at::Tensor stats = at::empty({N, 3 * C}, x.options().dtype(acc_dtype(x.scalar_type())));
  ALAE_DISPATCH_FLOATS(x.scalar_type(), kFwd, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const FwdArgs<scalar_t> p{x.data_ptr<scalar_t>(),     bias.data_ptr<scalar_t>(),
                              y.data_ptr<scalar_t>(),     style.data_ptr<scalar_t>(),
                              stats.data_ptr<acc_t>(),    C,
                              m,                          static_cast<acc_t>(alpha),
                              eps};
    parallel_rows(N * C, m, [&](auto bytes, int64_t r0, int64_t r1) ALAE_INLINE_LAMBDA {
      fwd_rows<decltype(bytes)::value>(p, r0, r1);
    });
  });
  return {y, style, stats};
}

std::tuple<at::Tensor, at::Tensor> encode_norm_bwd(const at::Tensor& grad_y,
                                                   const at::Tensor& grad_style,
                                                   const at::Tensor& x, const at::Tensor& bias,
                                                   const at::Tensor& stats, double alpha,
                                                   double eps) {
  (void)eps;  // rstd comes from stats
  check_x(kBwd, x, "x");
  const int64_t N = x.size(0), C = x.size(1), m = x.size(2) * x.size(3);
  check_arg(kBwd, grad_y, "grad_y", x.sizes(), x.scalar_type());
  check_arg(kBwd, grad_style, "grad_style", {N, 2 * C}, x.scalar_type());
  check_arg(kBwd, bias, "bias", {C}, x.scalar_type());
  check_arg(kBwd, stats, "stats", {N, 3 * C}, acc_dtype(x.scalar_type()));
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_bias = at::empty({C}, x.options());
  std::vector<double> bias_partial(N * C);
  ALAE_DISPATCH_FLOATS(x.scalar_type(), kBwd, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const BwdArgs<scalar_t> p{grad_y.data_ptr<scalar_t>(), grad_style.data_ptr<scalar_t>(),
                              x.data_ptr<scalar_t>(),      bias.data_ptr<scalar_t>(),
                              stats.data_ptr<acc_t>(),     grad_x.data_ptr<scalar_t>(),
                              bias_partial.data(),         C,
                              m,                           static_cast<acc_t>(alpha)};
    parallel_rows(N * C, m, [&](auto bytes, int64_t r0, int64_t r1) ALAE_INLINE_LAMBDA {
      bwd_rows<decltype(bytes)::value>(p, r0, r1);
    });
    channel_sums(bias_partial, N, C, grad_bias.data_ptr<scalar_t>());
  });
  return {grad_x, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(alae_fast_C, CPU, m) {
  m.impl("encode_norm_fwd", &encode_norm_fwd);
  m.impl("encode_norm_bwd", &encode_norm_bwd);
}

}  // namespace alae_fast
