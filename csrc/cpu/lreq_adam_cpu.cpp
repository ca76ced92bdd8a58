// CPU kernel of lreq_adam_step_: the Adam (beta1 = 0) update of every parameter in one call,
// bit-identical to the PyTorch op sequence of the reference optimizer:
//   g = grad (+ wd * p);  v.mul_(beta2).addcmul_(g, g, value=1 - beta2);
//   denom = v.sqrt().add_(eps);  p.addcdiv_(g, denom, value=-step)
//
// What "bit-identical" takes, as measured against torch's CPU kernels (x86, AVX2/AVX512):
// - addcmul_ is computed as fma(value * g, g, v) (the compiler fuses it in torch), and
//   add(p, alpha=wd) as fma(p, wd, g); so those two use FMA here too, explicitly. No other step
//   has a product feeding an addition, so nothing else can be fused.
// - float32/float64 scalars are rounded to the tensor dtype. For float16/bfloat16 tensors
//   each op computes in float and rounds its result to the tensor dtype (v after mul_ and
//   after addcmul_, denom after sqrt and after add_, p after addcdiv_); beta2, 1 - beta2 and
//   -step are used as floats, but eps and wd are rounded to the tensor dtype first (torch's
//   add_(scalar) and add(alpha=) do that, mul_ and the value of addcmul_/addcdiv_ do not).
// - sqrt: float32/float64 use torch's own CPU sqrt kernel (see adam_range_full); float16 and
//   bfloat16 the correctly rounded float sqrt, as torch does.
// The tensors are seen as one concatenated range split into equal parallel tasks.
#include "csrc/cpu/layer_common.h"

#include <ATen/Parallel.h>
#include <ATen/ops/sqrt_cpu_dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace alae_fast {
namespace {

using namespace layer;

// Elements per call of torch's sqrt_ (float32/float64): long enough that the call overhead
// is small, short enough that the block stays in L2 between the passes.
constexpr int64_t kSqrtBlock = 16384;

// Per-call constants, already rounded as torch rounds them.
template <typename acc>
struct AdamScalars {
  acc beta2;
  acc one_minus_beta2;
  acc eps;
  acc weight_decay;
  bool has_weight_decay;
};

// Rounds a float to the tensor dtype and back (identity for float and double).
template <typename scalar_t, typename acc>
inline acc round_to(acc v) {
  return static_cast<acc>(static_cast<scalar_t>(v));
}

// g[j] with the weight decay applied, as torch's grad.add(p, alpha=wd) computes it.
template <typename scalar_t>
inline acc_t<scalar_t> decayed_grad(const scalar_t* p, const scalar_t* g, int64_t j,
                                    const AdamScalars<acc_t<scalar_t>>& s) {
  using acc = acc_t<scalar_t>;
  const acc gj = static_cast<acc>(g[j]);
  return s.has_weight_decay
             ? round_to<scalar_t>(std::fma(static_cast<acc>(p[j]), s.weight_decay, gj))
             : gj;
}

// v.mul_(beta2).addcmul_(g, g, value=1 - beta2) on element j; returns the new v.
template <typename scalar_t>
inline acc_t<scalar_t> update_v(const scalar_t* p, const scalar_t* g, scalar_t* v, int64_t j,
                                const AdamScalars<acc_t<scalar_t>>& s) {
  using acc = acc_t<scalar_t>;
  const acc gj = decayed_grad(p, g, j, s);
  acc vj = round_to<scalar_t>(static_cast<acc>(v[j]) * s.beta2);
  vj = round_to<scalar_t>(std::fma(s.one_minus_beta2 * gj, gj, vj));
  v[j] = static_cast<scalar_t>(vj);
  return vj;
}

// p.addcdiv_(g, root + eps, value=-step) on element j, root = sqrt(v) as torch rounds it.
template <typename scalar_t>
inline void update_p(scalar_t* p, const scalar_t* g, int64_t j, acc_t<scalar_t> root,
                     const AdamScalars<acc_t<scalar_t>>& s, acc_t<scalar_t> neg_step) {
  using acc = acc_t<scalar_t>;
  const acc gj = decayed_grad(p, g, j, s);
  const acc denom = round_to<scalar_t>(root + s.eps);
  p[j] = static_cast<scalar_t>(static_cast<acc>(p[j]) + (neg_step * gj) / denom);
}

#ifdef ALAE_CPU_X86
// float16/bfloat16 rounding of 8 floats (to the nearest even, as static_cast does), kept as
// floats.
ALAE_TARGET_AVX2 inline __m256 round_half8(__m256 x) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
}

