// CPU kernels of adain_conv2d (a 3x3 convolution of the AdaIN output, the prologue applied
// while the input is packed) and adain_stats (its per-(n, c) statistics).
//
// Forward: one task is a block of output rows of one sample. It builds the block's input tile
// A (the prologue pre -> leaky ReLU -> scale * t + shift, the nearest 2x up-sampling and the
// zero padding applied, [C][rows + 2][Wo + 2] in the accumulation type, whatever x's layout),
// unfolds it into cols [C * 9, rows * Wo] and multiplies: out[Cout, pixels] = W[Cout, C * 9] x
// cols (torch's CPU GEMM, straight into the output for float/double; channels_last outputs
// get the transposed product). The AdaIN tensor is never written at full size: only the block,
// sized to stay in L2 (kTaskBytes).
//
// Backward, per block of output rows: GA (the gradient of A) is the transposed convolution of
// grad_out, computed as the convolution of grad_out's zero-padded tile with the flipped,
// transposed weight (a gather, so blocks never overlap); its 2x2 sums give Ga for up-sampling
// (blocks then start on even rows). The same prologue-applied cols as the forward give
// grad_weight += grad_out[Cout, pixels] x cols^T (one buffer per thread, added in chunk order).
// The element-wise epilogue recomputes pre and t from x and writes grad_x; the per-(n, c) and
// per-c sums are kept per task and added in task order, so they do not depend on the threads.
//
// Tasks run on at::parallel_for; inside a parallel region torch's GEMM (MKL) runs on one
// thread, and with a single task it gets all of them.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/mm_cpu_dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "csrc/cpu/layer_common.h"
#include "csrc/cpu/norm_common.h"

namespace alae_fast {
namespace {

using layer::dispatch_isa;
using layer::is_reduced;

constexpr const char* kFwd = "alae_fast_C.adain_conv2d_fwd";
constexpr const char* kBwd = "alae_fast_C.adain_conv2d_bwd";
constexpr const char* kStats = "alae_fast_C.adain_stats_fwd";

// Bytes of one task's packed buffers (tile, cols, products): about half of a core's L2.
constexpr int64_t kTaskBytes = 512 * 1024;

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// --------------------------------------------------------------------------------------------
// Small pieces
// --------------------------------------------------------------------------------------------

// A row-major matrix view (strides s0, s1) of a buffer, for torch's GEMM.
template <typename T>
at::Tensor matrix(const T* p, int64_t rows, int64_t cols, int64_t s0, int64_t s1) {
  return at::from_blob(const_cast<T*>(p), {rows, cols}, {s0, s1},
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// c = a x b, or c += a x b (torch's CPU GEMM, not through the dispatcher).
void gemm(at::Tensor c, const at::Tensor& a, const at::Tensor& b, bool accumulate = false) {
  if (accumulate) {
    at::cpu::addmm_out(c, c, a, b);
  } else {
    at::cpu::mm_out(c, a, b);
  }
}

// src as acc values: src itself (float, double) or its conversion into buf.
template <bool kAvx2, typename scalar_t>
ALAE_INLINE const at::opmath_type<scalar_t>* as_acc(const scalar_t* src,
                                                    at::opmath_type<scalar_t>* buf, int64_t n) {
  if constexpr (is_reduced<scalar_t>()) {
    layer::to_acc<kAvx2>(src, buf, n);
    return buf;
  } else {
    (void)buf;
    (void)n;
    return src;
  }
}

// dst = src (rounded to scalar_t); nothing to do when they are the same array.
template <bool kAvx2, typename scalar_t>
ALAE_INLINE void store_acc(const at::opmath_type<scalar_t>* src, scalar_t* dst, int64_t n) {
  if constexpr (is_reduced<scalar_t>()) {
    layer::from_acc<kAvx2>(src, dst, n);
  } else if (src != dst) {
    std::memcpy(dst, src, n * sizeof(scalar_t));
  }
}

template <typename T>
ALAE_INLINE T lrelu(T p, T alpha) {
  return p > T(0) ? p : alpha * p;
}

// t - center, never contracted with lrelu's alpha * p into one fma: t == center (a constant
// channel against its exact mean) must give exactly 0, not alpha * p's rounding residue.
template <typename T>
ALAE_INLINE T centered(T t, T center) {
#if defined(__has_builtin)
#if __has_builtin(__builtin_assoc_barrier)
  return __builtin_assoc_barrier(t) - center;
#else
  volatile T v = t;  // no barrier builtin: a store the compiler cannot fold into an fma
  return v - center;
#endif
#else
  volatile T v = t;
  return v - center;
#endif
}

// x's element strides and memory layout (channels_last or contiguous NCHW).
struct Strides {
  int64_t n, c, h, w;
  bool cl;
};

inline bool channels_last(const at::Tensor& t) {
  return layer::is_channels_last_only(t);
}

Strides strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3), channels_last(t)};
}

// Input values of the prologue, in the accumulation type where they are small.
template <typename scalar_t>
struct Prologue {
  using acc = at::opmath_type<scalar_t>;
  const scalar_t* x;
  Strides xs;
  const scalar_t* noise;  // [N, H * W], or null
  const acc* scale;       // [N, C]
  const acc* shift;       // [N, C]
  const acc* center;      // [N, C], zeros without center (t - 0 == t exactly)
  const acc* nw;          // [C], zeros without noise
  const acc* ab;          // [C], zeros without act_bias
  const acc* zeros;       // max(H * W, C) zeros (the noise row without noise)
  acc alpha;
  int64_t N, C, H, W;
  bool up;
  int64_t Ho, Wo;
};

template <typename scalar_t>
std::vector<at::opmath_type<scalar_t>> acc_copy(const std::optional<at::Tensor>& t,
                                                int64_t size) {
  std::vector<at::opmath_type<scalar_t>> out(size, 0);
  if (t.has_value()) {
    const scalar_t* p = t->data_ptr<scalar_t>();
    for (int64_t i = 0; i < size; ++i) {
      out[i] = static_cast<at::opmath_type<scalar_t>>(p[i]);
    }
  }
  return out;
}

// Owns the small acc arrays a Prologue points to.
template <typename scalar_t>
struct PrologueData {
  using acc = at::opmath_type<scalar_t>;
  std::vector<acc> scale, shift, center, nw, ab, zeros;
  Prologue<scalar_t> p;

