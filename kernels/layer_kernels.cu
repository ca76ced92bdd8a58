// CUDA kernels of the StyleALAE layer ops: the launchers declared in layer_kernels.h and the
// kernels behind them.
//
// Torch-free on purpose (see loss_kernels.h). Every kernel loads its inputs in dtype T, computes
// in Acc (float for float32/float16/bfloat16, double for float64) and converts back to T only
// when storing.
//
// Determinism: no atomics. Row statistics are reduced by one group of threads per row (a warp
// for short rows, a block for long ones) in a fixed tree; per-channel sums over many rows are
// taken as per-(chunk, channel) partials and then added in chunk order. Every grid is a
// function of the problem size alone, so results are the same on every run and every GPU.

#include "layer_kernels.h"
#include "dtype_dispatch.cuh"
#include "kernel_common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace alae_fast {
namespace kernels {
namespace {

using namespace detail;  // kernel_common.cuh

// ---------------------------------------------------------------------------------------------
// Launch configuration
// ---------------------------------------------------------------------------------------------

// Element-wise kernels (bias_act forward, blur): 256 threads, grid-stride loops.
constexpr int kElemThreads = 256;
// The grid is sized for about 4 elements per thread.
constexpr int kElemItemsPerThread = 4;
// Cap on element-wise blocks (plenty to fill a GPU; the grid-stride loop does the rest).
constexpr int64_t kElemMaxBlocks = 8192;

// Column sums: 8 warps; each thread adds a strided set of rows of one column of a chunk.
constexpr int kColThreads = 256;
constexpr int kColWarps = kColThreads / kWarpSize;
// Passes of the block over a chunk's rows (rows per chunk = this * rows per pass).
constexpr int64_t kColPassesPerChunk = 16;
// Cap on chunks: bounds the workspace and the final pass, which adds the chunks in order.
constexpr int64_t kColMaxChunks = 512;
// Rows each thread loads before adding them (independent loads in flight), into as many sums.
constexpr int kColUnroll = 4;

// lreq_adam_step_: each block updates one chunk of one tensor.
constexpr int kAdamThreads = 512;
constexpr int64_t kAdamChunk = 65536;
// Table sizes: tensors and blocks per launch, bounded by the 4 KB kernel-parameter limit.
constexpr int kAdamMaxTensors = 36;
constexpr int kAdamMaxBlocks = 320;

static_assert(whole_warps<kElemThreads, kColThreads, kAdamThreads>(),
              "block sizes must be whole warps");

// ---------------------------------------------------------------------------------------------
// Index division
// ---------------------------------------------------------------------------------------------

// n / d for n < 2^31 and 1 <= d <= 2^31 by a multiply-high and a shift (round-up method):
// with shift = ceil(log2 d) and magic = floor(2^32 (2^shift - d) / d) + 1 < 2^32,
// n / d = (umulhi(n, magic) + n) >> shift, and the sum stays below 2^32.
struct FastDivU32 {
  uint32_t magic;
  uint32_t shift;
  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    return (__umulhi(n, magic) + n) >> shift;
  }
};

// Plain 64-bit division, for tensors of 2^31 elements or more.
struct PlainDiv64 {
  int64_t divisor;
  __device__ __forceinline__ int64_t div(int64_t n) const { return n / divisor; }
};

// Divider<Index>: the divider used with Index, and make(d) building one on the host.
template <typename Index>
struct Divider;
template <>
struct Divider<uint32_t> {
  using type = FastDivU32;
  static FastDivU32 make(int64_t d) {
    uint32_t shift = 0;
    while ((uint64_t{1} << shift) < static_cast<uint64_t>(d)) ++shift;
    const uint64_t magic =
        ((uint64_t{1} << 32) * ((uint64_t{1} << shift) - static_cast<uint64_t>(d))) /
            static_cast<uint64_t>(d) +
        1;
    return {static_cast<uint32_t>(magic), shift};
  }
};
template <>
struct Divider<int64_t> {
  using type = PlainDiv64;
  static PlainDiv64 make(int64_t d) { return {d}; }
};
template <typename Index>
using divider_t = typename Divider<Index>::type;

// Largest element count served by 32-bit index arithmetic (FastDivU32 needs n < 2^31).
constexpr int64_t kMax32BitNumel = (int64_t{1} << 31) - 1;

// Calls f(index) with a uint32_t for numel <= kMax32BitNumel, else an int64_t.
template <typename F>
cudaError_t with_index_type(int64_t numel, F&& f) {
  if (numel <= kMax32BitNumel) return f(uint32_t{0});
  return f(int64_t{0});
}

// Blocks along x of an element-wise grid-stride loop over numel >= 1 elements.
unsigned elem_num_blocks(int64_t numel) {
  const int64_t blocks = ceil_div(numel, int64_t{kElemThreads} * kElemItemsPerThread);
  return static_cast<unsigned>(min64(blocks < 1 ? 1 : blocks, kElemMaxBlocks));
}

// ---------------------------------------------------------------------------------------------
// Column sums: out[c] = sum over r < rows of term(r, c)
// ---------------------------------------------------------------------------------------------

// Shape of a column-sum grid; a function of (rows, cols) only. A warp covers rows_per_warp
// consecutive rows of tile_cols columns (several rows at once when cols < 32, so that narrow
// matrices still use whole warps); grid (chunks, col_tiles).
struct ColumnSumPlan {
  int tile_cols;
  int rows_per_warp;
  int64_t col_tiles;
  int64_t rows_per_chunk;
  int64_t chunks;
};

// rows >= 1, cols >= 1. single_chunk puts all rows in one chunk (the final pass over partials).
ColumnSumPlan plan_column_sum(int64_t rows, int64_t cols, bool single_chunk) {
  ColumnSumPlan plan;
  plan.tile_cols = static_cast<int>(min64(cols, kWarpSize));
  plan.rows_per_warp = kWarpSize / plan.tile_cols;
  plan.col_tiles = ceil_div(cols, plan.tile_cols);
  if (single_chunk) {
    plan.rows_per_chunk = rows;
  } else {
    plan.rows_per_chunk = int64_t{kColWarps} * plan.rows_per_warp * kColPassesPerChunk;
    if (ceil_div(rows, plan.rows_per_chunk) > kColMaxChunks) {
      plan.rows_per_chunk = ceil_div(rows, kColMaxChunks);
    }
  }
  plan.chunks = ceil_div(rows, plan.rows_per_chunk);
  return plan;
}

// Accumulators a column sum needs between its two passes (0 when one chunk does it all).
int64_t column_sum_workspace_elems(int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return 0;
  const ColumnSumPlan plan = plan_column_sum(rows, cols, false);
  return plan.chunks > 1 ? plan.chunks * cols : 0;
}

// Block (chunk, tile) sums column tile * tile_cols + (lane % tile_cols) over the chunk's rows:
// each thread adds every rows_per_pass-th row, round-robin into kColUnroll sums that are then
// added in a fixed order, and one thread per column adds the block's per-thread sums in
// (warp, sub-row) order. With one chunk the result goes to out[c] (converted to OutT), else to
// partials[chunk * cols + c].
//
// Term: load(r, c) reads what element (r, c) needs; apply(r, c, loaded) returns the value to
// add (and may store a per-element output). The split lets a thread issue the loads of
// kColUnroll rows before any store.
template <typename Acc, typename OutT, typename Term>
__global__ void __launch_bounds__(kColThreads)
    column_sum_kernel(Term term, int64_t rows, int64_t cols, int tile_cols, int rows_per_warp,
                      int64_t col_tiles, int64_t rows_per_chunk, Acc* __restrict__ partials,
                      OutT* __restrict__ out) {
  __shared__ Acc thread_sums[kColThreads];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int sub_row = lane / tile_cols;
  const int col_in_tile = lane % tile_cols;
  const bool active = sub_row < rows_per_warp;
  const int64_t rows_per_pass = int64_t{kColWarps} * rows_per_warp;
  const int64_t row_begin = int64_t{blockIdx.x} * rows_per_chunk;
  const int64_t row_end = min64(rows, row_begin + rows_per_chunk);
  const int64_t my_first_row = row_begin + int64_t{warp} * rows_per_warp + sub_row;
  // The tile loop is uniform across the block, so every thread reaches both barriers.
  for (int64_t tile = blockIdx.y; tile < col_tiles; tile += gridDim.y) {
    const int64_t col = tile * tile_cols + col_in_tile;
    Acc sum = Acc(0);
    if (active && col < cols) {
      Acc sums[kColUnroll];
#pragma unroll
      for (int k = 0; k < kColUnroll; ++k) sums[k] = Acc(0);
      int64_t r = my_first_row;
      for (; r + (kColUnroll - 1) * rows_per_pass < row_end; r += kColUnroll * rows_per_pass) {
        typename Term::Loaded loaded[kColUnroll];
#pragma unroll
        for (int k = 0; k < kColUnroll; ++k) loaded[k] = term.load(r + k * rows_per_pass, col);
#pragma unroll
        for (int k = 0; k < kColUnroll; ++k) {
          sums[k] += term.apply(r + k * rows_per_pass, col, loaded[k]);
        }
      }
      for (; r < row_end; r += rows_per_pass) sums[0] += term.apply(r, col, term.load(r, col));
      static_assert(kColUnroll == 4, "the combination below adds four sums");
      sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
    }
    thread_sums[threadIdx.x] = sum;
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < tile_cols) {
      const int64_t c = tile * tile_cols + threadIdx.x;
      if (c < cols) {
        Acc total = Acc(0);
        for (int w = 0; w < kColWarps; ++w) {
          for (int s = 0; s < rows_per_warp; ++s) {
            total += thread_sums[w * kWarpSize + s * tile_cols + threadIdx.x];
          }
        }
        if (gridDim.x == 1) {
          out[c] = from_acc<OutT>(total);
        } else {
          partials[int64_t{blockIdx.x} * cols + c] = total;
        }
      }
    }
    __syncthreads();
  }
}

