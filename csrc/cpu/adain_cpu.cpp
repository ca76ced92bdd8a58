// CPU kernels of adain (spec section 4): noise + bias + leaky ReLU + instance norm + style
// modulation of the StyleALAE generator. One task handles whole (n, c) rows: the forward reads
// x once (the activation is kept in the output row for the two later passes), the backward
// reads x, noise and grad_y twice from cache. Channel sums over n are taken from per-row
// partials in a fixed order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
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
  const scalar_t* style;
  const scalar_t* noise;         // null without noise
  const scalar_t* noise_weight;  // null without noise
  const scalar_t* bias;          // null without bias
  scalar_t* y;
  acc_t* stats;
  int64_t channels, m;
  acc_t alpha;
  double eps;
};

template <int kBytes, typename scalar_t>
ALAE_INLINE void fwd_rows(const FwdArgs<scalar_t>& p, int64_t r0, int64_t r1) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = p.channels, m = p.m;
  RowBuffers<scalar_t> buffers(m, 3);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / C, c = r % C;
    const acc_t* x = buffers.load(0, p.x + r * m);
    acc_t* a = buffers.out(1, p.y + r * m);
    const acc_t b = p.bias ? static_cast<acc_t>(p.bias[c]) : acc_t(0);
    double mean;
    if (p.noise) {
      const acc_t* noise = buffers.load(2, p.noise + n * m);
      const acc_t w = static_cast<acc_t>(p.noise_weight[c]);
      mean = act_row_mean<true, kBytes>(x, noise, w, b, p.alpha, a, m);
    } else {
      const acc_t* no_noise = nullptr;
      mean = act_row_mean<false, kBytes>(x, no_noise, acc_t(0), b, p.alpha, a, m);
    }
    // Exactly the row's value for a constant row: then a - mu == 0 and y == shift exactly.
    const acc_t mu = static_cast<acc_t>(mean);
    const double var = sq_dev_row<kBytes>(a, mu, m) / static_cast<double>(m);
    const double rstd = 1.0 / std::sqrt(var + p.eps);
    const double scale = 1.0 + static_cast<double>(p.style[n * 2 * C + c]);
    const acc_t shift = static_cast<acc_t>(p.style[n * 2 * C + C + c]);
    normalize_row(a, mu, static_cast<acc_t>(rstd * scale), shift, m);
    buffers.store(1, p.y + r * m);
    p.stats[n * 2 * C + c] = mu;
    p.stats[n * 2 * C + C + c] = static_cast<acc_t>(rstd);
  }
}

template <typename scalar_t>
struct BwdArgs {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* grad_y;
  const scalar_t* x;
  const scalar_t* style;
  const scalar_t* noise;         // null without noise
  const scalar_t* noise_weight;  // null without noise
  const scalar_t* bias;          // null without bias
  const acc_t* stats;
  scalar_t* grad_x;
  scalar_t* grad_style;
  double* bias_partial;   // [N * C]: sum of grad_x over each row
  double* noise_partial;  // [N * C]: sum of grad_x * noise over each row (with noise only)
  int64_t channels, m;
  acc_t alpha;
};

template <int kBytes, typename scalar_t>
ALAE_INLINE void bwd_rows(const BwdArgs<scalar_t>& p, int64_t r0, int64_t r1) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = p.channels, m = p.m;
  const double inv_m = 1.0 / static_cast<double>(m);
  RowBuffers<scalar_t> buffers(m, 4);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / C, c = r % C;
    const acc_t* g = buffers.load(0, p.grad_y + r * m);
    const acc_t* x = buffers.load(1, p.x + r * m);
    acc_t* gx = buffers.out(2, p.grad_x + r * m);
    const acc_t b = p.bias ? static_cast<acc_t>(p.bias[c]) : acc_t(0);
    const acc_t mu = p.stats[n * 2 * C + c];
    const double rstd = p.stats[n * 2 * C + C + c];
    const double k = (1.0 + static_cast<double>(p.style[n * 2 * C + c])) * rstd;
    const acc_t* noise = p.noise ? buffers.load(3, p.noise + n * m) : nullptr;
    const acc_t w = p.noise ? static_cast<acc_t>(p.noise_weight[c]) : acc_t(0);
    const auto [sum_g, sum_gd] =
        p.noise ? grad_sums_row<true, kBytes>(g, x, noise, w, b, p.alpha, mu, m)
                : grad_sums_row<false, kBytes>(g, x, noise, w, b, p.alpha, mu, m);
    // sum(grad_y * xn) = rstd * sum(grad_y * d); ga = k * (g - Sg / M - xn * Sgx / M).
    const double sum_gxn = rstd * sum_gd;
    const acc_t c0 = static_cast<acc_t>(-k * sum_g * inv_m);
    const acc_t c1 = static_cast<acc_t>(-k * rstd * sum_gxn * inv_m);
    if (p.noise) {
      const auto sums = grad_input_row<true, kBytes>(g, x, noise, w, b, p.alpha, mu,
                                             static_cast<acc_t>(k), c0, c1, gx, m);
      p.bias_partial[r] = sums[0];
      p.noise_partial[r] = sums[1];
    } else {
      p.bias_partial[r] = grad_input_row<false, kBytes>(g, x, noise, w, b, p.alpha, mu,
                                                static_cast<acc_t>(k), c0, c1, gx, m)[0];
    }
    buffers.store(2, p.grad_x + r * m);
    p.grad_style[n * 2 * C + c] = static_cast<scalar_t>(sum_gxn);
    p.grad_style[n * 2 * C + C + c] = static_cast<scalar_t>(sum_g);
  }
}