  PrologueData(const at::Tensor& x, const std::optional<at::Tensor>& scale_t,
               const std::optional<at::Tensor>& shift_t,
               const std::optional<at::Tensor>& center_t, const std::optional<at::Tensor>& noise,
               const std::optional<at::Tensor>& noise_weight,
               const std::optional<at::Tensor>& act_bias, double alpha, bool up) {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    scale = acc_copy<scalar_t>(scale_t, N * C);
    shift = acc_copy<scalar_t>(shift_t, N * C);
    center = acc_copy<scalar_t>(center_t, N * C);
    nw = acc_copy<scalar_t>(noise_weight, C);
    ab = acc_copy<scalar_t>(act_bias, C);
    zeros.assign(std::max(H * W, C) + 1, acc(0));
    p = {x.data_ptr<scalar_t>(),
         strides_of(x),
         noise ? noise->data_ptr<scalar_t>() : nullptr,
         scale.data(),
         shift.data(),
         center.data(),
         nw.data(),
         ab.data(),
         zeros.data(),
         static_cast<acc>(alpha),
         N,
         C,
         H,
         W,
         up,
         up ? 2 * H : H,
         up ? 2 * W : W};
  }
};

// --------------------------------------------------------------------------------------------
// Packing
// --------------------------------------------------------------------------------------------

// Work space of build_a_tile: 2 * max(W, C) + C values.
inline int64_t tile_work_size(int64_t C, int64_t W) {
  return 2 * std::max(W, C) + C + 1;
}

// tile[c][rr][cc] = A[n, c, oh0 - 1 + rr, cc - 1] for rr < rows + 2, cc < Wo + 2, 0 outside A:
// the prologue-applied (and up-sampled) input with its zero padding.
template <bool kAvx2, typename scalar_t>
ALAE_INLINE void build_a_tile(const Prologue<scalar_t>& p, int64_t n, int64_t oh0, int64_t rows,
                              at::opmath_type<scalar_t>* tile,
                              at::opmath_type<scalar_t>* work) {
  using acc = at::opmath_type<scalar_t>;
  const int64_t C = p.C, H = p.H, W = p.W, Wo = p.Wo;
  const int64_t TW = Wo + 2, TS = (rows + 2) * TW;
  const acc* scale = p.scale + n * C;
  const acc* shift = p.shift + n * C;
  const acc* center = p.center + n * C;
  acc* xbuf = work;
  acc* zbuf = work + std::max(W, C);
  acc* vbuf = zbuf + std::max(W, C);
  int64_t prev = -1;  // source row of the previous tile row
  for (int64_t rr = 0; rr < rows + 2; ++rr) {
    const int64_t ar = oh0 - 1 + rr;
    if (ar < 0 || ar >= p.Ho) {
      for (int64_t c = 0; c < C; ++c) {
        std::fill_n(tile + c * TS + rr * TW, TW, acc(0));
      }
      prev = -1;
      continue;
    }
    const int64_t sh = p.up ? ar / 2 : ar;
    if (sh == prev) {  // the second copy of an up-sampled row
      for (int64_t c = 0; c < C; ++c) {
        acc* d = tile + c * TS + rr * TW;
        std::memcpy(d, d - TW, TW * sizeof(acc));
      }
      continue;
    }
    prev = sh;
    const acc* z = p.noise ? as_acc<kAvx2>(p.noise + (n * H + sh) * W, zbuf, W) : p.zeros;
    const scalar_t* xrow = p.x + n * p.xs.n + sh * p.xs.h;
    if (!p.xs.cl) {
      for (int64_t c = 0; c < C; ++c) {
        const acc* xr = as_acc<kAvx2>(xrow + c * p.xs.c, xbuf, W);
        acc* d = tile + c * TS + rr * TW;
        const acc nw = p.nw[c], ab = p.ab[c], sc = scale[c], sf = shift[c], alpha = p.alpha;
        const acc ce = center[c];
        d[0] = acc(0);
        d[TW - 1] = acc(0);
        if (p.up) {
          for (int64_t j = 0; j < W; ++j) {
            const acc v = sc * centered(lrelu(xr[j] + nw * z[j] + ab, alpha), ce) + sf;
            d[1 + 2 * j] = v;
            d[2 + 2 * j] = v;
          }
        } else {
          for (int64_t j = 0; j < W; ++j) {
            d[1 + j] = sc * centered(lrelu(xr[j] + nw * z[j] + ab, alpha), ce) + sf;
          }
        }
      }
    } else {
      for (int64_t c = 0; c < C; ++c) {
        acc* d = tile + c * TS + rr * TW;
        d[0] = acc(0);
        d[TW - 1] = acc(0);
      }
      const acc alpha = p.alpha;
      for (int64_t j = 0; j < W; ++j) {
        const acc* xv = as_acc<kAvx2>(xrow + j * p.xs.w, xbuf, C);
        const acc zj = z[j];
        for (int64_t c = 0; c < C; ++c) {
          const acc t = lrelu(xv[c] + p.nw[c] * zj + p.ab[c], alpha);
          vbuf[c] = scale[c] * centered(t, center[c]) + shift[c];
        }
        acc* d = tile + rr * TW + (p.up ? 1 + 2 * j : 1 + j);
        if (p.up) {
          for (int64_t c = 0; c < C; ++c) {
            d[c * TS] = vbuf[c];
            d[c * TS + 1] = vbuf[c];
          }
        } else {
          for (int64_t c = 0; c < C; ++c) {
            d[c * TS] = vbuf[c];
          }
        }
      }
    }
  }
}

// tile[co][rr][cc] = g[n, co, oh0 - 1 + rr, cc - 1] (0 outside): grad_out's padded block.
template <bool kAvx2, typename scalar_t>
ALAE_INLINE void build_g_tile(const scalar_t* g, const Strides& gs, int64_t Cout, int64_t Ho,
                              int64_t Wo, int64_t n, int64_t oh0, int64_t rows,
                              at::opmath_type<scalar_t>* tile, at::opmath_type<scalar_t>* work) {
  using acc = at::opmath_type<scalar_t>;
  const int64_t TW = Wo + 2, TS = (rows + 2) * TW;
  for (int64_t rr = 0; rr < rows + 2; ++rr) {
    const int64_t oh = oh0 - 1 + rr;
    if (oh < 0 || oh >= Ho) {
      for (int64_t co = 0; co < Cout; ++co) {
        std::fill_n(tile + co * TS + rr * TW, TW, acc(0));
      }
      continue;
    }
    const scalar_t* grow = g + n * gs.n + oh * gs.h;
    for (int64_t co = 0; co < Cout; ++co) {
      acc* d = tile + co * TS + rr * TW;
      d[0] = acc(0);
      d[TW - 1] = acc(0);
    }
    if (!gs.cl) {
      for (int64_t co = 0; co < Cout; ++co) {
        acc* d = tile + co * TS + rr * TW + 1;
        if constexpr (is_reduced<scalar_t>()) {
          layer::to_acc<kAvx2>(grow + co * gs.c, d, Wo);
        } else {
          std::memcpy(d, grow + co * gs.c, Wo * sizeof(acc));
        }
      }
    } else {
      for (int64_t j = 0; j < Wo; ++j) {
        const acc* gv = as_acc<kAvx2>(grow + j * gs.w, work, Cout);
        acc* d = tile + rr * TW + 1 + j;
        for (int64_t co = 0; co < Cout; ++co) {
          d[co * TS] = gv[co];
        }
      }
    }
  }
}

// cols[(c * 9 + kh * 3 + kw)][r * Wo + ow] = tile[c][r + kh][ow + kw] (tile from build_*_tile).
template <typename T>
ALAE_INLINE void im2col(const T* tile, int64_t C, int64_t rows, int64_t Wo, T* __restrict cols) {
  const int64_t TW = Wo + 2, TS = (rows + 2) * TW, P = rows * Wo;
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t kh = 0; kh < 3; ++kh) {
      for (int64_t kw = 0; kw < 3; ++kw) {
        T* d = cols + (c * 9 + kh * 3 + kw) * P;
        const T* s = tile + c * TS + kh * TW + kw;
        for (int64_t r = 0; r < rows; ++r) {
          const T* sr = s + r * TW;
          T* dr = d + r * Wo;
          for (int64_t j = 0; j < Wo; ++j) {
            dr[j] = sr[j];
          }
        }
      }
    }
  }
}