ALAE_TARGET_AVX2 inline __m256 round_bf16_8(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_andnot_si256(
      _mm256_set1_epi32(0xFFFF),
      _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))));
  // NaN stays NaN (quiet, as c10::BFloat16 makes it).
  const __m256 is_nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  return _mm256_blendv_ps(_mm256_castsi256_ps(rounded),
                          _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)), is_nan);
}

template <typename scalar_t>
ALAE_TARGET_AVX2 inline __m256 round8(__m256 x) {
  if constexpr (std::is_same_v<scalar_t, at::Half>) {
    return round_half8(x);
  } else {
    return round_bf16_8(x);
  }
}

template <typename scalar_t>
ALAE_TARGET_AVX2 inline __m256 load8(const scalar_t* src) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  if constexpr (std::is_same_v<scalar_t, at::Half>) {
    return _mm256_cvtph_ps(raw);
  } else {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
}

// Stores 8 floats that are already exactly representable in scalar_t.
template <typename scalar_t>
ALAE_TARGET_AVX2 inline void store8(scalar_t* dst, __m256 x) {
  __m128i packed;
  if constexpr (std::is_same_v<scalar_t, at::Half>) {
    packed = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
  } else {
    const __m256i top = _mm256_srli_epi32(_mm256_castps_si256(x), 16);
    packed = _mm_packus_epi32(_mm256_castsi256_si128(top), _mm256_extracti128_si256(top, 1));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), packed);
}

// The whole update of float16/bfloat16 elements, 8 at a time in float. Their sqrt is the
// correctly rounded one (torch computes it in float and rounds to the dtype).
template <typename scalar_t>
ALAE_TARGET_AVX2 void adam_reduced_avx2(scalar_t* p, const scalar_t* g, scalar_t* v, int64_t n,
                                        const AdamScalars<float>& s, float neg_step) {
  const __m256 beta2 = _mm256_set1_ps(s.beta2), omb2 = _mm256_set1_ps(s.one_minus_beta2);
  const __m256 eps = _mm256_set1_ps(s.eps), wd = _mm256_set1_ps(s.weight_decay);
  const __m256 ns = _mm256_set1_ps(neg_step);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 pj = load8(p + j);
    __m256 gj = load8(g + j);
    if (s.has_weight_decay) {
      gj = round8<scalar_t>(_mm256_fmadd_ps(pj, wd, gj));
    }
    __m256 vj = round8<scalar_t>(_mm256_mul_ps(load8(v + j), beta2));
    vj = round8<scalar_t>(_mm256_fmadd_ps(_mm256_mul_ps(omb2, gj), gj, vj));
    store8(v + j, vj);
    const __m256 root = round8<scalar_t>(_mm256_sqrt_ps(vj));
    const __m256 denom = round8<scalar_t>(_mm256_add_ps(root, eps));
    const __m256 step = _mm256_div_ps(_mm256_mul_ps(ns, gj), denom);
    store8(p + j, round8<scalar_t>(_mm256_add_ps(pj, step)));
  }
  for (; j < n; ++j) {
    update_p(p, g, j, round_to<scalar_t>(std::sqrt(update_v(p, g, v, j, s))), s, neg_step);
  }
}

