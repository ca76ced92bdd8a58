// Fused GAN-loss kernels: the launchers declared in loss_kernels.h and the kernels behind them.
//
// Torch-free on purpose (see the header). Every kernel loads its inputs in dtype T, converts them
// to the accumulation type Acc (float for float32/float16/bfloat16, double for float64), computes
// in Acc, and converts back to T only when storing.
//
// Determinism: the reductions never use atomics, and every grid size is a function of the
// problem size alone (never of the device), so each thread, block and final pass adds the same
// values in the same order on every run and on every GPU.

#include "loss_kernels.h"
#include "dtype_dispatch.cuh"
#include "kernel_common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace alae_fast {
namespace kernels {
namespace {

using namespace detail;  // acc types, conversions, min64/ceil_div, kWarpSize, grid caps

// ---------------------------------------------------------------------------------------------
// Launch configuration
// ---------------------------------------------------------------------------------------------

// Mean reductions, stage 1: 256 threads (8 warps) is enough to hide load latency per SM slot.
constexpr int kMeanThreads = 256;
// Each thread of stage 1 takes this many independent elements per pass (memory-level parallelism).
constexpr int kMeanItemsPerThread = 4;
// Upper bound on stage-1 blocks: fills any current GPU, bounds the workspace and the stage-2 work.
constexpr int64_t kMeanMaxBlocks = 1024;
// Stage 2 is one block; each of its threads sums at most kMeanMaxBlocks / 256 = 4 partials.
constexpr int kMeanFinalThreads = 256;

// r1_penalty_forward, stage 1: same block shape as the means, 2-D grid (chunks of a row, rows).
constexpr int kR1Threads = 256;
constexpr int kR1ItemsPerThread = 4;
// Chunks per row are capped so the workspace stays at most rows * 1024 partials.
constexpr int64_t kR1MaxChunks = 1024;
// Finalize: one block per row; 128 threads sum at most kR1MaxChunks / 128 = 8 partials each.
constexpr int kR1FinalThreads = 128;

// Elementwise backward kernels: 256 threads per block, grid-stride loops.
constexpr int kElemThreads = 256;
// The grid is sized for about 4 elements per thread, amortising the load of the scalar grad.
constexpr int kElemItemsPerThread = 4;
// Cap on blocks along x for the grid-stride loops (plenty to fill a GPU; the loop does the rest).
constexpr int64_t kElemMaxBlocks = 8192;

static_assert(whole_warps<kMeanThreads, kMeanFinalThreads, kR1Threads, kR1FinalThreads,
                          kElemThreads>(),
              "block sizes must be whole warps");

// ---------------------------------------------------------------------------------------------
// Numerics
// ---------------------------------------------------------------------------------------------

// softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)). exp(-|x|) is in (0, 1], so
// nothing overflows for any finite x, and log1p keeps full precision when exp(-|x|) is tiny.
__device__ __forceinline__ float softplus(float x) {
  return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
}
__device__ __forceinline__ double softplus(double x) {
  return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

// sigmoid(x) = 1 / (1 + exp(-x)), evaluated with exp of a non-positive argument only, so that it
// neither overflows nor forms inf / inf: at x = +1e4 it gives 1, at x = -1e4 it gives 0.
__device__ __forceinline__ float sigmoid(float x) {
  const float e = expf(-fabsf(x));  // in (0, 1]
  return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}
__device__ __forceinline__ double sigmoid(double x) {
  const double e = exp(-fabs(x));
  return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

// ---------------------------------------------------------------------------------------------
// Block reduction
// ---------------------------------------------------------------------------------------------

// Sum of `value` over the block; the result is valid in thread 0 only. Every thread of the block
// must call it (the full-warp shuffle masks rely on it), and kThreads must be a multiple of 32.
template <int kThreads, typename Acc>
__device__ __forceinline__ Acc block_sum(Acc value) {
  static_assert(kThreads % kWarpSize == 0 && kThreads <= 1024, "kThreads: whole warps, <= 1024");
  constexpr int kWarps = kThreads / kWarpSize;
  constexpr unsigned kFullMask = 0xffffffffu;
  __shared__ Acc warp_sums[kWarps];

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_down_sync(kFullMask, value, offset);
  }
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();

  Acc total = Acc(0);
  if (warp == 0) {
    total = lane < kWarps ? warp_sums[lane] : Acc(0);
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      total += __shfl_down_sync(kFullMask, total, offset);
    }
  }
  // warp_sums may be reused by a later call in the same kernel (the r1 row loop).
  __syncthreads();
  return total;
}

// ---------------------------------------------------------------------------------------------
// Per-element terms of the mean reductions
// ---------------------------------------------------------------------------------------------

// softplus(d_fake[i]) + softplus(-d_real[i])
template <typename T>
struct DAdvTerm {
  const T* __restrict__ d_fake;
  const T* __restrict__ d_real;
  __device__ __forceinline__ acc_t<T> operator()(int64_t i) const {
    return softplus(to_acc(d_fake[i])) + softplus(-to_acc(d_real[i]));
  }
};

// softplus(-d_fake[i])
template <typename T>
struct GAdvTerm {
  const T* __restrict__ d_fake;
  __device__ __forceinline__ acc_t<T> operator()(int64_t i) const {
    return softplus(-to_acc(d_fake[i]));
  }
};

// (a[i] - b[i])^2
template <typename T>
struct SquaredDiffTerm {
  const T* __restrict__ a;
  const T* __restrict__ b;
  __device__ __forceinline__ acc_t<T> operator()(int64_t i) const {
    const acc_t<T> d = to_acc(a[i]) - to_acc(b[i]);
    return d * d;
  }
};

// ---------------------------------------------------------------------------------------------
// Mean reduction kernels
// ---------------------------------------------------------------------------------------------

// Sum of term(i) over the elements i = first + k * kThreads + pass * stride (k < kItems) of a
// range of length n that this thread visits. The order of the additions depends only on
// (first, stride, n), hence only on the grid, never on timing.
template <int kThreads, int kItems, typename Acc, typename Term>
__device__ __forceinline__ Acc strided_sum(const Term& term, int64_t first, int64_t stride,
                                           int64_t n) {
  Acc sum = Acc(0);
  for (int64_t base = first; base < n; base += stride) {
    Acc vals[kItems];
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t i = base + int64_t{k} * kThreads;
      vals[k] = i < n ? term(i) : Acc(0);
    }
#pragma unroll
    for (int k = 0; k < kItems; ++k) sum += vals[k];
  }
  return sum;
}

// Stage 1: block b sums its grid-strided share of the n terms into partials[b]. With a single
// block the block sum is already the total, so it writes out[0] = total * inv_n itself.
template <typename T, typename Term>
__global__ void __launch_bounds__(kMeanThreads)
    mean_partials_kernel(Term term, int64_t n, acc_t<T> inv_n, acc_t<T>* __restrict__ partials,
                         T* __restrict__ out) {
  using Acc = acc_t<T>;
  constexpr int64_t kTile = int64_t{kMeanThreads} * kMeanItemsPerThread;
  const int64_t first = int64_t{blockIdx.x} * kTile + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * kTile;
  const Acc sum = block_sum<kMeanThreads>(
      strided_sum<kMeanThreads, kMeanItemsPerThread, Acc>(term, first, stride, n));
  if (threadIdx.x == 0) {
    if (gridDim.x == 1) {
      out[0] = from_acc<T>(sum * inv_n);
    } else {
      partials[blockIdx.x] = sum;
    }
  }
}

// Stage 2 (one block): out[0] = inv_n * sum(partials[0 .. num_partials)), in a fixed order.
template <typename T>
__global__ void __launch_bounds__(kMeanFinalThreads)
    mean_finalize_kernel(const acc_t<T>* __restrict__ partials, int num_partials, acc_t<T> inv_n,
                         T* __restrict__ out) {
  using Acc = acc_t<T>;
  Acc sum = Acc(0);
  for (int i = threadIdx.x; i < num_partials; i += kMeanFinalThreads) sum += partials[i];
  sum = block_sum<kMeanFinalThreads>(sum);
  if (threadIdx.x == 0) out[0] = from_acc<T>(sum * inv_n);
}

// Stage-1 grid of a mean over n >= 1 elements: a function of n only.
int mean_num_blocks(int64_t n) {
  const int64_t tiles = ceil_div(n, int64_t{kMeanThreads} * kMeanItemsPerThread);
  return static_cast<int>(min64(tiles < 1 ? 1 : tiles, kMeanMaxBlocks));
}

template <typename T, typename Term>
cudaError_t launch_mean(const Term& term, int64_t n, void* out, void* workspace,
                        cudaStream_t stream) {
  using Acc = acc_t<T>;
  const int blocks = mean_num_blocks(n);
  const Acc inv_n = static_cast<Acc>(1.0 / static_cast<double>(n));
  Acc* partials = static_cast<Acc*>(workspace);
  T* out_t = static_cast<T*>(out);
  mean_partials_kernel<T, Term><<<blocks, kMeanThreads, 0, stream>>>(term, n, inv_n, partials,
                                                                     out_t);
  if (blocks > 1) {
    mean_finalize_kernel<T><<<1, kMeanFinalThreads, 0, stream>>>(partials, blocks, inv_n, out_t);
  }
  return cudaGetLastError();
}

// ---------------------------------------------------------------------------------------------
// R1 penalty kernels
// ---------------------------------------------------------------------------------------------

// Chunks per row of r1_penalty_forward (gridDim.x of its stage 1): a function of row_len only.
int64_t r1_num_chunks(int64_t row_len) {
  if (row_len <= 0) return 0;
  return min64(ceil_div(row_len, int64_t{kR1Threads} * kR1ItemsPerThread), kR1MaxChunks);
}

template <typename T>
struct SquareTerm {
  const T* __restrict__ row;
  __device__ __forceinline__ acc_t<T> operator()(int64_t j) const {
    const acc_t<T> v = to_acc(row[j]);
    return v * v;
  }
};

// Stage 1, grid (chunks, min(rows, 65535)): block (c, y) sums the squares of its chunk-strided
// share of rows y, y + gridDim.y, ... into partials[row * chunks + c]. With one chunk per row
// the block sum is the row total, so it writes out[row] = half_gamma * total itself.
template <typename T>
__global__ void __launch_bounds__(kR1Threads)
    r1_partials_kernel(const T* __restrict__ grads, int64_t rows, int64_t row_len,
                       acc_t<T> half_gamma, acc_t<T>* __restrict__ partials, T* __restrict__ out) {
  using Acc = acc_t<T>;
  constexpr int64_t kTile = int64_t{kR1Threads} * kR1ItemsPerThread;
  const int64_t chunks = gridDim.x;
  const int64_t first = int64_t{blockIdx.x} * kTile + threadIdx.x;
  const int64_t stride = chunks * kTile;
  // The loop bound is uniform across the block, so every thread reaches block_sum's barriers.
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const SquareTerm<T> term{grads + row * row_len};
    const Acc sum = block_sum<kR1Threads>(
        strided_sum<kR1Threads, kR1ItemsPerThread, Acc>(term, first, stride, row_len));
    if (threadIdx.x == 0) {
      if (chunks == 1) {
        out[row] = from_acc<T>(sum * half_gamma);
      } else {
        partials[row * chunks + blockIdx.x] = sum;
      }
    }
  }
}