// Blocks of output rows: `rows` per block (the last may be shorter), `count` per sample.
struct Blocks {
  int64_t rows, count;
};

Blocks row_blocks(int64_t Ho, int64_t bytes_per_row, bool even) {
  int64_t rows = std::clamp<int64_t>(kTaskBytes / std::max<int64_t>(1, bytes_per_row), 1, Ho);
  int64_t count = ceil_div(Ho, rows);
  rows = ceil_div(Ho, count);  // even blocks
  if (even && rows % 2 == 1) {
    rows += 1;
    count = ceil_div(Ho, rows);
  }
  return {rows, count};
}

// --------------------------------------------------------------------------------------------
// Checks
// --------------------------------------------------------------------------------------------

void check_conv_args(const char* op, const at::Tensor& x, const at::Tensor& scale,
                     const at::Tensor& shift, const std::optional<at::Tensor>& center,
                     const at::Tensor& weight, const std::optional<at::Tensor>& noise,
                     const std::optional<at::Tensor>& noise_weight,
                     const std::optional<at::Tensor>& act_bias) {
  using norm_cpu::check_arg;
  norm_cpu::check_x(op, x, "x", /*channels_last_ok=*/true);
  const int64_t N = x.size(0), C = x.size(1);
  check_arg(op, scale, "scale", {N, C}, x.scalar_type());
  check_arg(op, shift, "shift", {N, C}, x.scalar_type());
  if (center) {
    check_arg(op, *center, "center", {N, C}, x.scalar_type());
  }
  ALAE_CHECK_CPU(weight.dim() == 4 && weight.size(1) == C && weight.size(2) == 3 &&
                     weight.size(3) == 3,
                 op, "weight must have shape [Cout, ", C, ", 3, 3], got ", weight.sizes());
  check_arg(op, weight, "weight", weight.sizes(), x.scalar_type());
  norm_cpu::check_noise_bias(op, x, noise, noise_weight, act_bias, "act_bias");
}