// term(r, c) = m[r * cols + c] of a row-major matrix of accumulators.
template <typename Acc>
struct AccMatrixTerm {
  using Loaded = Acc;
  const Acc* __restrict__ m;
  int64_t cols;
  __device__ __forceinline__ Acc load(int64_t r, int64_t c) const { return m[r * cols + c]; }
  __device__ __forceinline__ Acc apply(int64_t, int64_t, Acc v) const { return v; }
};

// out[c] = sum over r of term(r, c) for c < cols, in dtype T. partials holds
// column_sum_workspace_elems(rows, cols) accumulators. rows == 0 gives zeros.
template <typename T, typename Term>
cudaError_t launch_column_sum(const Term& term, int64_t rows, int64_t cols, T* out,
                              acc_t<T>* partials, cudaStream_t stream) {
  using Acc = acc_t<T>;
  if (cols <= 0) return cudaSuccess;
  if (rows <= 0) return cudaMemsetAsync(out, 0, static_cast<size_t>(cols) * sizeof(T), stream);
  const ColumnSumPlan plan = plan_column_sum(rows, cols, false);
  const dim3 grid(static_cast<unsigned>(plan.chunks),
                  static_cast<unsigned>(min64(plan.col_tiles, kMaxGridY)));
  column_sum_kernel<Acc, T, Term><<<grid, kColThreads, 0, stream>>>(
      term, rows, cols, plan.tile_cols, plan.rows_per_warp, plan.col_tiles, plan.rows_per_chunk,
      partials, out);
  if (plan.chunks > 1) {
    const ColumnSumPlan final_plan = plan_column_sum(plan.chunks, cols, true);
    const dim3 final_grid(1, static_cast<unsigned>(min64(final_plan.col_tiles, kMaxGridY)));
    column_sum_kernel<Acc, T, AccMatrixTerm<Acc>><<<final_grid, kColThreads, 0, stream>>>(
        AccMatrixTerm<Acc>{partials, cols}, plan.chunks, cols, final_plan.tile_cols,
        final_plan.rows_per_warp, final_plan.col_tiles, final_plan.rows_per_chunk, nullptr, out);
  }
  return cudaGetLastError();
}

// ---------------------------------------------------------------------------------------------
// bias_act
// ---------------------------------------------------------------------------------------------

// y[i] = lrelu(x[i] + b[(i / inner) % channels]) * gain.
template <typename T, typename Index>
__global__ void __launch_bounds__(kElemThreads)
    bias_act_forward_kernel(const T* __restrict__ x, const T* __restrict__ b, Index numel,
                            divider_t<Index> inner_div, divider_t<Index> channel_div,
                            Index channels, acc_t<T> alpha, acc_t<T> gain, T* __restrict__ y) {
  using Acc = acc_t<T>;
  const Index stride = static_cast<Index>(gridDim.x) * kElemThreads;
  for (Index i = static_cast<Index>(blockIdx.x) * kElemThreads + threadIdx.x; i < numel;
       i += stride) {
    Acc t = to_acc(x[i]);
    if (b != nullptr) {
      const Index q = inner_div.div(i);
      const Index c = q - channel_div.div(q) * channels;
      t += to_acc(b[c]);
    }
    y[i] = from_acc<T>(lrelu(t, alpha) * gain);
  }
}

