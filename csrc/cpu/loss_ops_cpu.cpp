// CPU kernels of the fused GAN-loss ops: one pass over the inputs for each forward and each
// backward. Sums are taken over fixed chunks and added in order, so a result does not depend
// on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace alae_fast {
namespace {

// Elements per partial sum; fixed (not per-thread) so that the summation order is fixed.
constexpr int64_t kChunk = 16384;
// Independent accumulators per chunk, so the compiler can keep several adds in flight.
constexpr int kLanes = 8;
// Elements per task of the element-wise backward kernels.
constexpr int64_t kGrain = 32768;

template <typename T>
inline T softplus(T x) {
  // max(x, 0) + log1p(exp(-|x|)): never overflows, exact to rounding for any finite x.
  return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
}

template <typename T>
inline T sigmoid(T x) {
  if (x >= T(0)) {
    return T(1) / (T(1) + std::exp(-x));
  }
  const T e = std::exp(x);
  return e / (T(1) + e);
}

// sums[r] = sum_j term(r, j) for j < row_len, accumulated in double.
template <typename Term>
std::vector<double> row_sums(int64_t rows, int64_t row_len, const Term& term) {
  const int64_t chunks_per_row = std::max<int64_t>(1, (row_len + kChunk - 1) / kChunk);
  std::vector<double> partial(rows * chunks_per_row, 0.0);
  at::parallel_for(0, rows * chunks_per_row, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = t / chunks_per_row;
      const int64_t begin = (t % chunks_per_row) * kChunk;
      const int64_t end = std::min(row_len, begin + kChunk);
      double lane[kLanes] = {};
      int64_t j = begin;
      for (; j + kLanes <= end; j += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
          lane[k] += static_cast<double>(term(r, j + k));
        }
      }
      for (; j < end; ++j) {
        lane[0] += static_cast<double>(term(r, j));
      }
      double s = 0.0;
      for (int k = 0; k < kLanes; ++k) {
        s += lane[k];
      }
      partial[t] = s;
    }
  });
  std::vector<double> sums(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < chunks_per_row; ++c) {
      sums[r] += partial[r * chunks_per_row + c];
    }
  }
  return sums;
}

void check_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "alae_fast_C (CPU): ", name, " must be a CPU tensor, got ",
              t.device());
  TORCH_CHECK(t.is_contiguous(), "alae_fast_C (CPU): ", name, " must be contiguous");
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "alae_fast_C (CPU): ", name,
              " must be a floating-point tensor, got ", t.scalar_type());
}

void check_same(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK(a.sizes() == b.sizes(), "alae_fast_C (CPU): ", a_name, " and ", b_name,
              " must have the same shape, got ", a.sizes(), " and ", b.sizes());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "alae_fast_C (CPU): ", a_name, " and ",
              b_name, " must have the same dtype, got ", a.scalar_type(), " and ",
              b.scalar_type());
}

double scalar_grad(const at::Tensor& grad) {
  TORCH_CHECK(grad.numel() == 1, "alae_fast_C (CPU): grad must hold one element, got shape ",
              grad.sizes());
  return grad.to(at::kDouble).item<double>();
}

#define ALAE_DISPATCH_FLOATS(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

at::Tensor d_adv_loss_fwd(const at::Tensor& d_fake, const at::Tensor& d_real) {
  check_input(d_fake, "d_fake");
  check_input(d_real, "d_real");
  check_same(d_fake, "d_fake", d_real, "d_real");
  const int64_t n = d_fake.numel();
  TORCH_CHECK(n > 0, "alae_fast_C (CPU): d_fake must not be empty");
  double total = 0.0;
  ALAE_DISPATCH_FLOATS(d_fake.scalar_type(), "d_adv_loss_fwd", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* f = d_fake.data_ptr<scalar_t>();
    const scalar_t* r = d_real.data_ptr<scalar_t>();
    total = row_sums(1, n, [&](int64_t, int64_t j) {
      return softplus<math_t>(static_cast<math_t>(f[j])) +
             softplus<math_t>(-static_cast<math_t>(r[j]));
    })[0];
  });
  return at::scalar_tensor(total / static_cast<double>(n), d_fake.options());
}

