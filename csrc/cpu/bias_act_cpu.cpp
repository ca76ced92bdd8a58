// CPU kernels of bias_act: y = lrelu(x + b[c]) * gain and its backward, for contiguous
// [N, C, *rest] tensors and 4-D channels_last ones (outputs keep the input's layout).
// grad_b is summed over chunks of fixed size added in a fixed order, so it does not depend on
// the number of threads.
#include "csrc/cpu/layer_common.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace alae_fast {
namespace {

using namespace layer;

// Elements per partial sum of grad_b.
constexpr int64_t kChunk = 16384;
// Float partial sums go to a double at least this often (in elements per lane group).
constexpr int64_t kFlush = 1024;
// Independent accumulators, so the adds vectorise and pipeline.
constexpr int kLanes = 16;

// x seen as [outer, channels, inner] in memory: inner = prod(rest) for a contiguous tensor,
// inner = 1 for channels_last (channels innermost) and for 2-D [N, C].
struct ChannelLayout {
  int64_t outer;
  int64_t channels;
  int64_t inner;
};

ChannelLayout channel_layout(const at::Tensor& x, const char* op, const char* name) {
  ALAE_CHECK_CPU(x.dim() >= 2, op, name, " must be at least 2-D [N, C, ...], got shape ",
                 x.sizes());
  const bool channels_last = is_channels_last_only(x);
  ALAE_CHECK_CPU(channels_last || x.is_contiguous(), op, name,
                 " must be contiguous or 4-D channels_last, got strides ", x.strides());
  const int64_t channels = x.size(1);
  const int64_t inner = channels_last ? 1 : x.numel() / std::max<int64_t>(1, x.size(0) * channels);
  const int64_t outer = x.numel() / std::max<int64_t>(1, channels * inner);
  return {outer, channels, inner};
}

// Bias in the accumulation type, zeros when there is none.
template <typename scalar_t>
std::vector<acc_t<scalar_t>> bias_acc(const c10::optional<at::Tensor>& b, int64_t channels) {
  std::vector<acc_t<scalar_t>> out(channels, acc_t<scalar_t>(0));
  if (b.has_value()) {
    const scalar_t* pb = b->data_ptr<scalar_t>();
    for (int64_t c = 0; c < channels; ++c) {
      out[c] = static_cast<acc_t<scalar_t>>(pb[c]);
    }
  }
  return out;
}

// y[i] for i in [begin, end) of the forward.
template <typename scalar_t, bool kAvx2>
ALAE_INLINE void bias_act_fwd_range(const scalar_t* x, scalar_t* y, const acc_t<scalar_t>* bias,
                                    const ChannelLayout& L, acc_t<scalar_t> pos,
                                    acc_t<scalar_t> neg, int64_t begin, int64_t end) {
  using acc = acc_t<scalar_t>;
  if (L.inner == 1) {
    // Rows of `channels` elements; the bias runs along the row.
    int64_t c = begin % L.channels;
    for (int64_t i = begin; i < end;) {
      const int64_t len = std::min(end - i, L.channels - c);
      const acc* bc = bias + c;
      map_blocks<kAvx2>(x + i, y + i, len, [&](const acc* xb, acc* yb, int64_t off, int64_t m) {
        for (int64_t j = 0; j < m; ++j) {
          const acc t = xb[j] + bc[off + j];
          yb[j] = t * (t > acc(0) ? pos : neg);
        }
      });
      i += len;
      c = 0;
    }
  } else {
    // Rows of `inner` elements of one channel; walk them instead of dividing per element.
    int64_t r = begin / L.inner;
    for (int64_t i = begin; i < end; ++r) {
      const int64_t row_end = std::min(end, (r + 1) * L.inner);
      const acc b = bias[r % L.channels];
      map_blocks<kAvx2>(x + i, y + i, row_end - i,
                        [&](const acc* xb, acc* yb, int64_t, int64_t m) {
                          for (int64_t j = 0; j < m; ++j) {
                            const acc t = xb[j] + b;
                            yb[j] = t * (t > acc(0) ? pos : neg);
                          }
                        });
      i = row_end;
    }
  }
}

// gx[j] = g[j] * (y[j] > 0 ? pos : neg) over m elements.
template <typename acc>
ALAE_INLINE void scale_grad(const acc* g, const acc* y, acc* gx, int64_t m, acc pos, acc neg) {
  for (int64_t j = 0; j < m; ++j) {
    gx[j] = g[j] * (y[j] > acc(0) ? pos : neg);
  }
}

// Sum of v[0, m) in kLanes accumulators of type acc (m is at most kFlush).
template <typename acc>
ALAE_INLINE double lane_sum(const acc* v, int64_t m) {
  acc lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= m; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      lane[k] += v[j + k];
    }
  }
  double s = 0.0;
  for (; j < m; ++j) {
    s += v[j];
  }
  for (int k = 0; k < kLanes; ++k) {
    s += lane[k];
  }
  return s;
}