// Column-sum term of the inner == 1 layouts ([outer, C] in memory): computes and stores
// grad_x = grad * (y > 0 ? pos_slope : neg_slope) of element (r, c) and returns it, so grad_b
// is summed in the same pass.
template <typename T>
struct BiasActGradTerm {
  struct Loaded {
    acc_t<T> grad;
    acc_t<T> y;
  };
  const T* __restrict__ grad;
  const T* __restrict__ y;
  T* __restrict__ grad_x;
  int64_t cols;
  acc_t<T> pos_slope;
  acc_t<T> neg_slope;
  __device__ __forceinline__ Loaded load(int64_t r, int64_t c) const {
    const int64_t i = r * cols + c;
    return {to_acc(grad[i]), to_acc(y[i])};
  }
  __device__ __forceinline__ acc_t<T> apply(int64_t r, int64_t c, const Loaded& v) const {
    const acc_t<T> gx = v.grad * (v.y > acc_t<T>(0) ? pos_slope : neg_slope);
    grad_x[r * cols + c] = from_acc<T>(gx);
    return gx;
  }
};

// inner > 1: rows of `inner` contiguous elements (row = o * C + c); writes grad_x and the
// row's sum of grad_x to row_sums[row].
template <typename T, int kGroup>
__global__ void __launch_bounds__(RowBlock<kGroup>::kThreads)
    bias_act_backward_rows_kernel(const T* __restrict__ grad, const T* __restrict__ y,
                                  int64_t rows, int64_t row_len, acc_t<T> pos_slope,
                                  acc_t<T> neg_slope, T* __restrict__ grad_x,
                                  acc_t<T>* __restrict__ row_sums) {
  using Acc = acc_t<T>;
  constexpr int64_t kTile = int64_t{kGroup} * kRowItems;
  const int lane = threadIdx.x % kGroup;
  for (int64_t row = first_row<kGroup>(); row < rows; row += row_step<kGroup>()) {
    const int64_t base = row * row_len;
    Acc sum = Acc(0);
    for (int64_t tile = 0; tile < row_len; tile += kTile) {
      Acc g[kRowItems];
      Acc v[kRowItems];
#pragma unroll
      for (int k = 0; k < kRowItems; ++k) {
        const int64_t j = tile + lane + int64_t{k} * kGroup;
        g[k] = j < row_len ? to_acc(grad[base + j]) : Acc(0);
        v[k] = j < row_len ? to_acc(y[base + j]) : Acc(0);
      }
#pragma unroll
      for (int k = 0; k < kRowItems; ++k) {
        const int64_t j = tile + lane + int64_t{k} * kGroup;
        if (j < row_len) {
          const Acc gx = g[k] * (v[k] > Acc(0) ? pos_slope : neg_slope);
          grad_x[base + j] = from_acc<T>(gx);
          sum += gx;
        }
      }
    }
    sum = group_reduce<kGroup>(sum);
    if (lane == 0) row_sums[row] = sum;
  }
}

// ---------------------------------------------------------------------------------------------
// blur
// ---------------------------------------------------------------------------------------------

// y = 3x3 [1,2,1] x [1,2,1] / 16 filter, zero padding. Element i has column w = (i / w_stride)
// % width and row h = (i / (w_stride * width)) % height, for both layouts (contiguous:
// w_stride = 1; channels_last: w_stride = C); its neighbours are i +- w_stride and
// i +- h_stride (h_stride = w_stride * width). Sums of integer-weighted values, scaled by
// 1/16 once (exact), in Acc.
template <typename T, typename Index>
__global__ void __launch_bounds__(kElemThreads)
    blur_forward_kernel(const T* __restrict__ x, Index numel, divider_t<Index> w_stride_div,
                        divider_t<Index> width_div, divider_t<Index> height_div, Index width,
                        Index height, Index w_stride, Index h_stride, T* __restrict__ y) {
  using Acc = acc_t<T>;
  const Index stride = static_cast<Index>(gridDim.x) * kElemThreads;
  for (Index i = static_cast<Index>(blockIdx.x) * kElemThreads + threadIdx.x; i < numel;
       i += stride) {
    const Index q = w_stride_div.div(i);    // (n, c, h) * width + w, or (n, h) * width + w
    const Index nh = width_div.div(q);      // (n, c) * height + h, or n * height + h
    const Index w = q - nh * width;
    const Index h = nh - height_div.div(nh) * height;
    const bool has_left = w > 0;
    const bool has_right = w + 1 < width;
    // 1-2-1 sum along the row through element `center`.
    const auto row_sum = [&](Index center) -> Acc {
      Acc s = Acc(2) * to_acc(x[center]);
      if (has_left) s += to_acc(x[center - w_stride]);
      if (has_right) s += to_acc(x[center + w_stride]);
      return s;
    };
    Acc total = Acc(2) * row_sum(i);
    if (h > 0) total += row_sum(i - h_stride);
    if (h + 1 < height) total += row_sum(i + h_stride);
    y[i] = from_acc<T>(total * Acc(0.0625));
  }
}

// ---------------------------------------------------------------------------------------------
// encode_norm and adain
// ---------------------------------------------------------------------------------------------

// Arguments of the normalisation kernels; a row is (n, c) of a contiguous [N, C, M] tensor.
// Absent optional inputs are nullptr. Unused outputs are nullptr.
template <typename T>
struct NormArgs {
  const T* x;
  const T* bias;          // [C]
  const T* noise;         // [N, M]
  const T* noise_weight;  // [C]
  const T* style;         // adain: [N, 2C] (scale | shift)
  const T* grad_y;        // backward: [N, C, M]
  const T* grad_style;    // encode_norm backward: [N, 2C] (g_mu | g_std)
  const acc_t<T>* stats_in;  // backward: stats of the forward
  int64_t rows;           // N * C
  int64_t channels;       // C
  int64_t row_len;        // M
  acc_t<T> alpha;
  acc_t<T> eps;
  T* y;                   // forward output / backward grad_x
  T* style_out;           // encode_norm forward: [N, 2C] (mu | std); adain backward: grad_style
  acc_t<T>* stats_out;    // forward stats
  acc_t<T>* bias_sums;    // backward: per-row sums of grad_x (grad_bias partials) [N * C]
  acc_t<T>* noise_sums;   // adain backward with noise: per-row sums of grad_t * noise
};

template <typename T>
__device__ __forceinline__ RowPreact<T> row_preact(const NormArgs<T>& args, int64_t row,
                                                   int64_t n, int64_t c) {
  using Acc = acc_t<T>;
  RowPreact<T> pre;
  pre.x = args.x + row * args.row_len;
  pre.noise = args.noise != nullptr ? args.noise + n * args.row_len : nullptr;
  pre.noise_weight = args.noise != nullptr ? to_acc(args.noise_weight[c]) : Acc(0);
  pre.bias = args.bias != nullptr ? to_acc(args.bias[c]) : Acc(0);
  return pre;
}