std::tuple<at::Tensor, at::Tensor> d_adv_loss_bwd(const at::Tensor& grad, const at::Tensor& d_fake,
                                                  const at::Tensor& d_real) {
  check_input(d_fake, "d_fake");
  check_input(d_real, "d_real");
  check_same(d_fake, "d_fake", d_real, "d_real");
  const int64_t n = d_fake.numel();
  const double scale = scalar_grad(grad) / static_cast<double>(n);
  at::Tensor grad_fake = at::empty_like(d_fake);
  at::Tensor grad_real = at::empty_like(d_real);
  ALAE_DISPATCH_FLOATS(d_fake.scalar_type(), "d_adv_loss_bwd", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* f = d_fake.data_ptr<scalar_t>();
    const scalar_t* r = d_real.data_ptr<scalar_t>();
    scalar_t* gf = grad_fake.data_ptr<scalar_t>();
    scalar_t* gr = grad_real.data_ptr<scalar_t>();
    const math_t s = static_cast<math_t>(scale);
    at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        gf[i] = static_cast<scalar_t>(s * sigmoid<math_t>(static_cast<math_t>(f[i])));
        gr[i] = static_cast<scalar_t>(-s * sigmoid<math_t>(-static_cast<math_t>(r[i])));
      }
    });
  });
  return {grad_fake, grad_real};
}

at::Tensor g_adv_loss_fwd(const at::Tensor& d_fake) {
  check_input(d_fake, "d_fake");
  const int64_t n = d_fake.numel();
  TORCH_CHECK(n > 0, "alae_fast_C (CPU): d_fake must not be empty");
  double total = 0.0;
  ALAE_DISPATCH_FLOATS(d_fake.scalar_type(), "g_adv_loss_fwd", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* f = d_fake.data_ptr<scalar_t>();
    total = row_sums(1, n, [&](int64_t, int64_t j) {
      return softplus<math_t>(-static_cast<math_t>(f[j]));
    })[0];
  });
  return at::scalar_tensor(total / static_cast<double>(n), d_fake.options());
}

at::Tensor g_adv_loss_bwd(const at::Tensor& grad, const at::Tensor& d_fake) {
  check_input(d_fake, "d_fake");
  const int64_t n = d_fake.numel();
  const double scale = scalar_grad(grad) / static_cast<double>(n);
  at::Tensor grad_fake = at::empty_like(d_fake);
  ALAE_DISPATCH_FLOATS(d_fake.scalar_type(), "g_adv_loss_bwd", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* f = d_fake.data_ptr<scalar_t>();
    scalar_t* gf = grad_fake.data_ptr<scalar_t>();
    const math_t s = static_cast<math_t>(scale);
    at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        gf[i] = static_cast<scalar_t>(-s * sigmoid<math_t>(-static_cast<math_t>(f[i])));
      }
    });
  });
  return grad_fake;
}

at::Tensor r1_penalty_fwd(const at::Tensor& grads, double gamma) {
  check_input(grads, "grads");
  TORCH_CHECK(grads.dim() == 2, "alae_fast_C (CPU): grads must be 2-D [N, M], got shape ",
              grads.sizes());
  const int64_t rows = grads.size(0);
  const int64_t row_len = grads.size(1);
  at::Tensor out = at::empty({rows}, grads.options());
  ALAE_DISPATCH_FLOATS(grads.scalar_type(), "r1_penalty_fwd", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grads.data_ptr<scalar_t>();
    const std::vector<double> sums = row_sums(rows, row_len, [&](int64_t r, int64_t j) {
      const math_t v = static_cast<math_t>(g[r * row_len + j]);
      return v * v;
    });
    scalar_t* o = out.data_ptr<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      o[r] = static_cast<scalar_t>(sums[r] * (0.5 * gamma));
    }
  });
  return out;
}