// Finalize, one block per row (rows looped past the grid): out[row] = half_gamma * sum of the
// row's `chunks` partials, in order. With chunks == 0 (row_len == 0) it writes zeros.
template <typename T>
__global__ void __launch_bounds__(kR1FinalThreads)
    r1_finalize_kernel(const acc_t<T>* __restrict__ partials, int64_t rows, int64_t chunks,
                       acc_t<T> half_gamma, T* __restrict__ out) {
  using Acc = acc_t<T>;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const Acc* row_partials = partials + row * chunks;
    Acc sum = Acc(0);
    for (int64_t c = threadIdx.x; c < chunks; c += kR1FinalThreads) sum += row_partials[c];
    sum = block_sum<kR1FinalThreads>(sum);
    if (threadIdx.x == 0) out[row] = from_acc<T>(sum * half_gamma);
  }
}

// grad_grads[r, j] = gamma * grad[r] * grads[r, j]; grid (blocks along the row, min(rows, 65535)).
template <typename T>
__global__ void __launch_bounds__(kElemThreads)
    r1_backward_kernel(const T* __restrict__ grad, const T* __restrict__ grads, int64_t rows,
                       int64_t row_len, acc_t<T> gamma, T* __restrict__ grad_grads) {
  using Acc = acc_t<T>;
  const int64_t first = int64_t{blockIdx.x} * kElemThreads + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * kElemThreads;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const Acc scale = gamma * to_acc(grad[row]);
    const T* in = grads + row * row_len;
    T* out = grad_grads + row * row_len;
    for (int64_t j = first; j < row_len; j += stride) out[j] = from_acc<T>(scale * to_acc(in[j]));
  }
}

