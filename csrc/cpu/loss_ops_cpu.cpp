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

#include "csrc/cpu/cpu_common.h"

#ifdef ALAE_CPU_X86
// AVX2 code lives in functions compiled for that target and runs only where the CPU has it.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
extern "C" {
// Vectorised exp and log1p (1-ulp SLEEF routines) that libtorch_cpu exports.
__m256 Sleef_expf8_u10(__m256);
__m256 Sleef_log1pf8_u10(__m256);
}
#pragma GCC pop_options
#endif

namespace alae_fast {
namespace {

using cpu::cpu_has_avx2;

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

// Float elements summed in float lanes before the lane totals go to a double: short enough
// that the float rounding stays far below the 1e-5 parity tolerance.
constexpr int64_t kFloatBlock = 1024;

// sums[r] = sum over j < row_len of row r, in double. chunk_sum(r, begin, end) adds one chunk.
template <typename ChunkSum>
std::vector<double> row_sums(int64_t rows, int64_t row_len, const ChunkSum& chunk_sum) {
  const int64_t chunks_per_row = std::max<int64_t>(1, (row_len + kChunk - 1) / kChunk);
  std::vector<double> partial(rows * chunks_per_row, 0.0);
  at::parallel_for(0, rows * chunks_per_row, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t begin = (t % chunks_per_row) * kChunk;
      partial[t] = chunk_sum(t / chunks_per_row, begin, std::min(row_len, begin + kChunk));
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

// Generic chunk sum of term(j), kLanes independent double accumulators.
template <typename Term>
double lane_sum(int64_t begin, int64_t end, const Term& term) {
  double lane[kLanes] = {};
  int64_t j = begin;
  for (; j + kLanes <= end; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      lane[k] += static_cast<double>(term(j + k));
    }
  }
  for (; j < end; ++j) {
    lane[0] += static_cast<double>(term(j));
  }
  double s = 0.0;
  for (int k = 0; k < kLanes; ++k) {
    s += lane[k];
  }
  return s;
}

// sum over [begin, end) of (a[j] - b[j])^2 (kDiff) or of a[j]^2: float lanes the compiler
// vectorises, flushed to double every kFloatBlock elements.
template <bool kDiff>
double float_sum_sq_generic(const float* a, const float* b, int64_t begin, int64_t end) {
  double total = 0.0;
  for (int64_t block = begin; block < end; block += kFloatBlock) {
    const int64_t stop = std::min(end, block + kFloatBlock);
    float lane[kLanes] = {};
    int64_t j = block;
    for (; j + kLanes <= stop; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const float d = kDiff ? a[j + k] - b[j + k] : a[j + k];
        lane[k] += d * d;
      }
    }
    for (; j < stop; ++j) {
      const float d = kDiff ? a[j] - b[j] : a[j];
      lane[0] += d * d;
    }
    for (int k = 0; k < kLanes; ++k) {
      total += lane[k];
    }
  }
  return total;
}

#ifdef ALAE_CPU_X86
// AVX2 version: four 8-float FMA accumulators (independent, so the adds pipeline).
template <bool kDiff>
ALAE_TARGET_AVX2 double float_sum_sq_avx2(const float* a, const float* b, int64_t begin,
                                           int64_t end) {
  double total = 0.0;
  for (int64_t block = begin; block < end; block += kFloatBlock) {
    const int64_t stop = std::min(end, block + kFloatBlock);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t j = block;
    for (; j + 32 <= stop; j += 32) {
      for (int k = 0; k < 4; ++k) {
        __m256 d = _mm256_loadu_ps(a + j + 8 * k);
        if (kDiff) {
          d = _mm256_sub_ps(d, _mm256_loadu_ps(b + j + 8 * k));
        }
        acc[k] = _mm256_fmadd_ps(d, d, acc[k]);
      }
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]),
                                         _mm256_add_ps(acc[2], acc[3])));
    for (int k = 0; k < 8; ++k) {
      total += lanes[k];
    }
    for (; j < stop; ++j) {
      const float d = kDiff ? a[j] - b[j] : a[j];
      total += d * d;
    }
  }
  return total;
}