// grad_x over [begin, end), one row segment of one channel; returns the sum of grad_x there.
template <typename scalar_t, bool kAvx2>
ALAE_INLINE double bias_act_bwd_segment(const scalar_t* g, const scalar_t* y, scalar_t* gx,
                                        int64_t begin, int64_t end, acc_t<scalar_t> pos,
                                        acc_t<scalar_t> neg) {
  using acc = acc_t<scalar_t>;
  double total = 0.0;
  if constexpr (is_reduced<scalar_t>()) {
    float gb[kBlock], yb[kBlock], ob[kBlock];
    for (int64_t i = begin; i < end; i += kBlock) {
      const int64_t m = std::min(kBlock, end - i);
      to_acc<kAvx2>(g + i, gb, m);
      to_acc<kAvx2>(y + i, yb, m);
      scale_grad<float>(gb, yb, ob, m, pos, neg);
      from_acc<kAvx2>(ob, gx + i, m);
      total += lane_sum<float>(ob, m);
    }
  } else {
    // The block just written is still in L1 when it is summed.
    for (int64_t i = begin; i < end; i += kFlush) {
      const int64_t m = std::min(kFlush, end - i);
      scale_grad<acc>(g + i, y + i, gx + i, m, pos, neg);
      total += lane_sum<acc>(gx + i, m);
    }
  }
  return total;
}

// Channels-innermost backward over rows [r0, r1) of `channels` elements: writes grad_x and
// adds the per-channel sums of grad_x to sums[0, channels).
template <typename scalar_t, bool kAvx2>
ALAE_INLINE void bias_act_bwd_rows_cl(const scalar_t* g, const scalar_t* y, scalar_t* gx,
                                      int64_t channels, int64_t r0, int64_t r1,
                                      acc_t<scalar_t> pos, acc_t<scalar_t> neg, double* sums) {
  using acc = acc_t<scalar_t>;
  // Float column sums are moved to the double sums every flush_rows rows.
  const int64_t flush_rows = std::max<int64_t>(1, kFlush / kLanes);
  std::vector<acc> col(channels, acc(0));
  std::vector<float> buf(is_reduced<scalar_t>() ? 3 * kBlock : 0);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t base = r * channels;
    if constexpr (is_reduced<scalar_t>()) {
      float* gb = buf.data();
      float* yb = gb + kBlock;
      float* ob = yb + kBlock;
      for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
        const int64_t m = std::min(kBlock, channels - c0);
        to_acc<kAvx2>(g + base + c0, gb, m);
        to_acc<kAvx2>(y + base + c0, yb, m);
        scale_grad<float>(gb, yb, ob, m, pos, neg);
        from_acc<kAvx2>(ob, gx + base + c0, m);
        float* colc = col.data() + c0;
        for (int64_t j = 0; j < m; ++j) {
          colc[j] += ob[j];
        }
      }
    } else {
      scale_grad<acc>(g + base, y + base, gx + base, channels, pos, neg);
      const acc* row = gx + base;
      acc* colp = col.data();
      for (int64_t c = 0; c < channels; ++c) {
        colp[c] += row[c];
      }
    }
    if ((r - r0 + 1) % flush_rows == 0 || r + 1 == r1) {
      for (int64_t c = 0; c < channels; ++c) {
        sums[c] += col[c];
        col[c] = acc(0);
      }
    }
  }
}