// ---------------------------------------------------------------------------------------------
// Elementwise backward kernels of the means
// ---------------------------------------------------------------------------------------------

// grad_fake = grad / n * sigmoid(d_fake); grad_real = -grad / n * sigmoid(-d_real).
template <typename T>
__global__ void __launch_bounds__(kElemThreads)
    d_adv_backward_kernel(const T* __restrict__ grad, const T* __restrict__ d_fake,
                          const T* __restrict__ d_real, int64_t n, acc_t<T> inv_n,
                          T* __restrict__ grad_fake, T* __restrict__ grad_real) {
  using Acc = acc_t<T>;
  const Acc scale = to_acc(grad[0]) * inv_n;
  const int64_t stride = int64_t{gridDim.x} * kElemThreads;
  for (int64_t i = int64_t{blockIdx.x} * kElemThreads + threadIdx.x; i < n; i += stride) {
    grad_fake[i] = from_acc<T>(scale * sigmoid(to_acc(d_fake[i])));
    grad_real[i] = from_acc<T>(-scale * sigmoid(-to_acc(d_real[i])));
  }
}

// grad_fake = -grad / n * sigmoid(-d_fake).
template <typename T>
__global__ void __launch_bounds__(kElemThreads)
    g_adv_backward_kernel(const T* __restrict__ grad, const T* __restrict__ d_fake, int64_t n,
                          acc_t<T> inv_n, T* __restrict__ grad_fake) {
  using Acc = acc_t<T>;
  const Acc scale = to_acc(grad[0]) * inv_n;
  const int64_t stride = int64_t{gridDim.x} * kElemThreads;
  for (int64_t i = int64_t{blockIdx.x} * kElemThreads + threadIdx.x; i < n; i += stride) {
    grad_fake[i] = from_acc<T>(-scale * sigmoid(-to_acc(d_fake[i])));
  }
}