ALAE_TARGET_AVX2 inline __m256 softplus8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 neg_abs = _mm256_or_ps(x, sign);  // -|x|
  return _mm256_add_ps(_mm256_max_ps(x, _mm256_setzero_ps()),
                       Sleef_log1pf8_u10(Sleef_expf8_u10(neg_abs)));
}

// sum over [begin, end) of softplus(sx * x[j]) (+ softplus(sy * y[j]) when y is not null).
ALAE_TARGET_AVX2 double softplus_sum_avx2(const float* x, float sx, const float* y, float sy,
                                           int64_t begin, int64_t end) {
  double total = 0.0;
  const __m256 vsx = _mm256_set1_ps(sx), vsy = _mm256_set1_ps(sy);
  for (int64_t block = begin; block < end; block += kFloatBlock) {
    const int64_t stop = std::min(end, block + kFloatBlock);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = block;
    for (; j + 8 <= stop; j += 8) {
      acc = _mm256_add_ps(acc, softplus8(_mm256_mul_ps(vsx, _mm256_loadu_ps(x + j))));
      if (y) {
        acc = _mm256_add_ps(acc, softplus8(_mm256_mul_ps(vsy, _mm256_loadu_ps(y + j))));
      }
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (int k = 0; k < 8; ++k) {
      total += lanes[k];
    }
    for (; j < stop; ++j) {
      total += softplus<float>(sx * x[j]) + (y ? softplus<float>(sy * y[j]) : 0.0f);
    }
  }
  return total;
}

// out[j] = scale * sigmoid(s * x[j]) for j in [begin, end).
ALAE_TARGET_AVX2 void scaled_sigmoid_avx2(const float* x, float s, float scale, float* out,
                                         int64_t begin, int64_t end) {
  const __m256 vs = _mm256_set1_ps(s), vscale = _mm256_set1_ps(scale);
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  int64_t j = begin;
  for (; j + 8 <= end; j += 8) {
    const __m256 v = _mm256_mul_ps(vs, _mm256_loadu_ps(x + j));
    const __m256 e = Sleef_expf8_u10(_mm256_or_ps(v, sign));  // exp(-|v|) in (0, 1]
    const __m256 positive = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ);
    const __m256 num = _mm256_blendv_ps(e, one, positive);
    _mm256_storeu_ps(out + j, _mm256_mul_ps(vscale, _mm256_div_ps(num, _mm256_add_ps(one, e))));
  }
  for (; j < end; ++j) {
    out[j] = scale * sigmoid<float>(s * x[j]);
  }
}
#endif

// sum over [begin, end) of softplus(sx * x[j]) (+ softplus(sy * y[j])): AVX2 for float32
// where the CPU has it, scalar otherwise.
template <typename scalar_t>
double softplus_sum(const scalar_t* x, float sx, const scalar_t* y, float sy, int64_t begin,
                    int64_t end) {
  using math_t = at::opmath_type<scalar_t>;
#ifdef ALAE_CPU_X86
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (cpu_has_avx2()) {
      return softplus_sum_avx2(x, sx, y, sy, begin, end);
    }
  }
#endif
  return lane_sum(begin, end, [&](int64_t j) {
    math_t v = softplus<math_t>(static_cast<math_t>(sx) * static_cast<math_t>(x[j]));
    if (y) {
      v += softplus<math_t>(static_cast<math_t>(sy) * static_cast<math_t>(y[j]));
    }
    return v;
  });
}

// out[j] = scale * sigmoid(s * x[j]) over [begin, end).
template <typename scalar_t>
void scaled_sigmoid(const scalar_t* x, float s, double scale, scalar_t* out, int64_t begin,
                    int64_t end) {
  using math_t = at::opmath_type<scalar_t>;
#ifdef ALAE_CPU_X86
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (cpu_has_avx2()) {
      scaled_sigmoid_avx2(x, s, static_cast<float>(scale), out, begin, end);
      return;
    }
  }
#endif
  const math_t ms = static_cast<math_t>(s), mscale = static_cast<math_t>(scale);
  for (int64_t j = begin; j < end; ++j) {
    out[j] = static_cast<scalar_t>(mscale * sigmoid<math_t>(ms * static_cast<math_t>(x[j])));
  }
}