at::MemoryFormat format_of(const at::Tensor& t) {
  return channels_last(t) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// --------------------------------------------------------------------------------------------
// Forward
// --------------------------------------------------------------------------------------------

template <typename scalar_t>
struct FwdWork {
  using acc = at::opmath_type<scalar_t>;
  std::vector<acc> tile, cols, out, work;
  FwdWork(int64_t C, int64_t Cout, int64_t rows, int64_t Wo, int64_t W, bool need_out)
      : tile(C * (rows + 2) * (Wo + 2)),
        cols(C * 9 * rows * Wo),
        out(need_out ? Cout * rows * Wo : 0),
        work(tile_work_size(C, W)) {}
};

template <bool kAvx2, typename scalar_t>
ALAE_INLINE void fwd_task(const Prologue<scalar_t>& p, const at::Tensor& wm,
                          const at::Tensor& wm_t, const at::opmath_type<scalar_t>* bias,
                          scalar_t* out, int64_t Cout, int64_t n, int64_t oh0, int64_t rows,
                          FwdWork<scalar_t>& ws) {
  using acc = at::opmath_type<scalar_t>;
  constexpr bool kDirect = !is_reduced<scalar_t>();  // GEMM straight into the output
  const int64_t C = p.C, Wo = p.Wo, HoWo = p.Ho * p.Wo, K = 9 * C, P = rows * Wo;
  build_a_tile<kAvx2>(p, n, oh0, rows, ws.tile.data(), ws.work.data());
  im2col(ws.tile.data(), C, rows, Wo, ws.cols.data());
  if (!p.xs.cl) {
    // out[n][:, block] = W [Cout, K] x cols [K, P]
    scalar_t* dst = out + n * Cout * HoWo + oh0 * Wo;
    acc* ob = kDirect ? reinterpret_cast<acc*>(dst) : ws.out.data();
    const int64_t ld = kDirect ? HoWo : P;
    gemm(matrix(ob, Cout, P, ld, 1), wm, matrix<acc>(ws.cols.data(), K, P, P, 1));
    for (int64_t co = 0; co < Cout; ++co) {
      acc* row = ob + co * ld;
      if (bias) {
        const acc b = bias[co];
        for (int64_t j = 0; j < P; ++j) {
          row[j] += b;
        }
      }
      if constexpr (!kDirect) {
        store_acc<kAvx2>(row, dst + co * HoWo, P);
      }
    }
  } else {
    // channels_last: out[n][block pixels, :] = cols^T [P, K] x W^T [K, Cout]
    scalar_t* dst = out + (n * HoWo + oh0 * Wo) * Cout;
    acc* ob = kDirect ? reinterpret_cast<acc*>(dst) : ws.out.data();
    gemm(matrix(ob, P, Cout, Cout, 1), matrix<acc>(ws.cols.data(), P, K, 1, P), wm_t);
    if (bias) {
      for (int64_t j = 0; j < P; ++j) {
        acc* row = ob + j * Cout;
        for (int64_t co = 0; co < Cout; ++co) {
          row[co] += bias[co];
        }
      }
    }
    if constexpr (!kDirect) {
      store_acc<kAvx2>(ob, dst, P * Cout);
    }
  }
}

at::Tensor adain_conv2d_fwd(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                            const std::optional<at::Tensor>& center, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias,
                            const std::optional<at::Tensor>& noise,
                            const std::optional<at::Tensor>& noise_weight,
                            const std::optional<at::Tensor>& act_bias, double alpha, bool up) {
  check_conv_args(kFwd, x, scale, shift, center, weight, noise, noise_weight, act_bias);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Cout = weight.size(0), Ho = up ? 2 * H : H, Wo = up ? 2 * W : W;
  if (bias) {
    norm_cpu::check_arg(kFwd, *bias, "bias", {Cout}, x.scalar_type());
  }
  at::Tensor out = at::empty({N, Cout, Ho, Wo}, x.options().memory_format(format_of(x)));
  if (out.numel() == 0) {
    return out;
  }
  if (C == 0) {
    return bias ? out.copy_(bias->view({1, Cout, 1, 1})) : out.zero_();
  }
  ALAE_DISPATCH_FLOATS(x.scalar_type(), kFwd, [&] {
    using acc = at::opmath_type<scalar_t>;
    const PrologueData<scalar_t> data(x, scale, shift, center, noise, noise_weight, act_bias, alpha,
                                      up);
    const Prologue<scalar_t>& p = data.p;
    const at::Tensor wm = weight.to(c10::CppTypeToScalarType<acc>::value).reshape({Cout, 9 * C});
    const at::Tensor wm_t = wm.t();
    const std::vector<acc> bias_acc = acc_copy<scalar_t>(bias, Cout);
    const acc* pb = bias ? bias_acc.data() : nullptr;
    const bool need_out = is_reduced<scalar_t>();
    const int64_t row_bytes = sizeof(acc) * Wo * (9 * C + C + (need_out ? Cout : 0));
    const Blocks blocks = row_blocks(Ho, row_bytes, false);
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, N * blocks.count, 1, [&](int64_t t0, int64_t t1) {
      FwdWork<scalar_t> ws(C, Cout, blocks.rows, Wo, W, need_out);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / blocks.count, oh0 = (t % blocks.count) * blocks.rows;
        const int64_t rows = std::min(blocks.rows, Ho - oh0);
        dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
          fwd_task<decltype(isa)::value>(p, wm, wm_t, pb, po, Cout, n, oh0, rows, ws);
        });
      }
    });
  });
  return out;
}

// --------------------------------------------------------------------------------------------
// Backward
// --------------------------------------------------------------------------------------------

template <typename scalar_t>
struct BwdWork {
  using acc = at::opmath_type<scalar_t>;
  std::vector<acc> tile, cols, gtile, gcols, ga, grad_w, work, gbuf, xbuf, gxbuf, sums;
  BwdWork(int64_t C, int64_t Cout, int64_t rows, int64_t Wo, int64_t W)
      : tile(C * (rows + 2) * (Wo + 2)),
        cols(C * 9 * rows * Wo),
        gtile(Cout * (rows + 2) * (Wo + 2)),
        gcols(Cout * 9 * rows * Wo),
        ga(C * rows * Wo),
        grad_w(Cout * C * 9, acc(0)),
        work(tile_work_size(std::max(C, Cout), W)),
        gbuf(std::max(W, C)),
        xbuf(std::max(W, C)),
        gxbuf(std::max(W, C)),
        sums(4 * C) {}
};

// Per-task sums of the backward, indexed [task][channel].
struct BwdPartials {
  std::vector<double> scale, shift, nw, ab, bias;
  BwdPartials(int64_t tasks, int64_t C, int64_t Cout)
      : scale(tasks * C, 0.0),
        shift(tasks * C, 0.0),
        nw(tasks * C, 0.0),
        ab(tasks * C, 0.0),
        bias(tasks * Cout, 0.0) {}
};