// Forward of encode_norm (kAdain false) and adain (kAdain true), one group per row:
// pass 1 computes the row's mean and variance, pass 2 writes y.
template <typename T, int kGroup, bool kAdain>
__global__ void __launch_bounds__(RowBlock<kGroup>::kThreads)
    norm_forward_kernel(NormArgs<T> args) {
  using Acc = acc_t<T>;
  constexpr int64_t kTile = int64_t{kGroup} * kRowItems;
  const int lane = threadIdx.x % kGroup;
  const int64_t C = args.channels;
  const int64_t M = args.row_len;
  for (int64_t row = first_row<kGroup>(); row < args.rows; row += row_step<kGroup>()) {
    const int64_t n = row / C;
    const int64_t c = row - n * C;
    const RowPreact<T> pre = row_preact(args, row, n, c);
    const MeanM2<Acc> stats = row_mean_m2<kGroup>(pre, M, args.alpha, lane);
    const Acc mu = stats.mean;
    const Acc var = stats.m2 / Acc(M);
    const Acc rstd = Acc(1) / sqrt(var + args.eps);
    Acc scale = Acc(1);
    Acc shift = Acc(0);
    if constexpr (kAdain) {
      scale = Acc(1) + to_acc(args.style[n * 2 * C + c]);
      shift = to_acc(args.style[n * 2 * C + C + c]);
      if (lane == 0) {
        args.stats_out[n * 2 * C + c] = mu;
        args.stats_out[n * 2 * C + C + c] = rstd;
      }
    } else {
      if (lane == 0) {
        const Acc sd = sqrt(var);
        args.style_out[n * 2 * C + c] = from_acc<T>(mu);
        args.style_out[n * 2 * C + C + c] = from_acc<T>(sd);
        args.stats_out[n * 3 * C + c] = mu;
        args.stats_out[n * 3 * C + C + c] = sd;
        args.stats_out[n * 3 * C + 2 * C + c] = rstd;
      }
    }
    T* y = args.y + row * M;
    for (int64_t tile = 0; tile < M; tile += kTile) {
      Acc a[kRowItems];
#pragma unroll
      for (int k = 0; k < kRowItems; ++k) {
        const int64_t j = tile + lane + int64_t{k} * kGroup;
        a[k] = j < M ? lrelu(pre(j), args.alpha) : Acc(0);
      }
#pragma unroll
      for (int k = 0; k < kRowItems; ++k) {
        const int64_t j = tile + lane + int64_t{k} * kGroup;
        if (j < M) {
          const Acc xn = (a[k] - mu) * rstd;
          y[j] = from_acc<T>(kAdain ? xn * scale + shift : xn);
        }
      }
    }
  }
}

// Pass 1 of the norm backward kernels: (Sg, Sgd, Sd) = sums of g, g * d and d over a row, with
// d = lrelu(t) - mu. In exact arithmetic Sd = 0; in Acc it is not, since mu (stored in Acc) is
// off the true mean by up to half an ulp of mu, and that offset times M would dominate small
// gradients when |mu| >> std. The kernels therefore use centred deviations d - Sd / M.
template <int kGroup, typename T>
__device__ __forceinline__ Sums<acc_t<T>, 3> row_grad_sums(const RowPreact<T>& pre,
                                                           const T* __restrict__ grad_y,
                                                           int64_t row_len, acc_t<T> mu,
                                                           acc_t<T> alpha, int lane) {
  using Acc = acc_t<T>;
  constexpr int64_t kTile = int64_t{kGroup} * kRowItems;
  Sums<Acc, 3> sums{{Acc(0), Acc(0), Acc(0)}};
  for (int64_t tile = 0; tile < row_len; tile += kTile) {
    Acc g[kRowItems];
    Acc t[kRowItems];
#pragma unroll
    for (int k = 0; k < kRowItems; ++k) {
      const int64_t j = tile + lane + int64_t{k} * kGroup;
      g[k] = j < row_len ? to_acc(grad_y[j]) : Acc(0);
      t[k] = j < row_len ? pre(j) : Acc(0);
    }
#pragma unroll
    for (int k = 0; k < kRowItems; ++k) {
      if (tile + lane + int64_t{k} * kGroup < row_len) {
        const Acc d = lrelu(t[k], alpha) - mu;
        sums.v[0] += g[k];
        sums.v[1] += g[k] * d;
        sums.v[2] += d;
      }
    }
  }
  return group_reduce<kGroup>(sums);
}

// Backward of encode_norm, one group per row. Pass 1: Sg = sum(g), Sgy = sum(g * y) with
// y = d * rstd (d centred, see row_grad_sums); pass 2: grad_x = s(t) * (rstd * g + c0 + c1 * d)
// and the row's sum of grad_x (to bias_sums[row]).
template <typename T, int kGroup>
__global__ void __launch_bounds__(RowBlock<kGroup>::kThreads)
    encode_norm_backward_kernel(NormArgs<T> args) {
  using Acc = acc_t<T>;
  constexpr int64_t kTile = int64_t{kGroup} * kRowItems;
  const int lane = threadIdx.x % kGroup;
  const int64_t C = args.channels;
  const int64_t M = args.row_len;
  const Acc m_acc = Acc(M);
  for (int64_t row = first_row<kGroup>(); row < args.rows; row += row_step<kGroup>()) {
    const int64_t n = row / C;
    const int64_t c = row - n * C;
    const RowPreact<T> pre = row_preact(args, row, n, c);
    const Acc mu = args.stats_in[n * 3 * C + c];
    const Acc sd = args.stats_in[n * 3 * C + C + c];
    const Acc rstd = args.stats_in[n * 3 * C + 2 * C + c];
    const Acc g_mu = to_acc(args.grad_style[n * 2 * C + c]);
    const Acc g_std = to_acc(args.grad_style[n * 2 * C + C + c]);
    const T* grad_y = args.grad_y + row * M;

    const Sums<Acc, 3> sums = row_grad_sums<kGroup>(pre, grad_y, M, mu, args.alpha, lane);
    const Acc sum_g = sums.v[0];
    const Acc mean_d = sums.v[2] / m_acc;
    const Acc sum_gy = (sums.v[1] - mean_d * sum_g) * rstd;
    const Acc c0 = -rstd * sum_g / m_acc + g_mu / m_acc;
    // No std gradient means no std term, even for a constant row (std 0, where 0/0 is NaN).
    const Acc std_term = g_std == Acc(0) ? Acc(0) : g_std / (m_acc * sd);
    const Acc c1 = -rstd * rstd * sum_gy / m_acc + std_term;

    T* grad_x = args.y + row * M;
    Acc row_sum = Acc(0);
    for (int64_t tile = 0; tile < M; tile += kTile) {
      Acc g[kRowItems];
      Acc t[kRowItems];
#pragma unroll
      for (int k = 0; k < kRowItems; ++k) {
        const int64_t j = tile + lane + int64_t{k} * kGroup;
        g[k] = j < M ? to_acc(grad_y[j]) : Acc(0);
        t[k] = j < M ? pre(j) : Acc(0);
      }
#pragma unroll
      for (int k = 0; k < kRowItems; ++k) {
        const int64_t j = tile + lane + int64_t{k} * kGroup;
        if (j < M) {
          const Acc d = (lrelu(t[k], args.alpha) - mu) - mean_d;
          const Acc slope = t[k] > Acc(0) ? Acc(1) : args.alpha;
          const Acc gx = slope * (rstd * g[k] + c0 + c1 * d);
          grad_x[j] = from_acc<T>(gx);
          row_sum += gx;
        }
      }
    }
    row_sum = group_reduce<kGroup>(row_sum);
    if (lane == 0) args.bias_sums[row] = row_sum;
  }
}

