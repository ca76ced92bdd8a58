// Helpers shared by the CPU layer kernels (bias_act, blur, linear_act, lreq_adam): argument
// checks, AVX2 code selection, and float16/bfloat16 <-> float conversion of small blocks.
//
// The kernels are written as plain loops over contiguous arrays of the accumulation type and
// compiled twice: once for the baseline target and once inlined into a function compiled for
// AVX2 (with_avx2), which GCC then vectorises 8 floats wide. The AVX2 copy runs only where the
// CPU has it. float16 and bfloat16 data are converted to float in blocks of kBlock elements
// so the same float loops serve every dtype.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <bit>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#define ALAE_LAYER_X86 1
#include <immintrin.h>
#define ALAE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define ALAE_TARGET_AVX2
#endif

// Inlining the loop bodies into the AVX2 caller is what makes them AVX2 code.
#define ALAE_INLINE inline __attribute__((always_inline))
// The same for a lambda: [&](auto isa) ALAE_INLINE_LAMBDA { ... }.
#define ALAE_INLINE_LAMBDA __attribute__((always_inline))

namespace alae_fast {
namespace layer {

// Accumulation type: double for double, float for float, float16 and bfloat16.
template <typename scalar_t>
using acc_t = at::opmath_type<scalar_t>;

// Elements per converted block of a float16/bfloat16 array (two blocks fit in L1 easily).
constexpr int64_t kBlock = 256;
// Elements per task of the element-wise kernels: below this a kernel runs on one thread.
constexpr int64_t kGrain = 32768;

inline bool cpu_has_avx2() {
#ifdef ALAE_LAYER_X86
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

// Runs f() with its (always-inlined) body compiled for AVX2.
template <typename F>
ALAE_TARGET_AVX2 void with_avx2(const F& f) {
  f();
}

// Calls body(std::true_type{}) compiled for AVX2 where the CPU has it, else
// body(std::false_type{}); the flag tells the body which conversion routines it may use.
template <typename Body>
ALAE_INLINE void dispatch_isa(const Body& body) {
#ifdef ALAE_LAYER_X86
  if (cpu_has_avx2()) {
    with_avx2([&]() ALAE_INLINE_LAMBDA { body(std::true_type{}); });
    return;
  }
#endif
  body(std::false_type{});
}

#ifdef ALAE_LAYER_X86
ALAE_TARGET_AVX2 inline void half_to_float_avx2(const at::Half* src, float* dst, int64_t n) {
  const auto* s = reinterpret_cast<const uint16_t*>(src);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + j));
    _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(h));
  }
  for (; j < n; ++j) {
    dst[j] = _cvtsh_ss(s[j]);
  }
}

ALAE_TARGET_AVX2 inline void float_to_half_avx2(const float* src, at::Half* dst, int64_t n) {
  auto* d = reinterpret_cast<uint16_t*>(dst);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + j), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + j), h);
  }
  for (; j < n; ++j) {
    d[j] = _cvtss_sh(src[j], _MM_FROUND_TO_NEAREST_INT);
  }
}
#endif

// dst[j] = float(src[j]); the AVX2 flag picks the F16C instructions for float16.
template <bool kAvx2>
ALAE_INLINE void to_acc(const at::Half* src, float* dst, int64_t n) {
#ifdef ALAE_LAYER_X86
  if constexpr (kAvx2) {
    half_to_float_avx2(src, dst, n);
    return;
  }
#endif
  for (int64_t j = 0; j < n; ++j) {
    dst[j] = static_cast<float>(src[j]);
  }
}

template <bool kAvx2>
ALAE_INLINE void to_acc(const at::BFloat16* src, float* dst, int64_t n) {
  // bfloat16 is the top half of a float: a shift, which vectorises.
  const auto* s = reinterpret_cast<const uint16_t*>(src);
  for (int64_t j = 0; j < n; ++j) {
    dst[j] = std::bit_cast<float>(static_cast<uint32_t>(s[j]) << 16);
  }
}

template <bool kAvx2>
ALAE_INLINE void from_acc(const float* src, at::Half* dst, int64_t n) {
#ifdef ALAE_LAYER_X86
  if constexpr (kAvx2) {
    float_to_half_avx2(src, dst, n);
    return;
  }
#endif
  for (int64_t j = 0; j < n; ++j) {
    dst[j] = static_cast<at::Half>(src[j]);
  }
}

template <bool kAvx2>
ALAE_INLINE void from_acc(const float* src, at::BFloat16* dst, int64_t n) {
  // Round to nearest even, NaN to the quiet NaN 0x7FC0: c10::BFloat16's rounding, branch-free.
  auto* d = reinterpret_cast<uint16_t*>(dst);
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t u = std::bit_cast<uint32_t>(src[j]);
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    d[j] = static_cast<uint16_t>(src[j] != src[j] ? 0x7FC0u : rounded);
  }
}

template <typename scalar_t>
constexpr bool is_reduced() {
  return std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>;
}

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

inline void check_cpu_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), op, " (CPU): ", name, " must be a CPU tensor, got ",
              t.device());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, " (CPU): ", name,
              " must be a floating-point tensor, got ", t.scalar_type());
}

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* op,
                             const char* b_name) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, " (CPU): ", b_name, " must have dtype ",
              a.scalar_type(), ", got ", b.scalar_type());
}

// True for a 4-D tensor laid out channels_last that is not also plain contiguous.
inline bool is_channels_last_only(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() &&
         t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

#define ALAE_LAYER_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

}  // namespace layer
}  // namespace alae_fast