// Pixels per flush of the channels_last epilogue's float sums into the double partials.
constexpr int64_t kClFlush = 64;

// The element-wise epilogue of one block: source rows [h0, h0 + hrows) of sample n, with ga the
// block's GA ([C][P] for NCHW x, [P][C] for channels_last x, P = rows * Wo).
template <bool kAvx2, typename scalar_t>
ALAE_INLINE void bwd_epilogue(const Prologue<scalar_t>& p, const at::opmath_type<scalar_t>* ga,
                              scalar_t* grad_x, const Strides& gxs, int64_t n, int64_t h0,
                              int64_t hrows, BwdWork<scalar_t>& ws, double* ps, double* pf,
                              double* pnw, double* pab) {
  using acc = at::opmath_type<scalar_t>;
  constexpr int kBytes = kAvx2 ? norm_cpu::kAvx2Bytes : norm_cpu::kBaseBytes;
  const int64_t C = p.C, H = p.H, W = p.W, Wo = p.Wo;
  const int64_t P = (p.up ? 2 * hrows : hrows) * Wo;
  const acc alpha = p.alpha;
  const acc* scale = p.scale + n * C;
  const acc* center = p.center + n * C;
  acc* gbuf = ws.gbuf.data();
  acc* xbuf = ws.xbuf.data();
  acc* gxbuf = ws.gxbuf.data();
  acc* zbuf = ws.work.data();
  if (!p.xs.cl) {
    for (int64_t c = 0; c < C; ++c) {
      const acc sc = scale[c], nw = p.nw[c], ab = p.ab[c], ce = center[c];
      const acc* gac = ga + c * P;
      for (int64_t hl = 0; hl < hrows; ++hl) {
        const int64_t h = h0 + hl;
        const acc* g;
        if (p.up) {
          const acc* r0 = gac + 2 * hl * Wo;
          const acc* r1 = r0 + Wo;
          for (int64_t j = 0; j < W; ++j) {
            gbuf[j] = (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
          }
          g = gbuf;
        } else {
          g = gac + hl * Wo;
        }
        const acc* xr = as_acc<kAvx2>(p.x + n * p.xs.n + c * p.xs.c + h * p.xs.h, xbuf, W);
        const acc* z = p.noise ? as_acc<kAvx2>(p.noise + (n * H + h) * W, zbuf, W) : p.zeros;
        scalar_t* gx_dst = grad_x + n * gxs.n + c * gxs.c + h * gxs.h;
        acc* gx = is_reduced<scalar_t>() ? gxbuf : reinterpret_cast<acc*>(gx_dst);
        const auto s = norm_cpu::row_sums<4, kBytes, acc>(
            W, [&](int64_t j, auto* sum) ALAE_INLINE_LAMBDA {
              using U = norm_cpu::Elem<decltype(sum)>;
              using norm_cpu::bcast;
              using norm_cpu::load;
              const U zj = load<U>(z + j);
              const U pre = load<U>(xr + j) + bcast<U>(nw) * zj + bcast<U>(ab);
              const U t = norm_cpu::where_pos(pre, pre, bcast<U>(alpha) * pre);
              const U gj = load<U>(g + j);
              sum[0] += gj * (t - bcast<U>(ce));
              sum[1] += gj;
              const U u = gj * bcast<U>(sc);
              const U gp = norm_cpu::where_pos(pre, u, bcast<U>(alpha) * u);
              norm_cpu::store(gx + j, gp);
              sum[2] += gp * zj;
              sum[3] += gp;
            });
        store_acc<kAvx2>(gx, gx_dst, W);
        ps[c] += s[0];
        pf[c] += s[1];
        pnw[c] += s[2];
        pab[c] += s[3];
      }
    }
  } else {
    acc* fs = ws.sums.data();
    acc* ff = fs + C;
    acc* fnw = ff + C;
    acc* fab = fnw + C;
    const acc* nwv = p.nw;
    const acc* abv = p.ab;
    for (int64_t hl = 0; hl < hrows; ++hl) {
      const int64_t h = h0 + hl;
      const acc* z = p.noise ? as_acc<kAvx2>(p.noise + (n * H + h) * W, zbuf, W) : p.zeros;
      for (int64_t j0 = 0; j0 < W; j0 += kClFlush) {
        std::fill_n(fs, 4 * C, acc(0));
        for (int64_t j = j0; j < std::min(W, j0 + kClFlush); ++j) {
          const acc* g;
          if (p.up) {
            const acc* a0 = ga + (2 * hl * Wo + 2 * j) * C;
            const acc* a1 = a0 + C;
            const acc* a2 = a0 + Wo * C;
            const acc* a3 = a2 + C;
            for (int64_t c = 0; c < C; ++c) {
              gbuf[c] = (a0[c] + a1[c]) + (a2[c] + a3[c]);
            }
            g = gbuf;
          } else {
            g = ga + (hl * Wo + j) * C;
          }
          const acc* xv = as_acc<kAvx2>(p.x + n * p.xs.n + h * p.xs.h + j * p.xs.w, xbuf, C);
          scalar_t* gx_dst = grad_x + n * gxs.n + h * gxs.h + j * gxs.w;
          acc* gx = is_reduced<scalar_t>() ? gxbuf : reinterpret_cast<acc*>(gx_dst);
          const acc zj = z[j];
          for (int64_t c = 0; c < C; ++c) {
            const acc pre = xv[c] + nwv[c] * zj + abv[c];
            const acc t = lrelu(pre, alpha);
            const acc gc = g[c];
            fs[c] += gc * (t - center[c]);
            ff[c] += gc;
            const acc u = gc * scale[c];
            const acc gp = pre > acc(0) ? u : alpha * u;
            gx[c] = gp;
            fnw[c] += gp * zj;
            fab[c] += gp;
          }
          store_acc<kAvx2>(gx, gx_dst, C);
        }
        for (int64_t c = 0; c < C; ++c) {
          ps[c] += fs[c];
          pf[c] += ff[c];
          pnw[c] += fnw[c];
          pab[c] += fab[c];
        }
      }
    }
  }
}

template <bool kAvx2, typename scalar_t>
ALAE_INLINE void bwd_task(const Prologue<scalar_t>& p, const scalar_t* g, const Strides& gs,
                          const at::Tensor& wf, const at::Tensor& wf_t, scalar_t* grad_x,
                          const Strides& gxs, int64_t Cout, int64_t n, int64_t oh0, int64_t rows,
                          BwdWork<scalar_t>& ws, double* ps, double* pf, double* pnw,
                          double* pab, double* pbias) {
  using acc = at::opmath_type<scalar_t>;
  constexpr int kBytes = kAvx2 ? norm_cpu::kAvx2Bytes : norm_cpu::kBaseBytes;
  const int64_t C = p.C, Wo = p.Wo, K = 9 * C, P = rows * Wo;
  // A's cols (as in the forward) and grad_out's cols.
  build_a_tile<kAvx2>(p, n, oh0, rows, ws.tile.data(), ws.work.data());
  im2col(ws.tile.data(), C, rows, Wo, ws.cols.data());
  build_g_tile<kAvx2>(g, gs, Cout, p.Ho, Wo, n, oh0, rows, ws.gtile.data(), ws.work.data());
  im2col(ws.gtile.data(), Cout, rows, Wo, ws.gcols.data());
  const at::Tensor gcols = matrix<acc>(ws.gcols.data(), 9 * Cout, P, P, 1);
  // GA = Wf [C, 9 Cout] x gcols [9 Cout, P], [P][C] for channels_last x.
  if (!p.xs.cl) {
    gemm(matrix<acc>(ws.ga.data(), C, P, P, 1), wf, gcols);
  } else {
    gemm(matrix<acc>(ws.ga.data(), P, C, C, 1), gcols.t(), wf_t);
  }
  // grad_weight += grad_out [Cout, P] (the centre taps of gcols) x cols^T [P, K].
  const acc* gcenter = ws.gcols.data() + 4 * P;
  gemm(matrix<acc>(ws.grad_w.data(), Cout, K, K, 1), matrix<acc>(gcenter, Cout, P, 9 * P, 1),
       matrix<acc>(ws.cols.data(), P, K, 1, P), true);
  for (int64_t co = 0; co < Cout; ++co) {
    const acc* row = gcenter + co * 9 * P;
    pbias[co] = norm_cpu::row_sums<1, kBytes, acc>(
        P, [&](int64_t j, auto* sum) ALAE_INLINE_LAMBDA {
          using U = norm_cpu::Elem<decltype(sum)>;
          sum[0] += norm_cpu::load<U>(row + j);
        })[0];
  }
  const int64_t h0 = p.up ? oh0 / 2 : oh0, hrows = p.up ? rows / 2 : rows;
  bwd_epilogue<kAvx2>(p, ws.ga.data(), grad_x, gxs, n, h0, hrows, ws, ps, pf, pnw, pab);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
adain_conv2d_bwd(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& scale,
                 const at::Tensor& shift, const std::optional<at::Tensor>& center,
                 const at::Tensor& weight, const std::optional<at::Tensor>& noise,
                 const std::optional<at::Tensor>& noise_weight,
                 const std::optional<at::Tensor>& act_bias, double alpha, bool up) {
  check_conv_args(kBwd, x, scale, shift, center, weight, noise, noise_weight, act_bias);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Cout = weight.size(0), Ho = up ? 2 * H : H, Wo = up ? 2 * W : W;
  norm_cpu::check_x(kBwd, grad_out, "grad_out", /*channels_last_ok=*/true);
  ALAE_CHECK_CPU(grad_out.sizes() == at::IntArrayRef({N, Cout, Ho, Wo}), kBwd,
                 "grad_out must have shape [", N, ", ", Cout, ", ", Ho, ", ", Wo, "], got ",
                 grad_out.sizes());
  ALAE_CHECK_CPU(grad_out.scalar_type() == x.scalar_type(), kBwd, "grad_out must have dtype ",
                 x.scalar_type(), ", got ", grad_out.scalar_type());
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(format_of(x)));
  at::Tensor grad_scale = at::empty({N, C}, scale.options());
  at::Tensor grad_shift = at::empty({N, C}, shift.options());
  at::Tensor grad_weight = at::empty(weight.sizes(), weight.options());
  at::Tensor grad_bias = at::empty({Cout}, x.options());
  at::Tensor grad_nw = at::empty({C}, x.options());
  at::Tensor grad_ab = at::empty({C}, x.options());
  if (x.numel() == 0 || Cout == 0) {
    for (at::Tensor* t : {&grad_x, &grad_scale, &grad_shift, &grad_weight, &grad_bias, &grad_nw,
                          &grad_ab}) {
      t->zero_();
    }
    if (N > 0 && Cout > 0 && H * W > 0) {
      grad_bias.copy_(grad_out.sum({0, 2, 3}));
    }
    return {grad_x, grad_scale, grad_shift, grad_weight, grad_bias, grad_nw, grad_ab};
  }
  ALAE_DISPATCH_FLOATS(x.scalar_type(), kBwd, [&] {
    using acc = at::opmath_type<scalar_t>;
    constexpr auto acc_type = c10::CppTypeToScalarType<acc>::value;
    const PrologueData<scalar_t> data(x, scale, shift, center, noise, noise_weight, act_bias, alpha,
                                      up);
    const Prologue<scalar_t>& p = data.p;
    // Wf[ci][co * 9 + j * 3 + i] = weight[co][ci][2 - j][2 - i]: GA = conv(grad_out, Wf).
    const at::Tensor wf =
        weight.to(acc_type).flip({2, 3}).transpose(0, 1).contiguous().view({C, 9 * Cout});
    const at::Tensor wf_t = wf.t();
    const int64_t row_bytes = sizeof(acc) * Wo * (10 * C + 10 * Cout);
    const Blocks blocks = row_blocks(Ho, row_bytes, up);
    const int64_t tasks = N * blocks.count;
    BwdPartials parts(tasks, C, Cout);
    std::mutex mutex;
    std::vector<std::pair<int64_t, std::vector<acc>>> grad_ws;  // (first task, grad_weight)
    const scalar_t* pg = grad_out.data_ptr<scalar_t>();
    const Strides gs = strides_of(grad_out), gxs = strides_of(grad_x);
    scalar_t* pgx = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      BwdWork<scalar_t> ws(C, Cout, blocks.rows, Wo, W);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / blocks.count, oh0 = (t % blocks.count) * blocks.rows;
        const int64_t rows = std::min(blocks.rows, Ho - oh0);
        dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
          bwd_task<decltype(isa)::value>(p, pg, gs, wf, wf_t, pgx, gxs, Cout, n, oh0, rows, ws,
                                         parts.scale.data() + t * C, parts.shift.data() + t * C,
                                         parts.nw.data() + t * C, parts.ab.data() + t * C,
                                         parts.bias.data() + t * Cout);
        });
      }
      std::lock_guard<std::mutex> lock(mutex);
      grad_ws.emplace_back(t0, std::move(ws.grad_w));
    });
    // Sums in a fixed order: tasks in order, grad_weight's per-thread buffers by first task.
    std::sort(grad_ws.begin(), grad_ws.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<acc> gw_total(std::move(grad_ws[0].second));
    for (size_t k = 1; k < grad_ws.size(); ++k) {
      const acc* src = grad_ws[k].second.data();
      for (size_t i = 0; i < gw_total.size(); ++i) {
        gw_total[i] += src[i];
      }
    }
    grad_weight.copy_(at::from_blob(gw_total.data(), weight.sizes(), at::TensorOptions().dtype(acc_type)));
    scalar_t* gsc = grad_scale.data_ptr<scalar_t>();
    scalar_t* gsf = grad_shift.data_ptr<scalar_t>();
    std::vector<double> nw_total(C, 0.0), ab_total(C, 0.0), bias_total(Cout, 0.0);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        double s = 0.0, f = 0.0;
        for (int64_t b = 0; b < blocks.count; ++b) {
          const int64_t i = (n * blocks.count + b) * C + c;
          s += parts.scale[i];
          f += parts.shift[i];
        }
        gsc[n * C + c] = static_cast<scalar_t>(s);
        gsf[n * C + c] = static_cast<scalar_t>(f);
      }
    }
    for (int64_t t = 0; t < tasks; ++t) {
      for (int64_t c = 0; c < C; ++c) {
        nw_total[c] += parts.nw[t * C + c];
        ab_total[c] += parts.ab[t * C + c];
      }
      for (int64_t co = 0; co < Cout; ++co) {
        bias_total[co] += parts.bias[t * Cout + co];
      }
    }
    scalar_t* gnw = grad_nw.data_ptr<scalar_t>();
    scalar_t* gab = grad_ab.data_ptr<scalar_t>();
    scalar_t* gb = grad_bias.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      gnw[c] = static_cast<scalar_t>(noise ? nw_total[c] : 0.0);
      gab[c] = static_cast<scalar_t>(ab_total[c]);
    }
    for (int64_t co = 0; co < Cout; ++co) {
      gb[co] = static_cast<scalar_t>(bias_total[co]);
    }
  });
  return {grad_x, grad_scale, grad_shift, grad_weight, grad_bias, grad_nw, grad_ab};
}