constexpr const char* kFwd = "alae_fast_C.adain_fwd";
constexpr const char* kBwd = "alae_fast_C.adain_bwd";

std::tuple<at::Tensor, at::Tensor> adain_fwd(const at::Tensor& x, const at::Tensor& style,
                                             const std::optional<at::Tensor>& noise,
                                             const std::optional<at::Tensor>& noise_weight,
                                             const std::optional<at::Tensor>& bias, double alpha,
                                             double eps) {
  check_x(kFwd, x, "x");
  const int64_t N = x.size(0), C = x.size(1), m = x.size(2) * x.size(3);
  check_arg(kFwd, style, "style", {N, 2 * C}, x.scalar_type());
  check_noise_bias(kFwd, x, noise, noise_weight, bias, "bias");
  at::Tensor y = at::empty(x.sizes(), x.options());
  at::Tensor stats = at::empty({N, 2 * C}, x.options().dtype(acc_dtype(x.scalar_type())));
  ALAE_DISPATCH_FLOATS(x.scalar_type(), kFwd, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const FwdArgs<scalar_t> p{x.data_ptr<scalar_t>(),
                              style.data_ptr<scalar_t>(),
                              data_or_null<scalar_t>(noise),
                              data_or_null<scalar_t>(noise_weight),
                              data_or_null<scalar_t>(bias),
                              y.data_ptr<scalar_t>(),
                              stats.data_ptr<acc_t>(),
                              C,
                              m,
                              static_cast<acc_t>(alpha),
                              eps};
    parallel_rows(N * C, m, [&](auto bytes, int64_t r0, int64_t r1) ALAE_INLINE_LAMBDA {
      fwd_rows<decltype(bytes)::value>(p, r0, r1);
    });
  });
  return {y, stats};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> adain_bwd(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& style,
    const std::optional<at::Tensor>& noise, const std::optional<at::Tensor>& noise_weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& stats, double alpha, double eps) {
  (void)eps;  // rstd comes from stats
  check_x(kBwd, x, "x");
  const int64_t N = x.size(0), C = x.size(1), m = x.size(2) * x.size(3);
  check_arg(kBwd, grad_y, "grad_y", x.sizes(), x.scalar_type());
  check_arg(kBwd, style, "style", {N, 2 * C}, x.scalar_type());
  check_noise_bias(kBwd, x, noise, noise_weight, bias, "bias");
  check_arg(kBwd, stats, "stats", {N, 2 * C}, acc_dtype(x.scalar_type()));
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_style = at::empty({N, 2 * C}, x.options());
  at::Tensor grad_noise_weight = noise ? at::empty({C}, x.options()) : at::zeros({C}, x.options());
  at::Tensor grad_bias = at::empty({C}, x.options());
  std::vector<double> bias_partial(N * C);
  std::vector<double> noise_partial(noise ? N * C : 0);
  ALAE_DISPATCH_FLOATS(x.scalar_type(), kBwd, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const BwdArgs<scalar_t> p{grad_y.data_ptr<scalar_t>(),
                              x.data_ptr<scalar_t>(),
                              style.data_ptr<scalar_t>(),
                              data_or_null<scalar_t>(noise),
                              data_or_null<scalar_t>(noise_weight),
                              data_or_null<scalar_t>(bias),
                              stats.data_ptr<acc_t>(),
                              grad_x.data_ptr<scalar_t>(),
                              grad_style.data_ptr<scalar_t>(),
                              bias_partial.data(),
                              noise_partial.data(),
                              C,
                              m,
                              static_cast<acc_t>(alpha)};
    parallel_rows(N * C, m, [&](auto bytes, int64_t r0, int64_t r1) ALAE_INLINE_LAMBDA {
      bwd_rows<decltype(bytes)::value>(p, r0, r1);
    });
    channel_sums(bias_partial, N, C, grad_bias.data_ptr<scalar_t>());
    if (noise) {
      channel_sums(noise_partial, N, C, grad_noise_weight.data_ptr<scalar_t>());
    }
  });
  return {grad_x, grad_style, grad_noise_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(alae_fast_C, CPU, m) {
  m.impl("adain_fwd", &adain_fwd);
  m.impl("adain_bwd", &adain_bwd);
}

}  // namespace alae_fast