// Backward of adain, one group per row. Pass 1: Sg = sum(g), Sgx = sum(g * xn) with
// xn = d * rstd (d centred, see row_grad_sums), written to grad_style; pass 2:
// gt = s(t) * k * (g - Sg / M - xn * Sgx / M) with k = (1 + scale) * rstd, and the row's sums
// of gt (to bias_sums) and of gt * noise (to noise_sums, with noise).
template <typename T, int kGroup>
__global__ void __launch_bounds__(RowBlock<kGroup>::kThreads)
    adain_backward_kernel(NormArgs<T> args) {
  using Acc = acc_t<T>;
  constexpr int64_t kTile = int64_t{kGroup} * kRowItems;
  const int lane = threadIdx.x % kGroup;
  const int64_t C = args.channels;
  const int64_t M = args.row_len;
  const Acc m_acc = Acc(M);
  for (int64_t row = first_row<kGroup>(); row < args.rows; row += row_step<kGroup>()) {
    const int64_t n = row / C;
    const int64_t c = row - n * C;
    const RowPreact<T> pre = row_preact(args, row, n, c);
    const Acc mu = args.stats_in[n * 2 * C + c];
    const Acc rstd = args.stats_in[n * 2 * C + C + c];
    const Acc scale = Acc(1) + to_acc(args.style[n * 2 * C + c]);
    const T* grad_y = args.grad_y + row * M;

    const Sums<Acc, 3> sums = row_grad_sums<kGroup>(pre, grad_y, M, mu, args.alpha, lane);
    const Acc sum_g = sums.v[0];
    const Acc mean_d = sums.v[2] / m_acc;
    const Acc sum_gx = (sums.v[1] - mean_d * sum_g) * rstd;
    if (lane == 0) {
      args.style_out[n * 2 * C + c] = from_acc<T>(sum_gx);
      args.style_out[n * 2 * C + C + c] = from_acc<T>(sum_g);
    }
    const Acc k_scale = scale * rstd;
    const Acc mean_g = sum_g / m_acc;
    const Acc mean_gx = sum_gx / m_acc;

    T* grad_x = args.y + row * M;
    Sums<Acc, 2> row_sums{{Acc(0), Acc(0)}};  // (sum gt, sum gt * noise)
    for (int64_t tile = 0; tile < M; tile += kTile) {
      Acc g[kRowItems];
      Acc t[kRowItems];
#pragma unroll
      for (int k = 0; k < kRowItems; ++k) {
        const int64_t j = tile + lane + int64_t{k} * kGroup;
        g[k] = j < M ? to_acc(grad_y[j]) : Acc(0);
        t[k] = j < M ? pre(j) : Acc(0);
      }
#pragma unroll
      for (int k = 0; k < kRowItems; ++k) {
        const int64_t j = tile + lane + int64_t{k} * kGroup;
        if (j < M) {
          const Acc xn = ((lrelu(t[k], args.alpha) - mu) - mean_d) * rstd;
          const Acc slope = t[k] > Acc(0) ? Acc(1) : args.alpha;
          const Acc gt = slope * (k_scale * (g[k] - mean_g - xn * mean_gx));
          grad_x[j] = from_acc<T>(gt);
          row_sums.v[0] += gt;
          if (pre.noise != nullptr) row_sums.v[1] += gt * to_acc(pre.noise[j]);
        }
      }
    }
    row_sums = group_reduce<kGroup>(row_sums);
    if (lane == 0) {
      args.bias_sums[row] = row_sums.v[0];
      if (args.noise_sums != nullptr) args.noise_sums[row] = row_sums.v[1];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// lreq_adam_step_
// ---------------------------------------------------------------------------------------------

// Tensors and (tensor, chunk) blocks of one launch, passed by value as a kernel parameter.
struct AdamTable {
  void* params[kAdamMaxTensors];
  const void* grads[kAdamMaxTensors];
  void* exp_avg_sqs[kAdamMaxTensors];
  int64_t numels[kAdamMaxTensors];
  double neg_steps[kAdamMaxTensors];
  int32_t block_chunk[kAdamMaxBlocks];
  uint8_t block_tensor[kAdamMaxBlocks];
};
static_assert(sizeof(AdamTable) <= 3900, "AdamTable must fit the 4 KB kernel-parameter limit");
static_assert(kAdamMaxTensors <= 256, "block_tensor is a uint8_t");

// The scalars as the caller gave them (doubles); each kernel rounds them as its sequence says.
struct AdamScalars {
  double beta2;
  double one_minus_beta2;
  double eps;
  double weight_decay;
  bool has_weight_decay;
};

// IEEE operations with round-to-nearest that nvcc never fuses into an fma.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double sqrt_rn(double a) { return __dsqrt_rn(a); }
__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_rn(double a, double b, double c) {
  return __fma_rn(a, b, c);
}

// x (in Acc) rounded to T and back: the value a T tensor would store.
template <typename T>
__device__ __forceinline__ acc_t<T> round_to(acc_t<T> x) {
  return to_acc(from_acc<T>(x));
}

// A double scalar rounded directly to T (one rounding), as an Acc value.
template <typename T>
__device__ __forceinline__ acc_t<T> scalar_as(double s);
template <>
__device__ __forceinline__ float scalar_as<float>(double s) { return __double2float_rn(s); }
template <>
__device__ __forceinline__ double scalar_as<double>(double s) { return s; }
template <>
__device__ __forceinline__ float scalar_as<__half>(double s) {
  return __half2float(__double2half(s));
}
template <>
__device__ __forceinline__ float scalar_as<__nv_bfloat16>(double s) {
  return __bfloat162float(__double2bfloat16(s));
}

// The scalar as the sequence uses it: rounded to Acc (PyTorch's CUDA kernels convert scalars to
// their opmath type) or to T (the separately rounded sequence).
template <typename T, AdamRounding kRounding>
__device__ __forceinline__ acc_t<T> adam_scalar(double s) {
  if constexpr (kRounding == AdamRounding::kTorchCuda) {
    return scalar_as<acc_t<T>>(s);
  } else {
    return scalar_as<T>(s);
  }
}

// Block b updates chunk block_chunk[b] of tensor block_tensor[b]; see AdamRounding for the two
// sequences. Every op's result is rounded to T (a no-op for float32 and float64).
template <typename T, AdamRounding kRounding>
__global__ void __launch_bounds__(kAdamThreads)
    lreq_adam_kernel(AdamTable table, AdamScalars scalars) {
  using Acc = acc_t<T>;
  const int tensor = table.block_tensor[blockIdx.x];
  const int64_t begin = int64_t{table.block_chunk[blockIdx.x]} * kAdamChunk;
  const int64_t end = min64(table.numels[tensor], begin + kAdamChunk);
  T* __restrict__ params = static_cast<T*>(table.params[tensor]);
  const T* __restrict__ grads = static_cast<const T*>(table.grads[tensor]);
  T* __restrict__ exp_avg_sqs = static_cast<T*>(table.exp_avg_sqs[tensor]);

  const Acc beta2 = adam_scalar<T, kRounding>(scalars.beta2);
  const Acc one_minus_beta2 = adam_scalar<T, kRounding>(scalars.one_minus_beta2);
  const Acc eps = adam_scalar<T, kRounding>(scalars.eps);
  const Acc weight_decay = adam_scalar<T, kRounding>(scalars.weight_decay);
  const Acc neg_step = adam_scalar<T, kRounding>(table.neg_steps[tensor]);

  for (int64_t i = begin + threadIdx.x; i < end; i += kAdamThreads) {
    const Acc p = to_acc(params[i]);
    Acc g = to_acc(grads[i]);
    Acc v = to_acc(exp_avg_sqs[i]);
    Acc denom;
    Acc p_new;
    if constexpr (kRounding == AdamRounding::kTorchCuda) {
      if (scalars.has_weight_decay) g = round_to<T>(fma_rn(weight_decay, p, g));
      v = round_to<T>(mul_rn(v, beta2));
      v = round_to<T>(fma_rn(one_minus_beta2, mul_rn(g, g), v));
      denom = round_to<T>(sqrt_rn(v));
      denom = round_to<T>(add_rn(denom, eps));
      p_new = round_to<T>(fma_rn(neg_step, div_rn(g, denom), p));
    } else {
      if (scalars.has_weight_decay) g = round_to<T>(add_rn(g, mul_rn(weight_decay, p)));
      v = round_to<T>(mul_rn(v, beta2));
      v = round_to<T>(add_rn(v, mul_rn(mul_rn(one_minus_beta2, g), g)));
      denom = round_to<T>(sqrt_rn(v));
      denom = round_to<T>(add_rn(denom, eps));
      p_new = round_to<T>(add_rn(p, div_rn(mul_rn(neg_step, g), denom)));
    }
    exp_avg_sqs[i] = from_acc<T>(v);
    params[i] = from_acc<T>(p_new);
  }
}

template <typename T, AdamRounding kRounding>
cudaError_t launch_adam_table(const AdamTable& table, int blocks, const AdamScalars& scalars,
                              cudaStream_t stream) {
  lreq_adam_kernel<T, kRounding><<<blocks, kAdamThreads, 0, stream>>>(table, scalars);
  return cudaGetLastError();
}

// Workspace of a backward whose per-row sums ([rows_sums_count] accumulators, `sum_arrays` of
// them) are then summed per channel over N rows of C: the row-sum arrays, then the column-sum
// partials (shared by the column sums, which run one after the other on the stream).
struct RowSumWorkspace {
  size_t row_sums_bytes;  // one array, rounded up to 256 bytes
  size_t total_bytes;
};

RowSumWorkspace row_sum_workspace(DType dtype, int64_t n, int64_t channels, int sum_arrays) {
  RowSumWorkspace ws{0, 0};
  if (n <= 0 || channels <= 0) return ws;
  const size_t acc = acc_bytes(dtype);
  ws.row_sums_bytes = align_up(static_cast<size_t>(n) * static_cast<size_t>(channels) * acc);
  ws.total_bytes = ws.row_sums_bytes * static_cast<size_t>(sum_arrays) +
                   align_up(static_cast<size_t>(column_sum_workspace_elems(n, channels)) * acc);
  return ws;
}

template <typename T>
acc_t<T>* workspace_at(void* workspace, size_t offset_bytes) {
  return reinterpret_cast<acc_t<T>*>(static_cast<unsigned char*>(workspace) + offset_bytes);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

cudaError_t bias_act_forward(DType dtype, const void* x, const void* b, int64_t outer,
                             int64_t channels, int64_t inner, double alpha, double gain, void* y,
                             cudaStream_t stream) {
  if (outer < 0 || channels < 0 || inner < 0) return cudaErrorInvalidValue;
  const int64_t numel = outer * channels * inner;
  if (numel == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    return with_index_type(numel, [&](auto index_tag) {
      using Index = decltype(index_tag);
      bias_act_forward_kernel<T, Index><<<elem_num_blocks(numel), kElemThreads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(b), static_cast<Index>(numel),
          Divider<Index>::make(inner), Divider<Index>::make(channels),
          static_cast<Index>(channels), static_cast<Acc>(alpha), static_cast<Acc>(gain),
          static_cast<T*>(y));
      return cudaGetLastError();
    });
  });
}

// inner > 1: row sums [outer * C], then the column-sum partials over [outer, C].
// inner == 1: the column-sum partials over [outer, C] only.
size_t bias_act_backward_workspace_bytes(DType dtype, int64_t outer, int64_t channels,
                                         int64_t inner) {
  if (outer <= 0 || channels <= 0 || inner <= 0) return 0;
  return row_sum_workspace(dtype, outer, channels, inner > 1 ? 1 : 0).total_bytes;
}

cudaError_t bias_act_backward(DType dtype, const void* grad, const void* y, int64_t outer,
                              int64_t channels, int64_t inner, double alpha, double gain,
                              void* grad_x, void* grad_b, void* workspace, cudaStream_t stream) {
  if (outer < 0 || channels < 0 || inner < 0) return cudaErrorInvalidValue;
  if (channels == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    const Acc pos_slope = static_cast<Acc>(gain);
    const Acc neg_slope = static_cast<Acc>(alpha * gain);
    const T* grad_t = static_cast<const T*>(grad);
    const T* y_t = static_cast<const T*>(y);
    T* grad_x_t = static_cast<T*>(grad_x);
    T* grad_b_t = static_cast<T*>(grad_b);
    if (outer == 0 || inner == 0) {
      return cudaMemsetAsync(grad_b, 0, static_cast<size_t>(channels) * sizeof(T), stream);
    }
    if (inner == 1) {
      // grad_x is computed inside the column sum; the workspace holds its partials only.
      const BiasActGradTerm<T> term{grad_t, y_t, grad_x_t, channels, pos_slope, neg_slope};
      return launch_column_sum<T>(term, outer, channels, grad_b_t, workspace_at<T>(workspace, 0),
                                  stream);
    }
    const RowSumWorkspace ws = row_sum_workspace(dtype, outer, channels, 1);
    Acc* row_sums = workspace_at<T>(workspace, 0);
    const int64_t rows = outer * channels;
    const cudaError_t err = with_row_group(inner, [&](auto group) {
      constexpr int kGroup = decltype(group)::value;
      bias_act_backward_rows_kernel<T, kGroup>
          <<<row_num_blocks<kGroup>(rows), RowBlock<kGroup>::kThreads, 0, stream>>>(
              grad_t, y_t, rows, inner, pos_slope, neg_slope, grad_x_t, row_sums);
      return cudaGetLastError();
    });
    if (err != cudaSuccess) return err;
    return launch_column_sum<T>(AccMatrixTerm<Acc>{row_sums, channels}, outer, channels,
                                grad_b_t, workspace_at<T>(workspace, ws.row_sums_bytes), stream);
  });
}

cudaError_t blur_forward(DType dtype, const void* x, int64_t n, int64_t channels, int64_t height,
                         int64_t width, bool channels_last, void* y, cudaStream_t stream) {
  if (n < 0 || channels < 0 || height < 0 || width < 0) return cudaErrorInvalidValue;
  const int64_t numel = n * channels * height * width;
  if (numel == 0) return cudaSuccess;
  const int64_t w_stride = channels_last ? channels : 1;
  const int64_t h_stride = w_stride * width;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return with_index_type(numel, [&](auto index_tag) {
      using Index = decltype(index_tag);
      blur_forward_kernel<T, Index><<<elem_num_blocks(numel), kElemThreads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<Index>(numel), Divider<Index>::make(w_stride),
          Divider<Index>::make(width), Divider<Index>::make(height), static_cast<Index>(width),
          static_cast<Index>(height), static_cast<Index>(w_stride), static_cast<Index>(h_stride),
          static_cast<T*>(y));
      return cudaGetLastError();
    });
  });
}