// 256-bit vectors of T = float (8 lanes) or double (4 lanes) for the float32/float64 passes.
template <typename T>
ALAE_TARGET_AVX2 inline auto avx2_zero() {
  if constexpr (std::is_same_v<T, float>) {
    return _mm256_setzero_ps();
  } else {
    return _mm256_setzero_pd();
  }
}

template <typename T>
struct Avx2Vec {
  static constexpr bool kFloat = std::is_same_v<T, float>;
  using V = decltype(avx2_zero<T>());  // __m256 or __m256d (their attributes kept)
  static constexpr int kWidth = kFloat ? 8 : 4;
  static ALAE_INLINE ALAE_TARGET_AVX2 V set1(T x) {
    if constexpr (kFloat) return _mm256_set1_ps(x); else return _mm256_set1_pd(x);
  }
  static ALAE_INLINE ALAE_TARGET_AVX2 V load(const T* p) {
    if constexpr (kFloat) return _mm256_loadu_ps(p); else return _mm256_loadu_pd(p);
  }
  static ALAE_INLINE ALAE_TARGET_AVX2 void store(T* p, V x) {
    if constexpr (kFloat) _mm256_storeu_ps(p, x); else _mm256_storeu_pd(p, x);
  }
  static ALAE_INLINE ALAE_TARGET_AVX2 V add(V a, V b) {
    if constexpr (kFloat) return _mm256_add_ps(a, b); else return _mm256_add_pd(a, b);
  }
  static ALAE_INLINE ALAE_TARGET_AVX2 V mul(V a, V b) {
    if constexpr (kFloat) return _mm256_mul_ps(a, b); else return _mm256_mul_pd(a, b);
  }
  static ALAE_INLINE ALAE_TARGET_AVX2 V div(V a, V b) {
    if constexpr (kFloat) return _mm256_div_ps(a, b); else return _mm256_div_pd(a, b);
  }
  static ALAE_INLINE ALAE_TARGET_AVX2 V fmadd(V a, V b, V c) {
    if constexpr (kFloat) return _mm256_fmadd_ps(a, b, c); else return _mm256_fmadd_pd(a, b, c);
  }
};

// First pass of a float32/float64 block: new v into v and into out (whose sqrt is taken next).
template <typename T>
ALAE_TARGET_AVX2 void update_v_avx2(const T* p, const T* g, T* v, T* out, int64_t n,
                                    const AdamScalars<T>& s) {
  using A = Avx2Vec<T>;
  const auto beta2 = A::set1(s.beta2), omb2 = A::set1(s.one_minus_beta2);
  const auto wd = A::set1(s.weight_decay);
  int64_t j = 0;
  for (; j + A::kWidth <= n; j += A::kWidth) {
    auto gj = A::load(g + j);
    if (s.has_weight_decay) {
      gj = A::fmadd(A::load(p + j), wd, gj);
    }
    const auto vj = A::fmadd(A::mul(omb2, gj), gj, A::mul(A::load(v + j), beta2));
    A::store(v + j, vj);
    A::store(out + j, vj);
  }
  for (; j < n; ++j) {
    out[j] = update_v(p, g, v, j, s);
  }
}

// Last pass of a float32/float64 block, given root = torch's sqrt(v).
template <typename T>
ALAE_TARGET_AVX2 void update_p_avx2(T* p, const T* g, const T* root, int64_t n,
                                    const AdamScalars<T>& s, T neg_step) {
  using A = Avx2Vec<T>;
  const auto eps = A::set1(s.eps), wd = A::set1(s.weight_decay);
  const auto ns = A::set1(neg_step);
  int64_t j = 0;
  for (; j + A::kWidth <= n; j += A::kWidth) {
    const auto pj = A::load(p + j);
    auto gj = A::load(g + j);
    if (s.has_weight_decay) {
      gj = A::fmadd(pj, wd, gj);
    }
    const auto denom = A::add(A::load(root + j), eps);
    A::store(p + j, A::add(pj, A::div(A::mul(ns, gj), denom)));
  }
  for (; j < n; ++j) {
    update_p(p, g, j, root[j], s, neg_step);
  }
}
#endif

