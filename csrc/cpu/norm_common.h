// Shared pieces of the CPU instance-norm kernels (encode_norm_cpu.cpp, adain_cpu.cpp).
//
// Both ops work on one contiguous (n, c) row of M = H * W elements at a time. The row passes
// below are written once on 32-byte vectors (GCC vector extensions: GCC does not vectorise float
// sums by itself) and are inlined into each op's row functions, which are compiled twice (AVX2 +
// FMA, and the baseline ISA) and picked at run time. Float sums go through two vectors of float
// lanes that are added into a double every kBlock elements. Every result depends only on its
// own row, so nothing depends on the number of threads.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "csrc/cpu/cpu_common.h"

namespace alae_fast {
namespace norm_cpu {

using namespace cpu;

// Vec<T, kBytes>: kBytes of T with element-wise arithmetic, as GCC/Clang vector extensions.
// The row loops use 32 bytes (8 floats, 4 doubles) in their AVX2 version and 16 bytes (SSE,
// NEON) in the baseline one: wider than the hardware, GCC would split comparisons into scalars.
// Other compilers get single elements: the same code then runs on scalars.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // 32-byte vectors never cross a non-inlined call
template <typename T, int kBytes>
struct VecOf {
  typedef T type __attribute__((vector_size(kBytes)));
};
template <typename T, int kBytes>
using Vec = typename VecOf<T, kBytes>::type;
#else
template <typename T, int kBytes>
using Vec = T;
#endif
constexpr int kAvx2Bytes = 32;
constexpr int kBaseBytes = 16;

// Elements whose float lane sums are added into the double totals at once: each float lane then
// adds at most 128 values, far below the float32 parity tolerance.
constexpr int64_t kBlock = 1024;
// Elements per parallel task at least: tiny maps (4x4, 8x8) run on the calling thread.
constexpr int64_t kTaskElems = 16384;

// Rows per parallel task for rows of m elements.
inline int64_t row_grain(int64_t m) {
  return std::max<int64_t>(1, kTaskElems / std::max<int64_t>(1, m));
}

// U is T (one element) or a Vec of T; these work on either.
template <typename U, typename T>
ALAE_INLINE U load(const T* p) {
  if constexpr (std::is_same_v<U, T>) {
    return *p;
  } else {
    U v;
    std::memcpy(&v, p, sizeof(U));
    return v;
  }
}

template <typename U, typename T>
ALAE_INLINE void store(T* p, U v) {
  if constexpr (std::is_same_v<U, T>) {
    *p = v;
  } else {
    std::memcpy(p, &v, sizeof(U));
  }
}

template <typename U, typename T>
ALAE_INLINE U bcast(T s) {
  if constexpr (std::is_same_v<U, T>) {
    return s;
  } else {
    return U{} + s;
  }
}

// t > 0 ? a : b, element-wise.
template <typename U>
ALAE_INLINE U where_pos(U t, U a, U b) {
  return t > U{} ? a : b;
}

template <typename T, typename V>
ALAE_INLINE double hsum(V v) {
  if constexpr (std::is_same_v<V, T>) {
    return static_cast<double>(v);
  } else {
    double s = 0.0;
    for (int k = 0; k < static_cast<int>(sizeof(V) / sizeof(T)); ++k) {
      s += static_cast<double>(v[k]);
    }
    return s;
  }
}

// kSums sums over the row [0, m) (T = float or double): body(j, acc) takes the Vec<T, kBytes>
// at j, or for the tail the single element j, and adds its terms into acc[0 .. kSums). Two
// vectors per step keep two independent adds in flight.
template <int kSums, int kBytes, typename T, typename Body>
ALAE_INLINE std::array<double, kSums> row_sums(int64_t m, const Body& body) {
  using V = Vec<T, kBytes>;
  constexpr int W = static_cast<int>(sizeof(V) / sizeof(T));
  std::array<double, kSums> total{};
  for (int64_t block = 0; block < m; block += kBlock) {
    const int64_t stop = std::min(m, block + kBlock);
    V acc0[kSums] = {}, acc1[kSums] = {};
    T tail[kSums] = {};
    int64_t j = block;
    for (; j + 2 * W <= stop; j += 2 * W) {
      body(j, acc0);
      body(j + W, acc1);
    }
    for (; j + W <= stop; j += W) {
      body(j, acc0);
    }
    for (; j < stop; ++j) {
      body(j, tail);
    }
    for (int s = 0; s < kSums; ++s) {
      total[s] += hsum<T>(acc0[s] + acc1[s]) + static_cast<double>(tail[s]);
    }
  }
  return total;
}

// Element type U of the accumulator pointer a row_sums body receives.
template <typename P>
using Elem = std::remove_cv_t<std::remove_pointer_t<P>>;

// lrelu(t) of the pre-activation t = x + w * noise + b at j (the noise term only when kNoise).
template <bool kNoise, typename U, typename T>
struct PreAct {
  const T* x;
  const T* noise;
  T w, b, alpha;