// sum over [begin, end) of (a[j] - b[j])^2, or a[j]^2 when b is null.
template <typename scalar_t>
double sum_sq(const scalar_t* a, const scalar_t* b, int64_t begin, int64_t end) {
  if constexpr (std::is_same_v<scalar_t, float>) {
#ifdef ALAE_CPU_X86
    if (cpu_has_avx2()) {
      return b ? float_sum_sq_avx2<true>(a, b, begin, end)
               : float_sum_sq_avx2<false>(a, b, begin, end);
    }
#endif
    return b ? float_sum_sq_generic<true>(a, b, begin, end)
             : float_sum_sq_generic<false>(a, b, begin, end);
  } else {
    using math_t = at::opmath_type<scalar_t>;
    return lane_sum(begin, end, [&](int64_t j) {
      const math_t d = b ? static_cast<math_t>(a[j]) - static_cast<math_t>(b[j])
                         : static_cast<math_t>(a[j]);
      return d * d;
    });
  }
}

void check_input(const at::Tensor& t, const char* name) {
  ALAE_CHECK_CPU(t.device().is_cpu(), "alae_fast_C", name, " must be a CPU tensor, got ",
                 t.device());
  ALAE_CHECK_CPU(t.is_contiguous(), "alae_fast_C", name, " must be contiguous");
  ALAE_CHECK_CPU(at::isFloatingType(t.scalar_type()), "alae_fast_C", name,
                 " must be a floating-point tensor, got ", t.scalar_type());
}

void check_same(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  ALAE_CHECK_CPU(a.sizes() == b.sizes(), "alae_fast_C", a_name, " and ", b_name,
                 " must have the same shape, got ", a.sizes(), " and ", b.sizes());
  ALAE_CHECK_CPU(a.scalar_type() == b.scalar_type(), "alae_fast_C", a_name, " and ",
                 b_name, " must have the same dtype, got ", a.scalar_type(), " and ",
                 b.scalar_type());
}

// The two inputs of a pair loss: checked, of one shape and dtype.
void check_pair(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                const char* b_name) {
  check_input(a, a_name);
  check_input(b, b_name);
  check_same(a, a_name, b, b_name);
}

// The element count of the input of a mean loss, which must not be empty.
int64_t mean_count(const at::Tensor& t, const char* name) {
  const int64_t n = t.numel();
  ALAE_CHECK_CPU(n > 0, "alae_fast_C", name, " must not be empty");
  return n;
}

// sum over [0, n) in fixed chunks: chunk_sum(begin, end) adds one.
template <typename ChunkSum>
double total_sum(int64_t n, const ChunkSum& chunk_sum) {
  return row_sums(1, n, [&](int64_t, int64_t b, int64_t e) { return chunk_sum(b, e); })[0];
}

double scalar_grad(const at::Tensor& grad) {
  ALAE_CHECK_CPU(grad.numel() == 1, "alae_fast_C", "grad must hold one element, got shape ",
                 grad.sizes());
  return grad.to(at::kDouble).item<double>();
}


at::Tensor d_adv_loss_fwd(const at::Tensor& d_fake, const at::Tensor& d_real) {
  check_pair(d_fake, "d_fake", d_real, "d_real");
  const int64_t n = mean_count(d_fake, "d_fake");
  double total = 0.0;
  ALAE_DISPATCH_FLOATS(d_fake.scalar_type(), "d_adv_loss_fwd", [&] {
    const scalar_t* f = d_fake.data_ptr<scalar_t>();
    const scalar_t* r = d_real.data_ptr<scalar_t>();
    total = total_sum(n, [&](int64_t b, int64_t e) {
      return softplus_sum(f, 1.0f, r, -1.0f, b, e);
    });
  });
  return at::scalar_tensor(total / static_cast<double>(n), d_fake.options());
}