cudaError_t encode_norm_forward(DType dtype, const void* x, const void* bias, int64_t n,
                                int64_t channels, int64_t row_len, double alpha, double eps,
                                void* y, void* style, void* stats, cudaStream_t stream) {
  if (n < 0 || channels < 0 || row_len < 0) return cudaErrorInvalidValue;
  if (n == 0 || channels == 0 || row_len == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    NormArgs<T> args{};
    args.x = static_cast<const T*>(x);
    args.bias = static_cast<const T*>(bias);
    args.rows = n * channels;
    args.channels = channels;
    args.row_len = row_len;
    args.alpha = static_cast<Acc>(alpha);
    args.eps = static_cast<Acc>(eps);
    args.y = static_cast<T*>(y);
    args.style_out = static_cast<T*>(style);
    args.stats_out = static_cast<Acc*>(stats);
    return with_row_group(row_len, [&](auto group) {
      constexpr int kGroup = decltype(group)::value;
      norm_forward_kernel<T, kGroup, false>
          <<<row_num_blocks<kGroup>(args.rows), RowBlock<kGroup>::kThreads, 0, stream>>>(args);
      return cudaGetLastError();
    });
  });
}

size_t encode_norm_backward_workspace_bytes(DType dtype, int64_t n, int64_t channels) {
  return row_sum_workspace(dtype, n, channels, 1).total_bytes;
}