// --------------------------------------------------------------------------------------------
// adain_stats
// --------------------------------------------------------------------------------------------

// Pixels per chunk of the channels_last statistics (each chunk's mean and squared deviations
// are merged into the running ones with Chan's formula), and channels per task there.
constexpr int64_t kStatsChunk = 256;
constexpr int64_t kStatsChannels = 64;

// Welford/Chan merge of a chunk (count nb, mean mb, squared deviations qb) into (na, ma, qa).
// Chunks of a constant row all have mean exactly its value c (row_moments): the first merge
// gives c * nb / nb == c (c * nb is exact in double), the others delta == 0, so ma == c, qa == 0.
inline void chan_merge(double na, double& ma, double& qa, double nb, double mb, double qb) {
  const double total = na + nb;
  const double delta = mb - ma;
  ma += delta * nb / total;
  qa += qb + delta * delta * na * nb / total;
}

// (mean, sum of squared deviations) of lrelu(x + w * noise + b) over a row of m acc values,
// by the two passes of norm_common.h; t is m values of work space.
template <int kBytes, typename T>
ALAE_INLINE std::pair<double, double> row_moments(const T* x, const T* noise, T w, T b, T alpha,
                                                  T* t, int64_t m) {
  // Shifted accumulation: exactly the value of a constant row (then q == 0 exactly).
  const double mean = noise ? norm_cpu::act_row_mean<true, kBytes>(x, noise, w, b, alpha, t, m)
                            : norm_cpu::act_row_mean<false, kBytes>(x, noise, w, b, alpha, t, m);
  const T mu = static_cast<T>(mean);
  // Deviations from the rounded mean, corrected to the exact one.
  const double d = mean - static_cast<double>(mu);
  const double q = norm_cpu::sq_dev_row<kBytes>(t, mu, m) - static_cast<double>(m) * d * d;
  return {mean, std::max(q, 0.0)};
}