std::tuple<at::Tensor, at::Tensor> d_adv_loss_bwd(const at::Tensor& grad, const at::Tensor& d_fake,
                                                  const at::Tensor& d_real) {
  check_pair(d_fake, "d_fake", d_real, "d_real");
  const int64_t n = d_fake.numel();
  const double scale = scalar_grad(grad) / static_cast<double>(n);
  at::Tensor grad_fake = at::empty_like(d_fake);
  at::Tensor grad_real = at::empty_like(d_real);
  ALAE_DISPATCH_FLOATS(d_fake.scalar_type(), "d_adv_loss_bwd", [&] {
    const scalar_t* f = d_fake.data_ptr<scalar_t>();
    const scalar_t* r = d_real.data_ptr<scalar_t>();
    scalar_t* gf = grad_fake.data_ptr<scalar_t>();
    scalar_t* gr = grad_real.data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
      scaled_sigmoid(f, 1.0f, scale, gf, i0, i1);
      scaled_sigmoid(r, -1.0f, -scale, gr, i0, i1);
    });
  });
  return {grad_fake, grad_real};
}

at::Tensor g_adv_loss_fwd(const at::Tensor& d_fake) {
  check_input(d_fake, "d_fake");
  const int64_t n = mean_count(d_fake, "d_fake");
  double total = 0.0;
  ALAE_DISPATCH_FLOATS(d_fake.scalar_type(), "g_adv_loss_fwd", [&] {
    const scalar_t* f = d_fake.data_ptr<scalar_t>();
    total = total_sum(n, [&](int64_t b, int64_t e) {
      return softplus_sum<scalar_t>(f, -1.0f, nullptr, 0.0f, b, e);
    });
  });
  return at::scalar_tensor(total / static_cast<double>(n), d_fake.options());
}

at::Tensor g_adv_loss_bwd(const at::Tensor& grad, const at::Tensor& d_fake) {
  check_input(d_fake, "d_fake");
  const int64_t n = d_fake.numel();
  const double scale = scalar_grad(grad) / static_cast<double>(n);
  at::Tensor grad_fake = at::empty_like(d_fake);
  ALAE_DISPATCH_FLOATS(d_fake.scalar_type(), "g_adv_loss_bwd", [&] {
    const scalar_t* f = d_fake.data_ptr<scalar_t>();
    scalar_t* gf = grad_fake.data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
      scaled_sigmoid(f, -1.0f, -scale, gf, i0, i1);
    });
  });
  return grad_fake;
}

at::Tensor r1_penalty_fwd(const at::Tensor& grads, double gamma) {
  check_input(grads, "grads");
  ALAE_CHECK_CPU(grads.dim() == 2, "alae_fast_C", "grads must be 2-D [N, M], got shape ",
                 grads.sizes());
  const int64_t rows = grads.size(0);
  const int64_t row_len = grads.size(1);
  at::Tensor out = at::empty({rows}, grads.options());
  ALAE_DISPATCH_FLOATS(grads.scalar_type(), "r1_penalty_fwd", [&] {
    const scalar_t* g = grads.data_ptr<scalar_t>();
    const std::vector<double> sums = row_sums(rows, row_len, [&](int64_t r, int64_t b, int64_t e) {
      return sum_sq<scalar_t>(g + r * row_len, nullptr, b, e);
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
  ALAE_CHECK_CPU(grads.dim() == 2, "alae_fast_C", "grads must be 2-D [N, M], got shape ",
                 grads.sizes());
  const int64_t rows = grads.size(0);
  const int64_t row_len = grads.size(1);
  ALAE_CHECK_CPU(grad.dim() == 1 && grad.size(0) == rows, "alae_fast_C", "grad must have shape [",
                 rows, "], got ", grad.sizes());
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
  check_pair(a, "a", b, "b");
  const int64_t n = mean_count(a, "a");
  double total = 0.0;
  ALAE_DISPATCH_FLOATS(a.scalar_type(), "latent_l2_fwd", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    total = total_sum(n, [&](int64_t b, int64_t e) { return sum_sq(pa, pb, b, e); });
  });
  return at::scalar_tensor(total / static_cast<double>(n), a.options());
}

std::tuple<at::Tensor, at::Tensor> latent_l2_bwd(const at::Tensor& grad, const at::Tensor& a,
                                                 const at::Tensor& b) {
  check_pair(a, "a", b, "b");
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