at::Tensor r1_penalty_bwd(const at::Tensor& grad, const at::Tensor& grads, double gamma) {
  check_input(grads, "grads");
  TORCH_CHECK(grads.dim() == 2, "alae_fast_C (CPU): grads must be 2-D [N, M], got shape ",
              grads.sizes());
  const int64_t rows = grads.size(0);
  const int64_t row_len = grads.size(1);
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == rows,
              "alae_fast_C (CPU): grad must have shape [", rows, "], got ", grad.sizes());
  const at::Tensor grad_acc = grad.to(at::kDouble).contiguous();
  const double* go = grad_acc.data_ptr<double>();
  at::Tensor out = at::empty_like(grads);
  ALAE_DISPATCH_FLOATS(grads.scalar_type(), "r1_penalty_bwd", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grads.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t n = rows * row_len;
    at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
      // Walk row by row instead of dividing every index by row_len.
      int64_t r = i0 / row_len;
      int64_t i = i0;
      while (i < i1) {
        const int64_t row_end = std::min(i1, (r + 1) * row_len);
        const math_t s = static_cast<math_t>(gamma * go[r]);
        for (; i < row_end; ++i) {
          o[i] = static_cast<scalar_t>(s * static_cast<math_t>(g[i]));
        }
        ++r;
      }
    });
  });
  return out;
}

at::Tensor latent_l2_fwd(const at::Tensor& a, const at::Tensor& b) {
  check_input(a, "a");
  check_input(b, "b");
  check_same(a, "a", b, "b");
  const int64_t n = a.numel();
  TORCH_CHECK(n > 0, "alae_fast_C (CPU): a must not be empty");
  double total = 0.0;
  ALAE_DISPATCH_FLOATS(a.scalar_type(), "latent_l2_fwd", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    total = row_sums(1, n, [&](int64_t, int64_t j) {
      const math_t d = static_cast<math_t>(pa[j]) - static_cast<math_t>(pb[j]);
      return d * d;
    })[0];
  });
  return at::scalar_tensor(total / static_cast<double>(n), a.options());
}

std::tuple<at::Tensor, at::Tensor> latent_l2_bwd(const at::Tensor& grad, const at::Tensor& a,
                                                 const at::Tensor& b) {
  check_input(a, "a");
  check_input(b, "b");
  check_same(a, "a", b, "b");
  const int64_t n = a.numel();
  const double scale = 2.0 * scalar_grad(grad) / static_cast<double>(n);
  at::Tensor grad_a = at::empty_like(a);
  at::Tensor grad_b = at::empty_like(b);
  ALAE_DISPATCH_FLOATS(a.scalar_type(), "latent_l2_bwd", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    scalar_t* ga = grad_a.data_ptr<scalar_t>();
    scalar_t* gb = grad_b.data_ptr<scalar_t>();
    const math_t s = static_cast<math_t>(scale);
    at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const math_t g = s * (static_cast<math_t>(pa[i]) - static_cast<math_t>(pb[i]));
        ga[i] = static_cast<scalar_t>(g);
        gb[i] = static_cast<scalar_t>(-g);
      }
    });
  });
  return {grad_a, grad_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(alae_fast_C, CPU, m) {
  m.impl("d_adv_loss_fwd", &d_adv_loss_fwd);
  m.impl("d_adv_loss_bwd", &d_adv_loss_bwd);
  m.impl("g_adv_loss_fwd", &g_adv_loss_fwd);
  m.impl("g_adv_loss_bwd", &g_adv_loss_bwd);
  m.impl("r1_penalty_fwd", &r1_penalty_fwd);
  m.impl("r1_penalty_bwd", &r1_penalty_bwd);
  m.impl("latent_l2_fwd", &latent_l2_fwd);
  m.impl("latent_l2_bwd", &latent_l2_bwd);
}

}  // namespace alae_fast
