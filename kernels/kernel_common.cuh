// Device helpers shared by the CUDA kernels of kernels/*.cu (dtypes and conversions are in
// dtype_dispatch.cuh): the leaky ReLU, mean/M2 states merged with Chan et al.'s update,
// fixed-tree warp and group reductions, and the row-kernel machinery (one group of threads per row, with the
// per-row mean/M2 of a leaky ReLU'd pre-activation).
//
// Torch-free like the rest of kernels/. Everything lives in alae_fast::kernels::detail; the .cu
// files pull it into their anonymous namespace with `using namespace detail;`.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "dtype_dispatch.cuh"

namespace alae_fast {
namespace kernels {
namespace detail {

// ---------------------------------------------------------------------------------------------
// Launch configuration shared by the row kernels
// ---------------------------------------------------------------------------------------------

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Row kernels: a group of kGroup threads owns one row. Blocks have at least this many threads
// (a block of warp-sized groups holds 256 / 32 = 8 rows).
constexpr int kRowBlockThreads = 256;
// Rows up to this length get a warp each, up to kBlockRowMax a 256-thread block, longer rows a
// 512-thread block.
constexpr int64_t kWarpRowMax = 1024;
constexpr int64_t kBlockRowMax = 16384;
// Elements each thread loads before using them (independent loads in flight). A power of two,
// so that the mean of a full tile is an exact scaling.
constexpr int kRowItems = 4;
// Cap on row-kernel blocks along x (a loop over rows covers the rest).
constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;

// gridDim.y may not exceed 65535 (a loop covers larger counts).
constexpr int64_t kMaxGridY = 65535;

// True when every block size given is a whole number of warps.
template <int... kSizes>
constexpr bool whole_warps() {
  return ((kSizes % kWarpSize == 0) && ...);
}

static_assert(whole_warps<kRowBlockThreads>(), "block sizes must be whole warps");
static_assert((kRowItems & (kRowItems - 1)) == 0, "kRowItems must be a power of two");

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t align_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

template <typename Acc>
__device__ __forceinline__ Acc lrelu(Acc t, Acc alpha) {
  return t > Acc(0) ? t : alpha * t;
}

// ---------------------------------------------------------------------------------------------
// Reduction values and group reductions
// ---------------------------------------------------------------------------------------------

// Several sums reduced together.
template <typename Acc, int kCount>
struct Sums {
  Acc v[kCount];
};

// Count, mean and sum of squared deviations of a set of values (combined with Chan et al.'s
// pairwise update, which stays accurate where E[x^2] - E[x]^2 would cancel).
template <typename Acc>
struct MeanM2 {
  Acc mean;
  Acc m2;
  int64_t count;
};

__device__ __forceinline__ float combine(float a, float b) { return a + b; }
__device__ __forceinline__ double combine(double a, double b) { return a + b; }
template <typename Acc, int kCount>
__device__ __forceinline__ Sums<Acc, kCount> combine(const Sums<Acc, kCount>& a,
                                                     const Sums<Acc, kCount>& b) {
  Sums<Acc, kCount> r;
#pragma unroll
  for (int i = 0; i < kCount; ++i) r.v[i] = a.v[i] + b.v[i];
  return r;
}
template <typename Acc>
__device__ __forceinline__ MeanM2<Acc> combine(const MeanM2<Acc>& a, const MeanM2<Acc>& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const int64_t count = a.count + b.count;
  const Acc delta = b.mean - a.mean;
  const Acc b_share = Acc(b.count) / Acc(count);
  return {a.mean + delta * b_share, a.m2 + b.m2 + delta * delta * Acc(a.count) * b_share, count};
}

__device__ __forceinline__ float shfl_down(float v, int offset) {
  return __shfl_down_sync(kFullMask, v, offset);
}
__device__ __forceinline__ double shfl_down(double v, int offset) {
  return __shfl_down_sync(kFullMask, v, offset);
}
template <typename Acc, int kCount>
__device__ __forceinline__ Sums<Acc, kCount> shfl_down(const Sums<Acc, kCount>& v, int offset) {
  Sums<Acc, kCount> r;
#pragma unroll
  for (int i = 0; i < kCount; ++i) r.v[i] = shfl_down(v.v[i], offset);
  return r;
}
template <typename Acc>
__device__ __forceinline__ MeanM2<Acc> shfl_down(const MeanM2<Acc>& v, int offset) {
  const long long count = __shfl_down_sync(kFullMask, static_cast<long long>(v.count), offset);
  return {shfl_down(v.mean, offset), shfl_down(v.m2, offset), static_cast<int64_t>(count)};
}

__device__ __forceinline__ float shfl_lane0(float v) { return __shfl_sync(kFullMask, v, 0); }
__device__ __forceinline__ double shfl_lane0(double v) { return __shfl_sync(kFullMask, v, 0); }
template <typename Acc, int kCount>
__device__ __forceinline__ Sums<Acc, kCount> shfl_lane0(const Sums<Acc, kCount>& v) {
  Sums<Acc, kCount> r;
#pragma unroll
  for (int i = 0; i < kCount; ++i) r.v[i] = shfl_lane0(v.v[i]);
  return r;
}
template <typename Acc>
__device__ __forceinline__ MeanM2<Acc> shfl_lane0(const MeanM2<Acc>& v) {
  const long long count = __shfl_sync(kFullMask, static_cast<long long>(v.count), 0);
  return {shfl_lane0(v.mean), shfl_lane0(v.m2), static_cast<int64_t>(count)};
}

// Combination of v over the warp in a fixed tree; the result is valid in lane 0 only. All 32
// lanes must call it.
template <typename V>
__device__ __forceinline__ V warp_reduce(V v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = combine(v, shfl_down(v, offset));
  return v;
}

// Combination of v over a group of kGroup threads (a warp, or a whole block of kGroup
// threads), returned to every thread of the group. Every thread of the group must call it; for
// a block-sized group it has two barriers, and its shared arrays may be reused by the next call
// (a write to them happens only after a barrier that every reader of the last result passed).
template <int kGroup, typename V>
__device__ __forceinline__ V group_reduce(V v) {
  static_assert(kGroup % kWarpSize == 0 && kGroup <= 1024, "kGroup: whole warps, <= 1024");
  v = warp_reduce(v);
  if constexpr (kGroup == kWarpSize) {
    return shfl_lane0(v);
  } else {
    constexpr int kWarps = kGroup / kWarpSize;
    __shared__ V warp_totals[kWarps];
    __shared__ V total;
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    if (warp == 0) {
      V w = lane < kWarps ? warp_totals[lane] : V{};
      w = warp_reduce(w);
      if (lane == 0) total = w;
    }
    __syncthreads();
    return total;
  }
}

// Threads per block of the row kernels with kGroup threads per row.
template <int kGroup>
struct RowBlock {
  static constexpr int kThreads = kGroup < kRowBlockThreads ? kRowBlockThreads : kGroup;
  static constexpr int kRows = kThreads / kGroup;
  static_assert(kThreads % kGroup == 0, "a block holds whole groups");
};

// Calls f(std::integral_constant<int, kGroup>) with the group size for rows of row_len elements.
template <typename F>
cudaError_t with_row_group(int64_t row_len, F&& f) {
  if (row_len <= kWarpRowMax) return f(std::integral_constant<int, kWarpSize>{});
  if (row_len <= kBlockRowMax) return f(std::integral_constant<int, 256>{});
  return f(std::integral_constant<int, 512>{});
}

template <int kGroup>
unsigned row_num_blocks(int64_t rows) {
  return static_cast<unsigned>(min64(ceil_div(rows, RowBlock<kGroup>::kRows), kMaxRowBlocks));
}

// The rows of a row kernel's thread: row = first, first + step, ... (uniform across its group,
// so the group reductions inside the loop are reached by all of the group's threads).
template <int kGroup>
__device__ __forceinline__ int64_t first_row() {
  return int64_t{blockIdx.x} * RowBlock<kGroup>::kRows + threadIdx.x / kGroup;
}
template <int kGroup>
__device__ __forceinline__ int64_t row_step() {
  return int64_t{gridDim.x} * RowBlock<kGroup>::kRows;
}

// ---------------------------------------------------------------------------------------------
// Row statistics of a pre-activation
// ---------------------------------------------------------------------------------------------

// Pre-activation of one row: t(j) = x[j] + noise_weight * noise[j] + bias.
template <typename T>
struct RowPreact {
  const T* __restrict__ x;
  const T* __restrict__ noise;  // nullptr: no noise term
  acc_t<T> noise_weight;
  acc_t<T> bias;
  __device__ __forceinline__ acc_t<T> operator()(int64_t j) const {
    acc_t<T> t = to_acc(x[j]);
    if (noise != nullptr) t += noise_weight * to_acc(noise[j]);
    return t + bias;
  }
};

// Exact two-pass mean and M2 of a thread's tile a[0 .. count) (the items from count on are 0).
template <typename Acc>
__device__ __forceinline__ MeanM2<Acc> tile_mean_m2(const Acc (&a)[kRowItems], int count) {
  Acc sum = Acc(0);
#pragma unroll
  for (int k = 0; k < kRowItems; ++k) sum += a[k];
  const Acc mean = count == kRowItems ? sum * Acc(1.0 / kRowItems) : sum / Acc(count);
  Acc m2 = Acc(0);
#pragma unroll
  for (int k = 0; k < kRowItems; ++k) {
    const Acc d = a[k] - mean;
    if (k < count) m2 += d * d;
  }
  return {mean, m2, count};
}

// Merges the tile of values value(j), j = first + k * step (k < kRowItems, j < end), into state
// by its exact two-pass mean and M2 (nothing when no j is below end).
template <typename Acc, typename Value>
__device__ __forceinline__ void merge_tile(MeanM2<Acc>& state, int64_t first, int64_t step,
                                           int64_t end, const Value& value) {
  Acc a[kRowItems];
  int count = 0;
#pragma unroll
  for (int k = 0; k < kRowItems; ++k) {
    const int64_t j = first + int64_t{k} * step;
    a[k] = Acc(0);
    if (j < end) {
      a[k] = value(j);
      ++count;
    }
  }
  // The valid items are a[0 .. count) (j grows with k); the others are 0.
  if (count > 0) state = combine(state, tile_mean_m2(a, count));
}

// Mean and sum of squared deviations of a = lrelu(t) over a row, returned to the whole group.
// Each thread takes tiles of kRowItems elements (j = tile + lane + k * kGroup), computes the
// tile's exact two-pass mean and M2 in registers and merges it into its running MeanM2; the
// group then merges the threads' states in a fixed tree. Shifted accumulation: the states are
// of a - s with s = a(0), the row's first value (every thread computes it by the same
// expression), and the returned mean is s + their mean. A constant row then merges exact
// zeros: its mean is exactly its value and every a - mean exactly 0 (a plain mean would leave
// a rounding residue, which instance norm multiplies by 1 / sqrt(eps)).
template <int kGroup, typename T>
__device__ __forceinline__ MeanM2<acc_t<T>> row_mean_m2(const RowPreact<T>& pre, int64_t row_len,
                                                        acc_t<T> alpha, int lane) {
  using Acc = acc_t<T>;
  constexpr int64_t kTile = int64_t{kGroup} * kRowItems;
  const Acc shift = lrelu(pre(0), alpha);
  MeanM2<Acc> state{Acc(0), Acc(0), 0};
  for (int64_t tile = 0; tile < row_len; tile += kTile) {
    merge_tile(state, tile + lane, kGroup, row_len,
               [&](int64_t j) { return lrelu(pre(j), alpha) - shift; });
  }
  MeanM2<Acc> total = group_reduce<kGroup>(state);
  total.mean += shift;
  return total;
}

}  // namespace detail
}  // namespace kernels
}  // namespace alae_fast