// Pointers and step sizes of the tensor lists, with their offsets in the concatenated range.
template <typename scalar_t>
struct AdamLists {
  std::vector<scalar_t*> p, v;
  std::vector<const scalar_t*> g;
  std::vector<acc_t<scalar_t>> neg_step;
  const std::vector<int64_t>* offsets;

  // Calls f(i, off, len) for the pieces of tensors i that make up [begin, end).
  template <typename F>
  void walk(int64_t begin, int64_t end, const F& f) const {
    const std::vector<int64_t>& o = *offsets;
    size_t i = std::upper_bound(o.begin(), o.end(), begin) - o.begin() - 1;
    for (int64_t e = begin; e < end; ++i) {
      const int64_t stop = std::min(end, o[i + 1]);
      f(i, e - o[i], stop - e);
      e = stop;
    }
  }
};

// float16/bfloat16: one pass.
template <typename scalar_t>
void adam_range_reduced(const AdamLists<scalar_t>& L, const AdamScalars<float>& s,
                        int64_t begin, int64_t end) {
  L.walk(begin, end, [&](size_t i, int64_t off, int64_t n) {
    scalar_t* p = L.p[i] + off;
    const scalar_t* g = L.g[i] + off;
    scalar_t* v = L.v[i] + off;
#ifdef ALAE_CPU_X86
    if (cpu_has_avx2()) {
      adam_reduced_avx2(p, g, v, n, s, L.neg_step[i]);
      return;
    }
#endif
    for (int64_t j = 0; j < n; ++j) {
      update_p(p, g, j, round_to<scalar_t>(std::sqrt(update_v(p, g, v, j, s))), s,
               L.neg_step[i]);
    }
  });
}

// float32/float64: torch's CPU sqrt goes through MKL's vector sqrt (VML_HA), which is not
// always correctly rounded (up to 0.75 ulp off; ~20% of float32 results differ from the
// correctly rounded ones); to match it bit for bit this calls torch's own sqrt kernel on the
// new v of each block (a copy gathered from all the tensors of the block, so small tensors
// share one call).
template <typename scalar_t>
void adam_range_full(const AdamLists<scalar_t>& L, const AdamScalars<scalar_t>& s,
                     int64_t begin, int64_t end) {
  std::vector<scalar_t> roots(std::min(kSqrtBlock, end - begin));
  const at::Tensor roots_t =
      at::from_blob(roots.data(), {static_cast<int64_t>(roots.size())},
                    at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value));
  const bool avx2 = cpu_has_avx2();
  for (int64_t b0 = begin; b0 < end; b0 += kSqrtBlock) {
    const int64_t b1 = std::min(end, b0 + kSqrtBlock);
    L.walk(b0, b1, [&](size_t i, int64_t off, int64_t n) {
      scalar_t* out = roots.data() + (L.offsets->at(i) + off - b0);
#ifdef ALAE_CPU_X86
      if (avx2) {
        update_v_avx2(L.p[i] + off, L.g[i] + off, L.v[i] + off, out, n, s);
        return;
      }
#endif
      for (int64_t j = 0; j < n; ++j) {
        out[j] = update_v(L.p[i] + off, L.g[i] + off, L.v[i] + off, j, s);
      }
    });
    at::Tensor block_roots = roots_t.narrow(0, 0, b1 - b0);
    at::cpu::sqrt_(block_roots);  // the CPU kernel itself, without a trip through the dispatcher
    L.walk(b0, b1, [&](size_t i, int64_t off, int64_t n) {
      const scalar_t* root = roots.data() + (L.offsets->at(i) + off - b0);
#ifdef ALAE_CPU_X86
      if (avx2) {
        update_p_avx2(L.p[i] + off, L.g[i] + off, root, n, s, L.neg_step[i]);
        return;
      }
#endif
      for (int64_t j = 0; j < n; ++j) {
        update_p(L.p[i] + off, L.g[i] + off, j, root[j], s, L.neg_step[i]);
      }
    });
  }
}