template <bool kAvx2, typename scalar_t>
ALAE_INLINE void stats_rows_nchw(const Prologue<scalar_t>& p, double eps,
                                 at::opmath_type<scalar_t>* stats, int64_t r0, int64_t r1) {
  using acc = at::opmath_type<scalar_t>;
  constexpr int kBytes = kAvx2 ? norm_cpu::kAvx2Bytes : norm_cpu::kBaseBytes;
  const int64_t C = p.C, m = p.H * p.W;
  std::vector<acc> buf((is_reduced<scalar_t>() ? 3 : 1) * m);
  acc* t = buf.data();
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / C, c = r % C;
    const acc* x = as_acc<kAvx2>(p.x + n * p.xs.n + c * p.xs.c, t + m, m);
    const acc* z = p.noise ? as_acc<kAvx2>(p.noise + n * m, t + (is_reduced<scalar_t>() ? 2 * m : 0), m)
                           : nullptr;
    const auto [mean, q] = row_moments<kBytes>(x, z, p.nw[c], p.ab[c], p.alpha, t, m);
    stats[n * 2 * C + c] = static_cast<acc>(mean);
    stats[n * 2 * C + C + c] = static_cast<acc>(1.0 / std::sqrt(q / static_cast<double>(m) + eps));
  }
}