// grad_a = 2 * grad / n * (a - b); grad_b = -grad_a.
template <typename T>
__global__ void __launch_bounds__(kElemThreads)
    latent_l2_backward_kernel(const T* __restrict__ grad, const T* __restrict__ a,
                              const T* __restrict__ b, int64_t n, acc_t<T> inv_n,
                              T* __restrict__ grad_a, T* __restrict__ grad_b) {
  using Acc = acc_t<T>;
  const Acc scale = Acc(2) * to_acc(grad[0]) * inv_n;
  const int64_t stride = int64_t{gridDim.x} * kElemThreads;
  for (int64_t i = int64_t{blockIdx.x} * kElemThreads + threadIdx.x; i < n; i += stride) {
    const Acc g = scale * (to_acc(a[i]) - to_acc(b[i]));
    grad_a[i] = from_acc<T>(g);
    grad_b[i] = from_acc<T>(-g);
  }
}

// Blocks along x of an elementwise grid-stride loop over n >= 1 elements.
int elem_num_blocks(int64_t n) {
  const int64_t blocks = ceil_div(n, int64_t{kElemThreads} * kElemItemsPerThread);
  return static_cast<int>(min64(blocks < 1 ? 1 : blocks, kElemMaxBlocks));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

// Stage 1 writes one partial per block; with a single block it writes the result directly and
// needs no workspace.
size_t mean_reduction_workspace_bytes(DType dtype, int64_t n) {
  if (n <= 0) return 0;
  const int blocks = mean_num_blocks(n);
  return blocks > 1 ? static_cast<size_t>(blocks) * acc_bytes(dtype) : 0;
}

// partials [rows, chunks]; with one chunk per row (or row_len == 0) no workspace is used.
size_t r1_penalty_workspace_bytes(DType dtype, int64_t rows, int64_t row_len) {
  if (rows <= 0) return 0;
  const int64_t chunks = r1_num_chunks(row_len);
  return chunks > 1 ? static_cast<size_t>(rows) * static_cast<size_t>(chunks) * acc_bytes(dtype)
                    : 0;
}

cudaError_t d_adv_loss_forward(DType dtype, const void* d_fake, const void* d_real, int64_t n,
                               void* out, void* workspace, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const DAdvTerm<T> term{static_cast<const T*>(d_fake), static_cast<const T*>(d_real)};
    return launch_mean<T>(term, n, out, workspace, stream);
  });
}