cudaError_t encode_norm_backward(DType dtype, const void* grad_y, const void* grad_style,
                                 const void* x, const void* bias, const void* stats, int64_t n,
                                 int64_t channels, int64_t row_len, double alpha, double eps,
                                 void* grad_x, void* grad_bias, void* workspace,
                                 cudaStream_t stream) {
  if (n < 0 || channels < 0 || row_len < 0) return cudaErrorInvalidValue;
  if (channels == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    if (n == 0 || row_len == 0) {
      // No rows or empty rows: grad_bias is an empty sum (grad_x has no elements to write).
      return cudaMemsetAsync(grad_bias, 0, static_cast<size_t>(channels) * sizeof(T), stream);
    }
    const RowSumWorkspace ws = row_sum_workspace(dtype, n, channels, 1);
    NormArgs<T> args{};
    args.x = static_cast<const T*>(x);
    args.bias = static_cast<const T*>(bias);
    args.grad_y = static_cast<const T*>(grad_y);
    args.grad_style = static_cast<const T*>(grad_style);
    args.stats_in = static_cast<const Acc*>(stats);
    args.rows = n * channels;
    args.channels = channels;
    args.row_len = row_len;
    args.alpha = static_cast<Acc>(alpha);
    args.eps = static_cast<Acc>(eps);
    args.y = static_cast<T*>(grad_x);
    args.bias_sums = workspace_at<T>(workspace, 0);
    const cudaError_t err = with_row_group(row_len, [&](auto group) {
      constexpr int kGroup = decltype(group)::value;
      encode_norm_backward_kernel<T, kGroup>
          <<<row_num_blocks<kGroup>(args.rows), RowBlock<kGroup>::kThreads, 0, stream>>>(args);
      return cudaGetLastError();
    });
    if (err != cudaSuccess) return err;
    return launch_column_sum<T>(AccMatrixTerm<Acc>{args.bias_sums, channels}, n, channels,
                                static_cast<T*>(grad_bias),
                                workspace_at<T>(workspace, ws.row_sums_bytes), stream);
  });
}

cudaError_t adain_forward(DType dtype, const void* x, const void* style, const void* noise,
                          const void* noise_weight, const void* bias, int64_t n, int64_t channels,
                          int64_t row_len, double alpha, double eps, void* y, void* stats,
                          cudaStream_t stream) {
  if (n < 0 || channels < 0 || row_len < 0) return cudaErrorInvalidValue;
  if ((noise == nullptr) != (noise_weight == nullptr)) return cudaErrorInvalidValue;
  if (n == 0 || channels == 0 || row_len == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    NormArgs<T> args{};
    args.x = static_cast<const T*>(x);
    args.bias = static_cast<const T*>(bias);
    args.noise = static_cast<const T*>(noise);
    args.noise_weight = static_cast<const T*>(noise_weight);
    args.style = static_cast<const T*>(style);
    args.rows = n * channels;
    args.channels = channels;
    args.row_len = row_len;
    args.alpha = static_cast<Acc>(alpha);
    args.eps = static_cast<Acc>(eps);
    args.y = static_cast<T*>(y);
    args.stats_out = static_cast<Acc*>(stats);
    return with_row_group(row_len, [&](auto group) {
      constexpr int kGroup = decltype(group)::value;
      norm_forward_kernel<T, kGroup, true>
          <<<row_num_blocks<kGroup>(args.rows), RowBlock<kGroup>::kThreads, 0, stream>>>(args);
      return cudaGetLastError();
    });
  });
}