// channels_last: task = (n, block of kStatsChannels channels); pixel chunks are transposed into
// [channel][pixel] rows, then as in the NCHW case with the chunks merged.
template <bool kAvx2, typename scalar_t>
ALAE_INLINE void stats_task_cl(const Prologue<scalar_t>& p, double eps,
                               at::opmath_type<scalar_t>* stats, int64_t n, int64_t c0,
                               int64_t c1) {
  using acc = at::opmath_type<scalar_t>;
  constexpr int kBytes = kAvx2 ? norm_cpu::kAvx2Bytes : norm_cpu::kBaseBytes;
  const int64_t C = p.C, W = p.W, m = p.H * p.W, cb = c1 - c0;
  std::vector<acc> xt(cb * kStatsChunk), t(kStatsChunk), pix(cb), zb(kStatsChunk);
  std::vector<double> mean(cb, 0.0), q(cb, 0.0);
  double count = 0.0;
  for (int64_t q0 = 0; q0 < m; q0 += kStatsChunk) {
    const int64_t len = std::min(kStatsChunk, m - q0);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t h = (q0 + j) / W, w = (q0 + j) % W;
      const acc* v = as_acc<kAvx2>(p.x + n * p.xs.n + h * p.xs.h + w * p.xs.w + c0, pix.data(), cb);
      for (int64_t c = 0; c < cb; ++c) {
        xt[c * kStatsChunk + j] = v[c];
      }
    }
    const acc* z = p.noise ? as_acc<kAvx2>(p.noise + n * m + q0, zb.data(), len) : nullptr;
    for (int64_t c = 0; c < cb; ++c) {
      const auto [mb, qb] = row_moments<kBytes>(xt.data() + c * kStatsChunk, z, p.nw[c0 + c],
                                                p.ab[c0 + c], p.alpha, t.data(), len);
      chan_merge(count, mean[c], q[c], static_cast<double>(len), mb, qb);
    }
    count += static_cast<double>(len);
  }
  for (int64_t c = 0; c < cb; ++c) {
    stats[n * 2 * C + c0 + c] = static_cast<acc>(mean[c]);
    stats[n * 2 * C + C + c0 + c] =
        static_cast<acc>(1.0 / std::sqrt(q[c] / static_cast<double>(m) + eps));
  }
}

at::Tensor adain_stats_fwd(const at::Tensor& x, const std::optional<at::Tensor>& noise,
                           const std::optional<at::Tensor>& noise_weight,
                           const std::optional<at::Tensor>& act_bias, double alpha, double eps) {
  norm_cpu::check_x(kStats, x, "x", /*channels_last_ok=*/true);
  norm_cpu::check_noise_bias(kStats, x, noise, noise_weight, act_bias, "act_bias");
  const int64_t N = x.size(0), C = x.size(1), m = x.size(2) * x.size(3);
  ALAE_CHECK_CPU(m > 0, kStats, "x must have H * W > 0, got shape ", x.sizes());
  at::Tensor stats =
      at::empty({N, 2 * C}, x.options().dtype(norm_cpu::acc_dtype(x.scalar_type())));
  if (stats.numel() == 0) {
    return stats;
  }
  ALAE_DISPATCH_FLOATS(x.scalar_type(), kStats, [&] {
    using acc = at::opmath_type<scalar_t>;
    const PrologueData<scalar_t> data(x, std::nullopt, std::nullopt, std::nullopt, noise,
                                      noise_weight, act_bias, alpha, false);
    const Prologue<scalar_t>& p = data.p;
    acc* ps = stats.data_ptr<acc>();
    if (!p.xs.cl) {
      at::parallel_for(0, N * C, norm_cpu::row_grain(m), [&](int64_t r0, int64_t r1) {
        dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
          stats_rows_nchw<decltype(isa)::value>(p, eps, ps, r0, r1);
        });
      });
    } else {
      const int64_t blocks = ceil_div(C, kStatsChannels);
      const int64_t grain = std::max<int64_t>(1, norm_cpu::kTaskElems / (m * std::min(C, kStatsChannels)));
      at::parallel_for(0, N * blocks, grain, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t n = t / blocks, c0 = (t % blocks) * kStatsChannels;
          const int64_t c1 = std::min(C, c0 + kStatsChannels);
          dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
            stats_task_cl<decltype(isa)::value>(p, eps, ps, n, c0, c1);
          });
        }
      });
    }
  });
  return stats;
}

}  // namespace

TORCH_LIBRARY_IMPL(alae_fast_C, CPU, m) {
  m.impl("adain_conv2d_fwd", &adain_conv2d_fwd);
  m.impl("adain_conv2d_bwd", &adain_conv2d_bwd);
  m.impl("adain_stats_fwd", &adain_stats_fwd);
}

}  // namespace alae_fast