  ALAE_INLINE U t(int64_t j) const {
    U v = load<U>(x + j);
    if constexpr (kNoise) {
      v += bcast<U>(w) * load<U>(noise + j);
    }
    return v + bcast<U>(b);
  }
  ALAE_INLINE U act(U t) const {
    return where_pos(t, t, bcast<U>(alpha) * t);
  }
};

// a[j] = lrelu(t[j]) for the row; returns its mean by shifted accumulation: with the shift
// s = a[0], mean = s + sum(a - s) / m. A constant row sums exact zeros, so its mean is exactly
// its value and every a - mean is exactly 0 (a plain sum would leave a rounding residue that
// instance norm multiplies by 1 / sqrt(eps)); other rows sum smaller terms.
template <bool kNoise, int kBytes, typename T>
ALAE_INLINE double act_row_mean(const T* x, const T* noise, T w, T b, T alpha,
                                     T* __restrict a, int64_t m) {
  // The same expression as the loop's (scalar and vector code contract to FMA alike).
  const PreAct<kNoise, T, T> pre0{x, noise, w, b, alpha};
  const T s = pre0.act(pre0.t(0));
  const double sum = row_sums<1, kBytes, T>(m, [&](int64_t j, auto* acc) {
    using U = Elem<decltype(acc)>;
    const PreAct<kNoise, U, T> pre{x, noise, w, b, alpha};
    const U v = pre.act(pre.t(j));
    store(a + j, v);
    acc[0] += v - bcast<U>(s);
  })[0];
  return static_cast<double>(s) + sum / static_cast<double>(m);
}

// sum((a[j] - mu)^2) over the row.
template <int kBytes, typename T>
ALAE_INLINE double sq_dev_row(const T* a, T mu, int64_t m) {
  return row_sums<1, kBytes, T>(m, [&](int64_t j, auto* acc) {
    using U = Elem<decltype(acc)>;
    const U d = load<U>(a + j) - bcast<U>(mu);
    acc[0] += d * d;
  })[0];
}

// a[j] = (a[j] - mu) * scale + shift, in place.
template <typename T>
ALAE_INLINE void normalize_row(T* a, T mu, T scale, T shift, int64_t m) {
  for (int64_t j = 0; j < m; ++j) {
    a[j] = (a[j] - mu) * scale + shift;
  }
}

// Backward pass 1: returns (sum(g), sum(g * d)) with d = lrelu(t) - mu recomputed from x.
template <bool kNoise, int kBytes, typename T>
ALAE_INLINE std::array<double, 2> grad_sums_row(const T* g, const T* x, const T* noise, T w,
                                                     T b, T alpha, T mu, int64_t m) {
  return row_sums<2, kBytes, T>(m, [&](int64_t j, auto* acc) {
    using U = Elem<decltype(acc)>;
    const PreAct<kNoise, U, T> pre{x, noise, w, b, alpha};
    const U gj = load<U>(g + j);
    acc[0] += gj;
    acc[1] += gj * (pre.act(pre.t(j)) - bcast<U>(mu));
  });
}

// Backward pass 2: gx[j] = s(t) * (k * g + c0 + c1 * d); returns sum(gx) and, when kNoise,
// sum(gx * noise).
template <bool kNoise, int kBytes, typename T>
ALAE_INLINE std::array<double, kNoise ? 2 : 1> grad_input_row(const T* g, const T* x,
                                                                   const T* noise, T w, T b,
                                                                   T alpha, T mu, T k, T c0,
                                                                   T c1, T* __restrict gx,
                                                                   int64_t m) {
  return row_sums<kNoise ? 2 : 1, kBytes, T>(m, [&](int64_t j, auto* acc) {
    using U = Elem<decltype(acc)>;
    const PreAct<kNoise, U, T> pre{x, noise, w, b, alpha};
    const U t = pre.t(j);
    const U d = pre.act(t) - bcast<U>(mu);
    const U u = bcast<U>(k) * load<U>(g + j) + bcast<U>(c0) + bcast<U>(c1) * d;
    const U v = where_pos(t, u, bcast<U>(alpha) * u);
    store(gx + j, v);
    acc[0] += v;
    if constexpr (kNoise) {
      acc[1] += v * load<U>(noise + j);
    }
  });
}

// Rows as ACC values. float and double rows are used where they lie; a float16/bfloat16 row is
// converted into one of `slots` float buffers of m elements (one set per parallel task).
template <typename scalar_t>
class RowBuffers {
 public:
  using acc_t = at::opmath_type<scalar_t>;
  static constexpr bool kConvert = !std::is_same_v<scalar_t, acc_t>;

  RowBuffers(int64_t m, int slots) : m_(m), data_(kConvert ? m * slots : 0) {}

  // The row at src as acc_t: src itself, or its conversion in buffer `slot`.
  ALAE_INLINE const acc_t* load(int slot, const scalar_t* src) {
    if constexpr (kConvert) {
      acc_t* buf = data_.data() + slot * m_;
      to_float(src, buf, m_);
      return buf;
    } else {
      return src;
    }
  }