at::Tensor bias_act_fwd(const at::Tensor& x, const c10::optional<at::Tensor>& b, double alpha,
                        double gain) {
  constexpr const char* op = "bias_act_fwd";
  check_cpu_float(x, op, "x");
  const ChannelLayout L = channel_layout(x, op, "x");
  if (b.has_value()) {
    check_cpu_float(*b, op, "b");
    check_same_dtype(x, *b, op, "b");
    ALAE_CHECK_CPU(b->dim() == 1 && b->size(0) == L.channels && b->is_contiguous(), op,
                   "b must be contiguous of shape [", L.channels, "], got ", b->sizes());
  }
  at::Tensor y = at::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) {
    return y;
  }
  ALAE_DISPATCH_FLOATS(x.scalar_type(), op, [&] {
    using acc = acc_t<scalar_t>;
    const std::vector<acc> bias = bias_acc<scalar_t>(b, L.channels);
    const acc pos = static_cast<acc>(gain), neg = static_cast<acc>(alpha * gain);
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
        bias_act_fwd_range<scalar_t, decltype(isa)::value>(px, py, bias.data(), L, pos, neg,
                                                           begin, end);
      });
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> bias_act_bwd(const at::Tensor& grad, const at::Tensor& y,
                                                double alpha, double gain) {
  constexpr const char* op = "bias_act_bwd";
  check_cpu_float(grad, op, "grad");
  check_cpu_float(y, op, "y");
  check_same_dtype(y, grad, op, "grad");
  const ChannelLayout L = channel_layout(y, op, "y");
  ALAE_CHECK_CPU(grad.sizes() == y.sizes() &&
                     grad.is_contiguous(is_channels_last_only(y) ? at::MemoryFormat::ChannelsLast
                                                                 : at::MemoryFormat::Contiguous),
                 op, "grad must have the shape and memory format of y, got shapes ",
                 grad.sizes(), " and ", y.sizes(), ", strides ", grad.strides(), " and ",
                 y.strides());
  at::Tensor grad_x = at::empty_like(y);
  at::Tensor grad_b = at::empty({L.channels}, y.options());
  const int64_t n = y.numel();
  if (n == 0) {
    grad_b.zero_();
    return {grad_x, grad_b};
  }
  std::vector<double> totals(L.channels, 0.0);
  ALAE_DISPATCH_FLOATS(y.scalar_type(), op, [&] {
    using acc = acc_t<scalar_t>;
    const acc pos = static_cast<acc>(gain), neg = static_cast<acc>(alpha * gain);
    const scalar_t* pg = grad.data_ptr<scalar_t>();
    const scalar_t* py = y.data_ptr<scalar_t>();
    scalar_t* pgx = grad_x.data_ptr<scalar_t>();
    if (L.inner == 1) {
      // Items of rows_per_item whole rows, each with its own per-channel partial sums.
      const int64_t rows_per_item = std::max<int64_t>(1, kChunk / L.channels);
      const int64_t items = (L.outer + rows_per_item - 1) / rows_per_item;
      std::vector<double> partial(items * L.channels, 0.0);
      const int64_t grain = std::max<int64_t>(1, kGrain / (rows_per_item * L.channels));
      at::parallel_for(0, items, grain, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t r0 = t * rows_per_item, r1 = std::min(L.outer, r0 + rows_per_item);
          dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
            bias_act_bwd_rows_cl<scalar_t, decltype(isa)::value>(
                pg, py, pgx, L.channels, r0, r1, pos, neg, partial.data() + t * L.channels);
          });
        }
      });
      for (int64_t t = 0; t < items; ++t) {
        for (int64_t c = 0; c < L.channels; ++c) {
          totals[c] += partial[t * L.channels + c];
        }
      }
    } else {
      // Items are fixed kChunk-element pieces of the rows of one (outer, channel) pair.
      const int64_t chunks_per_row = (L.inner + kChunk - 1) / kChunk;
      const int64_t rows = L.outer * L.channels;
      std::vector<double> partial(rows * chunks_per_row, 0.0);
      const int64_t grain = std::max<int64_t>(1, kGrain / std::min(L.inner, kChunk));
      at::parallel_for(0, rows * chunks_per_row, grain, [&](int64_t t0, int64_t t1) {
        dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
          for (int64_t t = t0; t < t1; ++t) {
            const int64_t r = t / chunks_per_row;
            const int64_t begin = r * L.inner + (t - r * chunks_per_row) * kChunk;
            const int64_t end = std::min((r + 1) * L.inner, begin + kChunk);
            partial[t] = bias_act_bwd_segment<scalar_t, decltype(isa)::value>(pg, py, pgx, begin,
                                                                              end, pos, neg);
          }
        });
      });
      for (int64_t o = 0; o < L.outer; ++o) {
        for (int64_t c = 0; c < L.channels; ++c) {
          const double* p = partial.data() + (o * L.channels + c) * chunks_per_row;
          for (int64_t k = 0; k < chunks_per_row; ++k) {
            totals[c] += p[k];
          }
        }
      }
    }
    scalar_t* pb = grad_b.data_ptr<scalar_t>();
    for (int64_t c = 0; c < L.channels; ++c) {
      pb[c] = static_cast<scalar_t>(totals[c]);
    }
  });
  return {grad_x, grad_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(alae_fast_C, CPU, m) {
  m.impl("bias_act_fwd", &bias_act_fwd);
  m.impl("bias_act_bwd", &bias_act_bwd);
}

}  // namespace alae_fast