template <typename scalar_t>
void adam_range(const AdamLists<scalar_t>& L, const AdamScalars<acc_t<scalar_t>>& s,
                int64_t begin, int64_t end) {
  if constexpr (is_reduced<scalar_t>()) {
    adam_range_reduced(L, s, begin, end);
  } else {
    adam_range_full(L, s, begin, end);
  }
}

void lreq_adam_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avg_sqs,
                     at::ArrayRef<double> step_sizes, double beta2, double eps,
                     double weight_decay) {
  constexpr const char* op = "lreq_adam_step_";
  const size_t count = params.size();
  ALAE_CHECK_CPU(grads.size() == count && exp_avg_sqs.size() == count &&
                     step_sizes.size() == count,
                 op, "params, grads, exp_avg_sqs and step_sizes must have equal lengths, got ",
                 count, ", ", grads.size(), ", ", exp_avg_sqs.size(), " and ", step_sizes.size());
  if (count == 0) {
    return;
  }
  const at::ScalarType dtype = params[0].scalar_type();
  std::vector<int64_t> offsets(count + 1, 0);
  for (size_t i = 0; i < count; ++i) {
    const at::Tensor* lists[3] = {&params[i], &grads[i], &exp_avg_sqs[i]};
    const char* names[3] = {"params", "grads", "exp_avg_sqs"};
    for (int k = 0; k < 3; ++k) {
      const at::Tensor& t = *lists[k];
      ALAE_CHECK_CPU(t.defined() && t.device().is_cpu() && t.is_contiguous(), op,
                     names[k], "[", i, "] must be a contiguous CPU tensor");
      ALAE_CHECK_CPU(t.scalar_type() == dtype, op, names[k], "[", i, "] must have dtype ",
                     dtype, " like params[0], got ", t.scalar_type());
      ALAE_CHECK_CPU(t.sizes() == params[i].sizes(), op, names[k], "[", i,
                     "] must have the shape of params[", i, "], ", params[i].sizes(), ", got ",
                     t.sizes());
    }
    offsets[i + 1] = offsets[i] + params[i].numel();
  }
  ALAE_CHECK_CPU(at::isFloatingType(dtype), op, "params must be floating-point, got ", dtype);
  ALAE_DISPATCH_FLOATS(dtype, op, [&] {
    using acc = acc_t<scalar_t>;
    // float32/float64 round the scalars to the dtype; for float16/bfloat16 mul_ and the
    // value of addcmul_/addcdiv_ stay float, while add_'s scalar (eps) and add's alpha (wd)
    // are rounded to the tensor dtype (so eps = 1e-8 is 0 in float16).
    const AdamScalars<acc> s{static_cast<acc>(beta2), static_cast<acc>(1.0 - beta2),
                             round_to<scalar_t>(static_cast<acc>(eps)),
                             round_to<scalar_t>(static_cast<acc>(weight_decay)),
                             weight_decay != 0.0};
    AdamLists<scalar_t> L;
    L.p.resize(count);
    L.g.resize(count);
    L.v.resize(count);
    L.neg_step.resize(count);
    L.offsets = &offsets;
    for (size_t i = 0; i < count; ++i) {
      L.p[i] = params[i].data_ptr<scalar_t>();
      L.g[i] = grads[i].data_ptr<scalar_t>();
      L.v[i] = exp_avg_sqs[i].data_ptr<scalar_t>();
      L.neg_step[i] = static_cast<acc>(-step_sizes[i]);
    }
    at::parallel_for(0, offsets[count], kGrain, [&](int64_t begin, int64_t end) {
      adam_range(L, s, begin, end);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(alae_fast_C, CPU, m) {
  m.impl("lreq_adam_step_", &lreq_adam_step_);
}

}  // namespace alae_fast