size_t adain_backward_workspace_bytes(DType dtype, int64_t n, int64_t channels, bool has_noise) {
  return row_sum_workspace(dtype, n, channels, has_noise ? 2 : 1).total_bytes;
}

cudaError_t adain_backward(DType dtype, const void* grad_y, const void* x, const void* style,
                           const void* noise, const void* noise_weight, const void* bias,
                           const void* stats, int64_t n, int64_t channels, int64_t row_len,
                           double alpha, double eps, void* grad_x, void* grad_style,
                           void* grad_noise_weight, void* grad_bias, void* workspace,
                           cudaStream_t stream) {
  if (n < 0 || channels < 0 || row_len < 0) return cudaErrorInvalidValue;
  if ((noise == nullptr) != (noise_weight == nullptr)) return cudaErrorInvalidValue;
  if (channels == 0) return cudaSuccess;
  const bool has_noise = noise != nullptr;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    const size_t c_bytes = static_cast<size_t>(channels) * sizeof(T);
    if (n == 0 || row_len == 0) {
      // Empty sums: zeros (grad_style has n rows of them; grad_x has no elements).
      cudaError_t err = cudaMemsetAsync(grad_bias, 0, c_bytes, stream);
      if (err == cudaSuccess && has_noise) {
        err = cudaMemsetAsync(grad_noise_weight, 0, c_bytes, stream);
      }
      if (err == cudaSuccess && n > 0) {
        err = cudaMemsetAsync(grad_style, 0, 2 * c_bytes * static_cast<size_t>(n), stream);
      }
      return err;
    }
    const RowSumWorkspace ws = row_sum_workspace(dtype, n, channels, has_noise ? 2 : 1);
    NormArgs<T> args{};
    args.x = static_cast<const T*>(x);
    args.bias = static_cast<const T*>(bias);
    args.noise = static_cast<const T*>(noise);
    args.noise_weight = static_cast<const T*>(noise_weight);
    args.style = static_cast<const T*>(style);
    args.grad_y = static_cast<const T*>(grad_y);
    args.stats_in = static_cast<const Acc*>(stats);
    args.rows = n * channels;
    args.channels = channels;
    args.row_len = row_len;
    args.alpha = static_cast<Acc>(alpha);
    args.eps = static_cast<Acc>(eps);
    args.y = static_cast<T*>(grad_x);
    args.style_out = static_cast<T*>(grad_style);
    args.bias_sums = workspace_at<T>(workspace, 0);
    args.noise_sums = has_noise ? workspace_at<T>(workspace, ws.row_sums_bytes) : nullptr;
    Acc* column_partials =
        workspace_at<T>(workspace, ws.row_sums_bytes * (has_noise ? 2 : 1));
    cudaError_t err = with_row_group(row_len, [&](auto group) {
      constexpr int kGroup = decltype(group)::value;
      adain_backward_kernel<T, kGroup>
          <<<row_num_blocks<kGroup>(args.rows), RowBlock<kGroup>::kThreads, 0, stream>>>(args);
      return cudaGetLastError();
    });
    if (err != cudaSuccess) return err;
    err = launch_column_sum<T>(AccMatrixTerm<Acc>{args.bias_sums, channels}, n, channels,
                               static_cast<T*>(grad_bias), column_partials, stream);
    if (err != cudaSuccess || !has_noise) return err;
    return launch_column_sum<T>(AccMatrixTerm<Acc>{args.noise_sums, channels}, n, channels,
                                static_cast<T*>(grad_noise_weight), column_partials, stream);
  });
}

cudaError_t lreq_adam_step(DType dtype, int64_t num_tensors, void* const* params,
                           const void* const* grads, void* const* exp_avg_sqs,
                           const int64_t* numels, const double* step_sizes, double beta2,
                           double eps, double weight_decay, AdamRounding rounding,
                           cudaStream_t stream) {
  if (num_tensors < 0) return cudaErrorInvalidValue;
  if (rounding != AdamRounding::kTorchCuda && rounding != AdamRounding::kSeparatelyRounded) {
    return cudaErrorInvalidValue;
  }
  for (int64_t t = 0; t < num_tensors; ++t) {
    if (numels[t] < 0) return cudaErrorInvalidValue;
  }
  // (1 - beta2) and -step are formed in double, as the Python reference does.
  const AdamScalars scalars{beta2, 1.0 - beta2, eps, weight_decay, weight_decay != 0.0};
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    const auto launch = [&](const AdamTable& table, int blocks) {
      return rounding == AdamRounding::kTorchCuda
                 ? launch_adam_table<T, AdamRounding::kTorchCuda>(table, blocks, scalars, stream)
                 : launch_adam_table<T, AdamRounding::kSeparatelyRounded>(table, blocks, scalars,
                                                                         stream);
    };
    AdamTable table{};
    int tensors = 0;  // entries of table used
    int blocks = 0;   // (tensor, chunk) blocks queued
    for (int64_t t = 0; t < num_tensors; ++t) {
      if (numels[t] == 0) continue;
      table.params[tensors] = params[t];
      table.grads[tensors] = grads[t];
      table.exp_avg_sqs[tensors] = exp_avg_sqs[t];
      table.numels[tensors] = numels[t];
      table.neg_steps[tensors] = -step_sizes[t];
      ++tensors;
      const int64_t chunks = ceil_div(numels[t], kAdamChunk);
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        table.block_tensor[blocks] = static_cast<uint8_t>(tensors - 1);
        table.block_chunk[blocks] = static_cast<int32_t>(chunk);
        ++blocks;
        const bool last_chunk = chunk + 1 == chunks;
        if (blocks == kAdamMaxBlocks || (tensors == kAdamMaxTensors && last_chunk)) {
          const cudaError_t err = launch(table, blocks);
          if (err != cudaSuccess) return err;
          blocks = 0;
          if (last_chunk) {
            tensors = 0;
          } else {
            // The tensor continues in the next launch: it becomes entry 0.
            table.params[0] = table.params[tensors - 1];
            table.grads[0] = table.grads[tensors - 1];
            table.exp_avg_sqs[0] = table.exp_avg_sqs[tensors - 1];
            table.numels[0] = table.numels[tensors - 1];
            table.neg_steps[0] = table.neg_steps[tensors - 1];
            tensors = 1;
          }
        }
      }
    }
    if (blocks > 0) return launch(table, blocks);
    return cudaSuccess;
  });
}

}  // namespace kernels
}  // namespace alae_fast