cudaError_t d_adv_loss_backward(DType dtype, const void* grad, const void* d_fake,
                                const void* d_real, int64_t n, void* grad_fake, void* grad_real,
                                cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    const Acc inv_n = static_cast<Acc>(1.0 / static_cast<double>(n));
    d_adv_backward_kernel<T><<<elem_num_blocks(n), kElemThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(d_fake),
        static_cast<const T*>(d_real), n, inv_n, static_cast<T*>(grad_fake),
        static_cast<T*>(grad_real));
    return cudaGetLastError();
  });
}

cudaError_t g_adv_loss_forward(DType dtype, const void* d_fake, int64_t n, void* out,
                               void* workspace, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const GAdvTerm<T> term{static_cast<const T*>(d_fake)};
    return launch_mean<T>(term, n, out, workspace, stream);
  });
}

cudaError_t g_adv_loss_backward(DType dtype, const void* grad, const void* d_fake, int64_t n,
                                void* grad_fake, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    const Acc inv_n = static_cast<Acc>(1.0 / static_cast<double>(n));
    g_adv_backward_kernel<T><<<elem_num_blocks(n), kElemThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(d_fake), n, inv_n,
        static_cast<T*>(grad_fake));
    return cudaGetLastError();
  });
}

cudaError_t r1_penalty_forward(DType dtype, const void* grads, int64_t rows, int64_t row_len,
                               double gamma, void* out, void* workspace, cudaStream_t stream) {
  if (rows < 0 || row_len < 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    const Acc half_gamma = static_cast<Acc>(gamma * 0.5);
    const int64_t chunks = r1_num_chunks(row_len);
    Acc* partials = static_cast<Acc*>(workspace);
    T* out_t = static_cast<T*>(out);
    if (chunks > 0) {
      const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(min64(rows, kMaxGridY)));
      r1_partials_kernel<T><<<grid, kR1Threads, 0, stream>>>(
          static_cast<const T*>(grads), rows, row_len, half_gamma, partials, out_t);
    }
    // chunks == 1: stage 1 wrote out already. chunks == 0 (row_len == 0): finalize writes zeros.
    if (chunks != 1) {
      const unsigned blocks = static_cast<unsigned>(min64(rows, kMaxRowBlocks));
      r1_finalize_kernel<T><<<blocks, kR1FinalThreads, 0, stream>>>(partials, rows, chunks,
                                                                    half_gamma, out_t);
    }
    return cudaGetLastError();
  });
}

cudaError_t r1_penalty_backward(DType dtype, const void* grad, const void* grads, int64_t rows,
                                int64_t row_len, double gamma, void* grad_grads,
                                cudaStream_t stream) {
  if (rows < 0 || row_len < 0) return cudaErrorInvalidValue;
  if (rows == 0 || row_len == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    const dim3 grid(static_cast<unsigned>(elem_num_blocks(row_len)),
                    static_cast<unsigned>(min64(rows, kMaxGridY)));
    r1_backward_kernel<T><<<grid, kElemThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(grads), rows, row_len,
        static_cast<Acc>(gamma), static_cast<T*>(grad_grads));
    return cudaGetLastError();
  });
}

cudaError_t latent_l2_forward(DType dtype, const void* a, const void* b, int64_t n, void* out,
                              void* workspace, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const SquaredDiffTerm<T> term{static_cast<const T*>(a), static_cast<const T*>(b)};
    return launch_mean<T>(term, n, out, workspace, stream);
  });
}

cudaError_t latent_l2_backward(DType dtype, const void* grad, const void* a, const void* b,
                               int64_t n, void* grad_a, void* grad_b, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    const Acc inv_n = static_cast<Acc>(1.0 / static_cast<double>(n));
    latent_l2_backward_kernel<T><<<elem_num_blocks(n), kElemThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(a), static_cast<const T*>(b), n,
        inv_n, static_cast<T*>(grad_a), static_cast<T*>(grad_b));
    return cudaGetLastError();
  });
}

}  // namespace kernels
}  // namespace alae_fast