  // Where to compute the output row dst: dst itself, or buffer `slot` (then call store).
  ALAE_INLINE acc_t* out(int slot, scalar_t* dst) {
    if constexpr (kConvert) {
      return data_.data() + slot * m_;
    } else {
      return dst;
    }
  }

  // Rounds buffer `slot` into dst (nothing to do for float and double).
  ALAE_INLINE void store(int slot, scalar_t* dst) {
    if constexpr (kConvert) {
      from_float(data_.data() + slot * m_, dst, m_);
    }
  }

 private:
  int64_t m_;
  std::vector<acc_t> data_;
};

// out[c] = sum over n of partial[n * channels + c], n in increasing order.
template <typename scalar_t>
void channel_sums(const std::vector<double>& partial, int64_t batch, int64_t channels,
                  scalar_t* out) {
  for (int64_t c = 0; c < channels; ++c) {
    double total = 0.0;
    for (int64_t n = 0; n < batch; ++n) {
      total += partial[n * channels + c];
    }
    out[c] = static_cast<scalar_t>(total);
  }
}

// x: a CPU float tensor, 4-D [N, C, H, W] with H * W > 0, contiguous (or, with
// channels_last_ok, channels_last).
inline void check_x(const char* op, const at::Tensor& x, const char* name,
                    bool channels_last_ok = false) {
  check_cpu_float(x, op, name);
  ALAE_CHECK_CPU(x.dim() == 4, op, name, " must be 4-D [N, C, H, W], got shape ", x.sizes());
  if (channels_last_ok) {
    ALAE_CHECK_CPU(x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast), op,
                   name, " must be contiguous or channels_last, got strides ", x.strides());
    return;
  }
  ALAE_CHECK_CPU(x.is_contiguous(), op, name, " must be contiguous (NCHW)");
  ALAE_CHECK_CPU(x.size(2) * x.size(3) > 0, op, name, " must have H * W > 0, got shape ",
                 x.sizes());
}

// t: a contiguous CPU tensor of the given shape and dtype.
inline void check_arg(const char* op, const at::Tensor& t, const char* name,
                      at::IntArrayRef shape, at::ScalarType dtype) {
  ALAE_CHECK_CPU(t.device().is_cpu(), op, name, " must be a CPU tensor, got ", t.device());
  ALAE_CHECK_CPU(t.scalar_type() == dtype, op, name, " must have dtype ", dtype, ", got ",
                 t.scalar_type());
  ALAE_CHECK_CPU(t.sizes() == shape, op, name, " must have shape ", shape, ", got ", t.sizes());
  ALAE_CHECK_CPU(t.is_contiguous(), op, name, " must be contiguous");
}

// The optional noise [N, 1, H, W], noise_weight [C] and bias [C] (named bias_name) of x.
inline void check_noise_bias(const char* op, const at::Tensor& x,
                             const std::optional<at::Tensor>& noise,
                             const std::optional<at::Tensor>& noise_weight,
                             const std::optional<at::Tensor>& bias, const char* bias_name) {
  ALAE_CHECK_CPU(noise.has_value() == noise_weight.has_value(), op,
                 "noise and noise_weight must be both given or both None");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (noise) {
    check_arg(op, *noise, "noise", {N, 1, H, W}, x.scalar_type());
    check_arg(op, *noise_weight, "noise_weight", {C}, x.scalar_type());
  }
  if (bias) {
    check_arg(op, *bias, bias_name, {C}, x.scalar_type());
  }
}

template <typename scalar_t>
const scalar_t* data_or_null(const std::optional<at::Tensor>& t) {
  return t ? t->data_ptr<scalar_t>() : nullptr;
}

// rows(std::integral_constant<int, kBytes>, r0, r1) compiled for AVX2 + FMA (32-byte vectors)
// and for the baseline ISA (16-byte vectors).
template <typename Rows>
ALAE_ROWS void rows_base(const Rows& rows, int64_t r0, int64_t r1) {
  rows(std::integral_constant<int, kBaseBytes>{}, r0, r1);
}
#ifdef ALAE_CPU_X86
template <typename Rows>
ALAE_ROWS_AVX2 void rows_avx2(const Rows& rows, int64_t r0, int64_t r1) {
  rows(std::integral_constant<int, kAvx2Bytes>{}, r0, r1);
}
#endif

// Runs rows over [0, count) rows of m elements in parallel tasks, the AVX2 copy where the CPU
// has it.
template <typename Rows>
void parallel_rows(int64_t count, int64_t m, const Rows& rows) {
  at::parallel_for(0, count, row_grain(m), [&](int64_t r0, int64_t r1) {
#ifdef ALAE_CPU_X86
    if (cpu_has_avx2()) {
      rows_avx2(rows, r0, r1);
      return;
    }
#endif
    rows_base(rows, r0, r1);
  });
}

// The accumulation dtype of the stats tensors: float64 for float64 inputs, else float32.
inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace norm_cpu
}  // namespace alae_fast
