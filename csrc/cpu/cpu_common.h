// Helpers shared by every CPU kernel of csrc/cpu/: AVX2 code selection, the dtype dispatch,
// float16/bfloat16 <-> float conversion of arrays, and the common argument checks.
//
// AVX2 code is plain C++ compiled for the AVX2 + FMA + F16C target: either a function marked
// ALAE_TARGET_AVX2 (or ALAE_ROWS_AVX2), or always-inlined loops called through dispatch_isa,
// which compiles its body twice (AVX2, baseline) and runs the AVX2 copy only where the CPU
// has it.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <bit>
#include <cstdint>
#include <type_traits>

#include "csrc/op_check.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define ALAE_CPU_X86 1
#include <immintrin.h>
#define ALAE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define ALAE_TARGET_AVX2
#endif

#if defined(__GNUC__)
// Inlining the loop bodies into the AVX2 caller is what makes them AVX2 code.
#define ALAE_INLINE inline __attribute__((always_inline))
// The same for a lambda: [&](auto isa) ALAE_INLINE_LAMBDA { ... }.
#define ALAE_INLINE_LAMBDA __attribute__((always_inline))
// A function whose calls are all inlined (with their lambdas), so that they take its target.
#define ALAE_ROWS __attribute__((flatten))
#else
#define ALAE_INLINE inline
#define ALAE_INLINE_LAMBDA
#define ALAE_ROWS
#endif
#ifdef ALAE_CPU_X86
#define ALAE_ROWS_AVX2 __attribute__((target("avx2,fma,f16c"), flatten))
#endif

// The dtypes of every CPU kernel: float32, float64, float16 and bfloat16.
#define ALAE_DISPATCH_FLOATS(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

namespace alae_fast {
namespace cpu {

// Accumulation type: double for double, float for float, float16 and bfloat16.
template <typename scalar_t>
using acc_t = at::opmath_type<scalar_t>;

template <typename scalar_t>
constexpr bool is_reduced() {
  return std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>;
}

// True where the CPU runs the ALAE_TARGET_AVX2 code.
inline bool cpu_has_avx2() {
#ifdef ALAE_CPU_X86
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
#ifdef ALAE_CPU_X86
  if (cpu_has_avx2()) {
    with_avx2([&]() ALAE_INLINE_LAMBDA { body(std::true_type{}); });
    return;
  }
#endif
  body(std::false_type{});
}

#ifdef ALAE_CPU_X86
// float16 <-> float with the F16C instructions (c10::Half converts one value at a time with
// integer code); both round to nearest even, like c10::Half.
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
#ifdef ALAE_CPU_X86
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
#ifdef ALAE_CPU_X86
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

// to_acc / from_acc with the instructions picked at run time.
template <typename scalar_t>
inline void to_float(const scalar_t* src, float* dst, int64_t n) {
  if (cpu_has_avx2()) {
    to_acc<true>(src, dst, n);
  } else {
    to_acc<false>(src, dst, n);
  }
}

template <typename scalar_t>
inline void from_float(const float* src, scalar_t* dst, int64_t n) {
  if (cpu_has_avx2()) {
    from_acc<true>(src, dst, n);
  } else {
    from_acc<false>(src, dst, n);
  }
}

// t: a CPU tensor of a floating-point dtype.
inline void check_cpu_float(const at::Tensor& t, const char* op, const char* name) {
  ALAE_CHECK_CPU(t.device().is_cpu(), op, name, " must be a CPU tensor, got ", t.device());
  ALAE_CHECK_CPU(at::isFloatingType(t.scalar_type()), op, name,
                 " must be a floating-point tensor, got ", t.scalar_type());
}

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* op,
                             const char* b_name) {
  ALAE_CHECK_CPU(a.scalar_type() == b.scalar_type(), op, b_name, " must have dtype ",
                 a.scalar_type(), ", got ", b.scalar_type());
}

}  // namespace cpu
}  // namespace alae_fast
