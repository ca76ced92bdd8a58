// CUDA kernels of adain_conv2d and adain_stats: the launchers declared in adain_conv_kernels.h
// and the kernels behind them.
//
// Torch-free on purpose (see loss_kernels.h). Every kernel loads its inputs in dtype T, computes
// in Acc (float for float32/float16/bfloat16, double for float64) and converts back to T only
// when storing.
//
// The three convolutions are implicit GEMMs with one tile shape: a block of 256 threads owns a
// kTileM x kTileN output tile, walks the reduction in steps of kTileK, stages both operands of
// a step in shared memory as Acc and accumulates in registers, each thread a 4 x 4 micro-tile
// (rows base + 16 i, columns base + 16 j) of fp32 (fp64) fused multiply-adds. No tensor cores
// yet: this is the plain FMA first version.
//   forward:      [N*Ho*Wo pixels] x [Cout], reduction over 9 taps x C channels. The input
//                 operand is the AdaIN output, formed by Prologue::conv_input while loading
//                 (pre-activation, leaky ReLU, affine, up-sampling index, zero padding after
//                 the affine); the weight is re-laid out first as [9][C][Cout] in Acc.
//   grad input:   [H*W pixels of one image] x [C], reduction over taps x Cout of grad_out with
//                 the flipped, transposed weight. With `up` it runs on the H x W grid with a
//                 4 x 4 stride-2 kernel (see pack_weight_kernel), never on the 2H x 2W one. The
//                 epilogue recomputes pre and t, writes grad_x and sums the four per-channel
//                 gradients over the block's pixels.
//   grad weight:  [Cout] x [9 taps x C], reduction over the N*Ho*Wo pixels, split along the
//                 reduction (grid z); the input operand is formed by the same
//                 Prologue::conv_input as the forward's, and the blocks of the first column
//                 tile also sum grad_out for grad_bias.
// Determinism: no atomics. Split and per-tile partial sums go to the workspace and are added in
// split / tile order by small finishing kernels; the grids depend on the problem size only.
//
// adain_stats: per (n, c) mean and rstd of t. Contiguous x: one group of threads per row, with
// the row-kernel machinery and row_mean_m2 of kernel_common.cuh (those of adain's forward).
// channels_last x: a block per (n, 32 channels, chunk of pixels), a lane per channel, then the
// chunks' mean/M2 states merged in order.

#include "adain_conv_kernels.h"
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

// GEMM tiles: 256 threads as a 16 x 16 grid, each owning 4 x 4 outputs of a 64 x 64 tile.
constexpr int kTileM = 64;
constexpr int kTileN = 64;
constexpr int kTileK = 16;
constexpr int kGemmThreads = 256;
constexpr int kThreadGrid = 16;
constexpr int kMicro = 4;
// Row padding of the shared tiles (rows of 65 words: the column-wise stores of the loaders
// that run along the K dimension hit distinct banks).
constexpr int kPad = 1;
// Operand elements each thread loads per K step (both operands are kTileK x 64).
constexpr int kLoads = kTileK * kTileM / kGemmThreads;

static_assert(kTileM == kThreadGrid * kMicro && kTileN == kThreadGrid * kMicro,
              "a tile is the thread grid times the micro-tile");
static_assert(kThreadGrid * kThreadGrid == kGemmThreads, "one thread per grid cell");
static_assert(kTileK * kTileM % kGemmThreads == 0 && kTileM == kTileN,
              "every thread loads the same number of elements of both operands");
static_assert(kTileK >= kThreadGrid && kTileM + kPad >= kTileN,
              "the grad-input epilogue reuses the A tile as [kThreadGrid][kTileN] sums");
static_assert(kTileK <= kGemmThreads, "one thread per pixel of a grad-weight step");

// Block counts the split-K of grad_weight and the pixel grouping of grad_input aim at (they are
// constants, not device queries, so that results do not depend on the GPU).
constexpr int64_t kTargetBlocks = 1024;
// Fewest K steps per split of grad_weight (a split of a few steps costs more than it saves).
constexpr int64_t kMinStepsPerSplit = 4;
// Grid limits.
constexpr int64_t kMaxGridX = 2147483647;
constexpr int64_t kMaxGridZ = 65535;

// Element-wise helper kernels (weight re-layout, finishing sums): grid-stride loops.
constexpr int kSmallThreads = 256;
constexpr int64_t kSmallMaxBlocks = 4096;

// adain_stats on channels_last: a lane per channel, 8 warps along the pixels.
constexpr int kStatsWarps = 8;
constexpr int kStatsThreads = kStatsWarps * kWarpSize;
// Pixels each warp covers per pass (kRowItems each, like the row kernels).
constexpr int64_t kStatsPass = int64_t{kStatsWarps} * kRowItems;
constexpr int64_t kStatsTargetBlocks = 512;
// Fewest pixels per chunk.
constexpr int64_t kStatsMinChunk = 256;

unsigned small_num_blocks(int64_t count) {
  const int64_t blocks = ceil_div(count, kSmallThreads);
  return static_cast<unsigned>(min64(blocks < 1 ? 1 : blocks, kSmallMaxBlocks));
}

// Loads along the pixels when they are the contiguous dimension (contiguous NCHW), along the
// channels when those are (channels_last with C > 1): consecutive threads read consecutive
// addresses either way.
bool pixel_fast(const Strides4& s, int64_t channels) { return !(s.c == 1 && channels > 1); }

// noise (`pixels` elements) and noise_weight (`channels`) are both given or both absent; an
// empty one may be nullptr either way (an empty tensor's data pointer may be).
bool noise_pair_ok(const void* noise, const void* noise_weight, int64_t pixels,
                   int64_t channels) {
  if (noise == nullptr && noise_weight == nullptr) return true;
  return (noise != nullptr || pixels == 0) && (noise_weight != nullptr || channels == 0);
}

template <typename T>
T* at_offset(void* base, size_t offset_bytes) {
  return reinterpret_cast<T*>(static_cast<unsigned char*>(base) + offset_bytes);
}

// ---------------------------------------------------------------------------------------------
// The prologue: the AdaIN output the convolution reads
// ---------------------------------------------------------------------------------------------

// a - b rounded on its own: never contracted with lrelu's alpha * pre into one fma, so that
// t == center (a constant channel against its exact mean) gives exactly 0.
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }

template <typename T>
struct Prologue {
  const T* __restrict__ x;             // [N, C, H, W] with strides xs
  const T* __restrict__ scale;         // [N, C]
  const T* __restrict__ shift;         // [N, C]
  const T* __restrict__ center;        // [N, C] or nullptr (0)
  const T* __restrict__ noise;         // [N, 1, H, W] or nullptr
  const T* __restrict__ noise_weight;  // [C] (with noise)
  const T* __restrict__ act_bias;      // [C] or nullptr
  Strides4 xs;
  int64_t channels;
  int64_t height;
  int64_t width;
  acc_t<T> alpha;
  bool up;

  // pre = x + noise_weight * noise + act_bias at (n, c, h, w) of x.
  __device__ __forceinline__ acc_t<T> preact(int64_t n, int64_t c, int64_t h, int64_t w) const {
    acc_t<T> v = to_acc(x[n * xs.n + c * xs.c + h * xs.h + w * xs.w]);
    if (noise != nullptr) {
      v += to_acc(noise_weight[c]) * to_acc(noise[(n * height + h) * width + w]);
    }
    if (act_bias != nullptr) v += to_acc(act_bias[c]);
    return v;
  }

  // The convolution's input A[n, c, u, v] on its grid of grid_h x grid_w (H x W, or 2H x 2W with
  // `up`, where A[u, v] = a[u / 2, v / 2]): scale * (lrelu(pre) - center) + shift, 0 outside
  // the grid (the zero padding comes after the affine) or for c >= C. Shared by the forward and the
  // grad-weight kernels, so that both see the same values.
  __device__ __forceinline__ acc_t<T> conv_input(int64_t n, int64_t c, int64_t u, int64_t v,
                                                 int64_t grid_h, int64_t grid_w) const {
    using Acc = acc_t<T>;
    if (c >= channels || u < 0 || u >= grid_h || v < 0 || v >= grid_w) return Acc(0);
    const int64_t h = up ? (u >> 1) : u;
    const int64_t w = up ? (v >> 1) : v;
    const Acc t = sub_rn(lrelu(preact(n, c, h, w), alpha), center_of(n, c));
    return to_acc(scale[n * channels + c]) * t + to_acc(shift[n * channels + c]);
  }

  // center[n, c], 0 without a center.
  __device__ __forceinline__ acc_t<T> center_of(int64_t n, int64_t c) const {
    return center != nullptr ? to_acc(center[n * channels + c]) : acc_t<T>(0);
  }
};

template <typename T>
Prologue<T> make_prologue(const void* x, Strides4 xs, const void* scale, const void* shift,
                          const void* center, const void* noise, const void* noise_weight,
                          const void* act_bias,
                          int64_t channels, int64_t height, int64_t width, double alpha, bool up) {
  Prologue<T> p;
  p.x = static_cast<const T*>(x);
  p.scale = static_cast<const T*>(scale);
  p.shift = static_cast<const T*>(shift);
  p.center = static_cast<const T*>(center);
  p.noise = static_cast<const T*>(noise);
  p.noise_weight = static_cast<const T*>(noise_weight);
  p.act_bias = static_cast<const T*>(act_bias);
  p.xs = xs;
  p.channels = channels;
  p.height = height;
  p.width = width;
  p.alpha = static_cast<acc_t<T>>(alpha);
  p.up = up;
  return p;
}

// ---------------------------------------------------------------------------------------------
// GEMM building blocks
// ---------------------------------------------------------------------------------------------

// Pixel p of an [N, *, rows, cols] grid (p = (n * rows + h) * cols + w); invalid past `count`.
struct Pixel {
  int64_t n;
  int64_t h;
  int64_t w;
  bool valid;
};

__device__ __forceinline__ Pixel decode_pixel(int64_t p, int64_t count, int64_t rows,
                                              int64_t cols) {
  if (p >= count) return {0, 0, 0, false};
  const int64_t plane = rows * cols;
  const int64_t n = p / plane;
  const int64_t r = p - n * plane;
  const int64_t h = r / cols;
  return {n, h, r - h * cols, true};
}

// The (pixel, channel) of element e of a pix_extent x ch_extent operand tile that a thread
// loads: with pixel_fast consecutive elements run along the pixels, else along the channels.
struct TileCoord {
  int pix;
  int ch;
};

__device__ __forceinline__ TileCoord tile_coord(bool pixel_fast, int e, int pix_extent,
                                                int ch_extent) {
  return pixel_fast ? TileCoord{e % pix_extent, e / pix_extent}
                    : TileCoord{e / ch_extent, e % ch_extent};
}

// Element e of thread threadIdx.x's r-th load.
__device__ __forceinline__ int load_index(int r) {
  return static_cast<int>(threadIdx.x) + r * kGemmThreads;
}

// The operands of one K step: a[k][m] and b[k][n].
template <typename Acc>
struct SharedTiles {
  Acc a[kTileK][kTileM + kPad];
  Acc b[kTileK][kTileN + kPad];
};

// A thread's micro-tile: rows m_base + 16 i, columns n_base + 16 j. With m_fast consecutive
// threads take consecutive rows (coalesced stores when the rows are contiguous pixels), else
// consecutive columns.
struct Roles {
  int m_base;
  int n_base;
};

__device__ __forceinline__ Roles micro_roles(bool m_fast) {
  const int t = static_cast<int>(threadIdx.x);
  return m_fast ? Roles{t % kThreadGrid, t / kThreadGrid} : Roles{t / kThreadGrid, t % kThreadGrid};
}

// acc[i][j] += sum over k of a[k][m_i] * b[k][n_j].
template <typename Acc>
__device__ __forceinline__ void multiply_tiles(const SharedTiles<Acc>& s, Roles roles,
                                               Acc (&acc)[kMicro][kMicro]) {
#pragma unroll
  for (int k = 0; k < kTileK; ++k) {
    Acc a[kMicro];
    Acc b[kMicro];
#pragma unroll
    for (int i = 0; i < kMicro; ++i) a[i] = s.a[k][roles.m_base + kThreadGrid * i];
#pragma unroll
    for (int j = 0; j < kMicro; ++j) b[j] = s.b[k][roles.n_base + kThreadGrid * j];
#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
#pragma unroll
      for (int j = 0; j < kMicro; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

// One K step on a tile of the packed weight [taps][rows][cols]: b[k][col] = the weight at
// (tap, row0 + k, col0 + col), 0 outside rows x cols; then acc += a x b (a already loaded).
template <typename Acc>
__device__ __forceinline__ void weight_tile_step(SharedTiles<Acc>& tiles,
                                                 const Acc* __restrict__ wpack, int64_t tap,
                                                 int64_t row0, int64_t rows, int64_t col0,
                                                 int64_t cols, Roles roles,
                                                 Acc (&acc)[kMicro][kMicro]) {
#pragma unroll
  for (int r = 0; r < kLoads; ++r) {
    const int e = load_index(r);
    const int k = e / kTileN;
    const int col = e % kTileN;
    const int64_t row = row0 + k;
    const int64_t c = col0 + col;
    tiles.b[k][col] = row < rows && c < cols ? wpack[(tap * rows + row) * cols + c] : Acc(0);
  }
  __syncthreads();
  multiply_tiles(tiles, roles, acc);
  __syncthreads();
}

// ---------------------------------------------------------------------------------------------
// Weight re-layouts
// ---------------------------------------------------------------------------------------------

enum class WeightPack : int {
  // out[tap][ci][co] = w[co][ci][tap]: the forward's weight operand.
  kForward = 0,
  // out[r * 3 + q][co][ci] = w[co][ci][2 - r][2 - q]: the flipped, transposed weight of the
  // grad-input convolution, GA[u, v] = sum w'[r, q] * grad_out[u + r - 1, v + q - 1].
  kGradInput = 1,
  // out[r * 4 + q][co][ci] = sum of w[co][ci][kh][kw] over kh in {2 - r, 3 - r} and kw in
  // {2 - q, 3 - q} (within 0..2), r, q in 0..3: the grad-input kernel of `up` on the H x W grid.
  // Ga[h] = GA[2h] + GA[2h + 1] (per axis), and GA[u] = sum_kh w[kh] g[u - kh + 1], so
  // Ga[h] = sum over dy in {0, 1}, kh of w[kh] g[2h + d] with d = dy - kh + 1 in -1..2:
  // grad_out row 2h + r - 1 (r = d + 1) is weighted by the sum of w[kh] over kh = dy + 2 - r,
  // i.e. w[2] for r = 0, w[1] + w[2] for r = 1, w[0] + w[1] for r = 2, w[0] for r = 3. Both
  // axes alike: a 4 x 4 stride-2 kernel, 16 taps instead of the 36 of a 3 x 3 conv on 2H x 2W.
  kGradInputUp = 2,
};

template <typename T>
__global__ void __launch_bounds__(kSmallThreads)
    pack_weight_kernel(const T* __restrict__ w, int64_t out_channels, int64_t channels,
                       WeightPack mode, acc_t<T>* __restrict__ out) {
  using Acc = acc_t<T>;
  const int64_t taps = mode == WeightPack::kGradInputUp ? 16 : 9;
  const int64_t total = taps * out_channels * channels;
  const int64_t stride = int64_t{gridDim.x} * kSmallThreads;
  for (int64_t e = int64_t{blockIdx.x} * kSmallThreads + threadIdx.x; e < total; e += stride) {
    if (mode == WeightPack::kForward) {
      const int64_t tap = e / (channels * out_channels);
      const int64_t rem = e - tap * channels * out_channels;
      const int64_t ci = rem / out_channels;
      const int64_t co = rem - ci * out_channels;
      out[e] = to_acc(w[(co * channels + ci) * 9 + tap]);
      continue;
    }
    const int64_t tap = e / (out_channels * channels);
    const int64_t rem = e - tap * out_channels * channels;
    const int64_t co = rem / channels;
    const int64_t ci = rem - co * channels;
    const T* wk = w + (co * channels + ci) * 9;
    if (mode == WeightPack::kGradInput) {
      const int64_t r = tap / 3;
      const int64_t q = tap - r * 3;
      out[e] = to_acc(wk[(2 - r) * 3 + (2 - q)]);
      continue;
    }
    const int r = static_cast<int>(tap / 4);
    const int q = static_cast<int>(tap - r * 4);
    Acc sum = Acc(0);
    for (int kh = 2 - r; kh <= 3 - r; ++kh) {
      if (kh < 0 || kh > 2) continue;
      for (int kw = 2 - q; kw <= 3 - q; ++kw) {
        if (kw < 0 || kw > 2) continue;
        sum += to_acc(wk[kh * 3 + kw]);
      }
    }
    out[e] = sum;
  }
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

template <typename T>
struct ForwardArgs {
  Prologue<T> pro;
  const acc_t<T>* __restrict__ wpack;  // [9][C][Cout]
  const T* __restrict__ bias;          // [Cout] or nullptr
  T* __restrict__ out;                 // [N, Cout, Ho, Wo] with strides os
  Strides4 os;
  int64_t out_channels;
  int64_t out_h;
  int64_t out_w;
  int64_t pixels;     // N * Ho * Wo
  bool load_pixel_fast;   // x's contiguous dimension is the pixels
  bool store_pixel_fast;  // out's contiguous dimension is the pixels
};

// Block (bx, by): output pixels bx * 64 + [0, 64) (flat over n, oh, ow) x output channels
// by * 64 + [0, 64). K steps: taps kh, kw, then input-channel chunks of kTileK.
template <typename T>
__global__ void __launch_bounds__(kGemmThreads) adain_conv_forward_kernel(ForwardArgs<T> args) {
  using Acc = acc_t<T>;
  __shared__ SharedTiles<Acc> tiles;
  const Prologue<T>& pro = args.pro;
  const int64_t C = pro.channels;
  const int64_t cout = args.out_channels;
  const int64_t m0 = int64_t{blockIdx.x} * kTileM;
  const int64_t co0 = int64_t{blockIdx.y} * kTileN;

  // The input-operand elements this thread loads: fixed pixels and channel offsets.
  Pixel load_pixel[kLoads];
  int load_m[kLoads];
  int load_k[kLoads];
#pragma unroll
  for (int r = 0; r < kLoads; ++r) {
    const TileCoord tc = tile_coord(args.load_pixel_fast, load_index(r), kTileM, kTileK);
    load_m[r] = tc.pix;
    load_k[r] = tc.ch;
    load_pixel[r] = decode_pixel(m0 + tc.pix, args.pixels, args.out_h, args.out_w);
  }

  const Roles roles = micro_roles(args.store_pixel_fast);
  Acc acc[kMicro][kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = Acc(0);
  }

  for (int tap = 0; tap < 9; ++tap) {
    const int dh = tap / 3 - 1;
    const int dw = tap % 3 - 1;
    for (int64_t c0 = 0; c0 < C; c0 += kTileK) {
#pragma unroll
      for (int r = 0; r < kLoads; ++r) {
        const Pixel& p = load_pixel[r];
        tiles.a[load_k[r]][load_m[r]] =
            p.valid ? pro.conv_input(p.n, c0 + load_k[r], p.h + dh, p.w + dw, args.out_h,
                                     args.out_w)
                    : Acc(0);
      }
      weight_tile_step(tiles, args.wpack, tap, c0, C, co0, cout, roles, acc);
    }
  }

#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    const Pixel p = decode_pixel(m0 + roles.m_base + kThreadGrid * i, args.pixels, args.out_h,
                                 args.out_w);
    if (!p.valid) continue;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int64_t co = co0 + roles.n_base + kThreadGrid * j;
      if (co >= cout) continue;
      Acc v = acc[i][j];
      if (args.bias != nullptr) v += to_acc(args.bias[co]);
      args.out[p.n * args.os.n + co * args.os.c + p.h * args.os.h + p.w * args.os.w] =
          from_acc<T>(v);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: grad input (with the prologue's gradients in the epilogue)
// ---------------------------------------------------------------------------------------------

// The four per-(n, c) sums of the grad-input epilogue, in this order in the partials.
constexpr int kSumGaT = 0;     // Ga * t           -> grad_scale
constexpr int kSumGa = 1;      // Ga               -> grad_shift
constexpr int kSumGxNoise = 2; // grad_x * noise   -> grad_noise_weight
constexpr int kSumGx = 3;      // grad_x           -> grad_act_bias
constexpr int kNumSums = 4;

template <typename T>
struct GradInputArgs {
  Prologue<T> pro;                     // x and the prologue inputs (epilogue)
  const T* __restrict__ grad_out;      // [N, Cout, Ho, Wo] with strides gs
  Strides4 gs;
  const acc_t<T>* __restrict__ wpack;  // [taps][Cout][C]
  T* __restrict__ grad_x;              // [N, C, H, W] with strides gxs
  Strides4 gxs;
  // [kNumSums][N][groups][C]: the block's sums over its pixels.
  acc_t<T>* __restrict__ partials;
  int64_t batch;
  int64_t out_channels;
  int64_t out_h;
  int64_t out_w;
  int taps_per_dim;  // 3, or 4 with up
  int stride;        // 1, or 2 with up
  int64_t image_tiles;      // ceil(H * W / kTileM)
  int64_t tiles_per_group;  // pixel tiles one block walks through
  int64_t groups;           // ceil(image_tiles / tiles_per_group)
  bool grad_pixel_fast;     // grad_out's contiguous dimension is the pixels
  bool x_pixel_fast;        // grad_x's (and x's) contiguous dimension is the pixels
};

// Block (bx, by): image n = bx / groups, pixel tiles of group bx % groups (64 pixels of the H x W
// grid each, in turn) x input channels by * 64 + [0, 64). Per tile, K steps: the taps (r, q),
// then output-channel chunks of kTileK; Ga[h, w] = sum w'[tap][co][ci] *
// grad_out[stride * h + r - 1, stride * w + q - 1]. The epilogue forms grad_x and adds the
// four sums per channel over the block's pixels; they are reduced across the threads in a
// fixed order and stored as the block's partials.
template <typename T>
__global__ void __launch_bounds__(kGemmThreads)
    adain_conv_grad_input_kernel(GradInputArgs<T> args) {
  using Acc = acc_t<T>;
  __shared__ SharedTiles<Acc> tiles;
  const Prologue<T>& pro = args.pro;
  const int64_t C = pro.channels;
  const int64_t H = pro.height;
  const int64_t W = pro.width;
  const int64_t hw_count = H * W;
  const int64_t cout = args.out_channels;
  const int64_t n = int64_t{blockIdx.x} / args.groups;
  const int64_t group = int64_t{blockIdx.x} - n * args.groups;
  const int64_t ci0 = int64_t{blockIdx.y} * kTileN;
  const int taps = args.taps_per_dim * args.taps_per_dim;
  const T* __restrict__ g = args.grad_out;
  const Strides4 gs = args.gs;
  const Roles roles = micro_roles(args.x_pixel_fast);

  Acc sums[kNumSums][kMicro];
#pragma unroll
  for (int q = 0; q < kNumSums; ++q) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) sums[q][j] = Acc(0);
  }

  const int64_t tile_begin = group * args.tiles_per_group;
  const int64_t tile_end = min64(args.image_tiles, tile_begin + args.tiles_per_group);
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    const int64_t hw0 = tile * kTileM;
    // The grad_out elements this thread loads: fixed pixels (h, w) and channel offsets.
    int load_m[kLoads];
    int load_k[kLoads];
    int64_t load_h[kLoads];
    int64_t load_w[kLoads];
    bool load_valid[kLoads];
#pragma unroll
    for (int r = 0; r < kLoads; ++r) {
      const TileCoord tc = tile_coord(args.grad_pixel_fast, load_index(r), kTileM, kTileK);
      load_m[r] = tc.pix;
      load_k[r] = tc.ch;
      const int64_t hw = hw0 + tc.pix;
      load_valid[r] = hw < hw_count;
      load_h[r] = hw / W;
      load_w[r] = hw - load_h[r] * W;
    }

    Acc acc[kMicro][kMicro];
#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
#pragma unroll
      for (int j = 0; j < kMicro; ++j) acc[i][j] = Acc(0);
    }
    for (int tap = 0; tap < taps; ++tap) {
      const int dr = tap / args.taps_per_dim - 1;
      const int dq = tap % args.taps_per_dim - 1;
      for (int64_t co0 = 0; co0 < cout; co0 += kTileK) {
#pragma unroll
        for (int r = 0; r < kLoads; ++r) {
          const int64_t co = co0 + load_k[r];
          const int64_t gh = args.stride * load_h[r] + dr;
          const int64_t gw = args.stride * load_w[r] + dq;
          const bool inside = load_valid[r] && co < cout && gh >= 0 && gh < args.out_h &&
                              gw >= 0 && gw < args.out_w;
          tiles.a[load_k[r]][load_m[r]] =
              inside ? to_acc(g[n * gs.n + co * gs.c + gh * gs.h + gw * gs.w]) : Acc(0);
        }
        weight_tile_step(tiles, args.wpack, tap, co0, cout, ci0, C, roles, acc);
      }
    }

    // Epilogue: grad_pre = Ga * scale * slope -> grad_x; the four sums.
#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
      const int64_t hw = hw0 + roles.m_base + kThreadGrid * i;
      if (hw >= hw_count) continue;
      const int64_t h = hw / W;
      const int64_t w = hw - h * W;
      const Acc noise_v =
          pro.noise != nullptr ? to_acc(pro.noise[(n * H + h) * W + w]) : Acc(0);
#pragma unroll
      for (int j = 0; j < kMicro; ++j) {
        const int64_t ci = ci0 + roles.n_base + kThreadGrid * j;
        if (ci >= C) continue;
        const Acc pre = pro.preact(n, ci, h, w);
        const Acc t = lrelu(pre, pro.alpha) - pro.center_of(n, ci);  // d a / d scale
        const Acc ga = acc[i][j];
        const Acc gx = ga * to_acc(pro.scale[n * C + ci]) * (pre > Acc(0) ? Acc(1) : pro.alpha);
        args.grad_x[n * args.gxs.n + ci * args.gxs.c + h * args.gxs.h + w * args.gxs.w] =
            from_acc<T>(gx);
        sums[kSumGaT][j] += ga * t;
        sums[kSumGa][j] += ga;
        sums[kSumGxNoise][j] += gx * noise_v;
        sums[kSumGx][j] += gx;
      }
    }
  }

  // Per-channel sums over the block: the kThreadGrid threads of a column set write theirs to
  // a [kThreadGrid][kTileN] array (the A tile, free after the last barrier of the K loop), and
  // one thread per column adds them in row order.
  Acc(*red)[kTileM + kPad] = tiles.a;
  const int tid = static_cast<int>(threadIdx.x);
  for (int q = 0; q < kNumSums; ++q) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) red[roles.m_base][roles.n_base + kThreadGrid * j] = sums[q][j];
    __syncthreads();
    if (tid < kTileN && ci0 + tid < C) {
      Acc total = Acc(0);
      for (int row = 0; row < kThreadGrid; ++row) total += red[row][tid];
      args.partials[((q * args.batch + n) * args.groups + group) * C + ci0 + tid] = total;
    }
    __syncthreads();
  }
}

// Per (n, c): grad_scale and grad_shift (the sums of the groups' partials, in group order), and
// the per-sample sums of the two per-channel gradients (to nc_sums [2][N][C]).
template <typename T>
__global__ void __launch_bounds__(kSmallThreads)
    grad_input_finish_nc_kernel(const acc_t<T>* __restrict__ partials, int64_t batch,
                                int64_t groups, int64_t channels, T* __restrict__ grad_scale,
                                T* __restrict__ grad_shift, acc_t<T>* __restrict__ nc_sums) {
  using Acc = acc_t<T>;
  const int64_t count = batch * channels;
  const int64_t stride = int64_t{gridDim.x} * kSmallThreads;
  for (int64_t i = int64_t{blockIdx.x} * kSmallThreads + threadIdx.x; i < count; i += stride) {
    const int64_t n = i / channels;
    const int64_t c = i - n * channels;
    Acc total[kNumSums];
    for (int q = 0; q < kNumSums; ++q) {
      total[q] = Acc(0);
      const Acc* p = partials + (q * batch + n) * groups * channels + c;
      for (int64_t grp = 0; grp < groups; ++grp) total[q] += p[grp * channels];
    }
    grad_scale[i] = from_acc<T>(total[kSumGaT]);
    grad_shift[i] = from_acc<T>(total[kSumGa]);
    nc_sums[i] = total[kSumGxNoise];
    nc_sums[count + i] = total[kSumGx];
  }
}

// Per c: grad_noise_weight (when given) and grad_act_bias, the sums over n of nc_sums.
template <typename T>
__global__ void __launch_bounds__(kSmallThreads)
    grad_input_finish_c_kernel(const acc_t<T>* __restrict__ nc_sums, int64_t batch,
                               int64_t channels, T* __restrict__ grad_noise_weight,
                               T* __restrict__ grad_act_bias) {
  using Acc = acc_t<T>;
  const int64_t count = batch * channels;
  const int64_t stride = int64_t{gridDim.x} * kSmallThreads;
  for (int64_t c = int64_t{blockIdx.x} * kSmallThreads + threadIdx.x; c < channels; c += stride) {
    Acc noise_sum = Acc(0);
    Acc sum = Acc(0);
    for (int64_t n = 0; n < batch; ++n) {
      noise_sum += nc_sums[n * channels + c];
      sum += nc_sums[count + n * channels + c];
    }
    if (grad_noise_weight != nullptr) grad_noise_weight[c] = from_acc<T>(noise_sum);
    grad_act_bias[c] = from_acc<T>(sum);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: grad weight and grad bias
// ---------------------------------------------------------------------------------------------

template <typename T>
struct GradWeightArgs {
  Prologue<T> pro;
  const T* __restrict__ grad_out;  // [N, Cout, Ho, Wo] with strides gs
  Strides4 gs;
  acc_t<T>* __restrict__ weight_partials;  // [splits][Cout][9][C]
  acc_t<T>* __restrict__ bias_partials;    // [splits][Cout]
  int64_t out_channels;
  int64_t out_h;
  int64_t out_w;
  int64_t pixels;           // N * Ho * Wo
  int64_t channel_tiles;    // max(ceil(C / kTileN), 1)
  int64_t steps_per_split;  // K steps (kTileK pixels each) per split
  bool grad_pixel_fast;     // grad_out's contiguous dimension is the pixels
  bool x_pixel_fast;        // x's contiguous dimension is the pixels
};

// Block (bx, by, bz): output channels bx * 64 + [0, 64) x (tap, input channels) of column tile
// by (tap = by / channel_tiles, channels (by % channel_tiles) * 64 + [0, 64)), over the pixels
// of split bz. a[k][co] = grad_out at pixel k, b[k][ci] = conv_input at the pixel shifted by
// the tap. The blocks of column tile 0 also sum grad_out per output channel (grad_bias).
template <typename T>
__global__ void __launch_bounds__(kGemmThreads)
    adain_conv_grad_weight_kernel(GradWeightArgs<T> args) {
  using Acc = acc_t<T>;
  __shared__ SharedTiles<Acc> tiles;
  __shared__ Pixel step_pixels[kTileK];
  const Prologue<T>& pro = args.pro;
  const int64_t C = pro.channels;
  const int64_t cout = args.out_channels;
  const int64_t co0 = int64_t{blockIdx.x} * kTileM;
  const int64_t tap = int64_t{blockIdx.y} / args.channel_tiles;
  const int64_t ci0 = (int64_t{blockIdx.y} - tap * args.channel_tiles) * kTileN;
  const int dh = static_cast<int>(tap / 3) - 1;
  const int dw = static_cast<int>(tap % 3) - 1;
  const int64_t split = blockIdx.z;
  const int64_t p_begin = split * args.steps_per_split * kTileK;
  const int64_t p_end = min64(args.pixels, p_begin + args.steps_per_split * kTileK);
  const T* __restrict__ g = args.grad_out;
  const Strides4 gs = args.gs;
  const int tid = static_cast<int>(threadIdx.x);
  const bool sums_bias = blockIdx.y == 0 && tid < kTileM;

  TileCoord a_at[kLoads];  // (pixel, output channel) of the grad_out loads
  TileCoord b_at[kLoads];  // (pixel, input channel) of the prologue loads
#pragma unroll
  for (int r = 0; r < kLoads; ++r) {
    a_at[r] = tile_coord(args.grad_pixel_fast, load_index(r), kTileK, kTileM);
    b_at[r] = tile_coord(args.x_pixel_fast, load_index(r), kTileK, kTileN);
  }
  // Columns are the fast index of the micro-tiles: coalesced partial stores along ci.
  const Roles roles = micro_roles(false);
  Acc acc[kMicro][kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = Acc(0);
  }
  Acc bias_sum = Acc(0);

  for (int64_t p0 = p_begin; p0 < p_end; p0 += kTileK) {
    if (tid < kTileK) step_pixels[tid] = decode_pixel(p0 + tid, p_end, args.out_h, args.out_w);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kLoads; ++r) {
      const Pixel& p = step_pixels[a_at[r].pix];
      const int64_t co = co0 + a_at[r].ch;
      tiles.a[a_at[r].pix][a_at[r].ch] =
          p.valid && co < cout ? to_acc(g[p.n * gs.n + co * gs.c + p.h * gs.h + p.w * gs.w])
                               : Acc(0);
    }
#pragma unroll
    for (int r = 0; r < kLoads; ++r) {
      const Pixel& p = step_pixels[b_at[r].pix];
      tiles.b[b_at[r].pix][b_at[r].ch] =
          p.valid ? pro.conv_input(p.n, ci0 + b_at[r].ch, p.h + dh, p.w + dw, args.out_h,
                                   args.out_w)
                  : Acc(0);
    }
    __syncthreads();
    if (sums_bias) {
#pragma unroll
      for (int k = 0; k < kTileK; ++k) bias_sum += tiles.a[k][tid];
    }
    multiply_tiles(tiles, roles, acc);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    const int64_t co = co0 + roles.m_base + kThreadGrid * i;
    if (co >= cout) continue;
    Acc* row = args.weight_partials + ((split * cout + co) * 9 + tap) * C;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int64_t ci = ci0 + roles.n_base + kThreadGrid * j;
      if (ci < C) row[ci] = acc[i][j];
    }
  }
  if (sums_bias && co0 + tid < cout) args.bias_partials[split * cout + co0 + tid] = bias_sum;
}

// grad_weight [Cout][C][3][3] and grad_bias [Cout]: the splits' partials added in split order
// (zeros when there are no splits, i.e. no pixels).
template <typename T>
__global__ void __launch_bounds__(kSmallThreads)
    grad_weight_finish_kernel(const acc_t<T>* __restrict__ weight_partials,
                              const acc_t<T>* __restrict__ bias_partials, int64_t splits,
                              int64_t out_channels, int64_t channels,
                              T* __restrict__ grad_weight, T* __restrict__ grad_bias) {
  using Acc = acc_t<T>;
  const int64_t row = 9 * channels;
  const int64_t weight_count = out_channels * row;
  const int64_t stride = int64_t{gridDim.x} * kSmallThreads;
  for (int64_t e = int64_t{blockIdx.x} * kSmallThreads + threadIdx.x;
       e < weight_count + out_channels; e += stride) {
    Acc total = Acc(0);
    if (e < weight_count) {
      const int64_t co = e / row;
      const int64_t rem = e - co * row;
      const int64_t ci = rem / 9;
      const int64_t tap = rem - ci * 9;
      for (int64_t s = 0; s < splits; ++s) {
        total += weight_partials[((s * out_channels + co) * 9 + tap) * channels + ci];
      }
      grad_weight[e] = from_acc<T>(total);
    } else {
      const int64_t co = e - weight_count;
      for (int64_t s = 0; s < splits; ++s) total += bias_partials[s * out_channels + co];
      grad_bias[co] = from_acc<T>(total);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward plan and workspace
// ---------------------------------------------------------------------------------------------

struct BackwardPlan {
  int taps_per_dim;
  int64_t out_h;
  int64_t out_w;
  int64_t pixels;  // N * Ho * Wo
  // grad input
  int64_t input_channel_tiles;  // ceil(C / kTileN)
  int64_t image_tiles;          // ceil(H * W / kTileM)
  int64_t tiles_per_group;
  int64_t groups;
  // grad weight
  int64_t weight_channel_tiles;  // max(ceil(C / kTileN), 1)
  int64_t splits;
  int64_t steps_per_split;
  // workspace (bytes): offsets of the Acc arrays and the total
  size_t wpack_at;
  size_t input_partials_at;
  size_t nc_sums_at;
  size_t weight_partials_at;
  size_t bias_partials_at;
  size_t total_bytes;
};

// Sizes are >= 0.
BackwardPlan plan_backward(DType dtype, int64_t n, int64_t channels, int64_t height,
                           int64_t width, int64_t out_channels, bool up) {
  BackwardPlan plan{};
  plan.taps_per_dim = up ? 4 : 3;
  plan.out_h = up ? 2 * height : height;
  plan.out_w = up ? 2 * width : width;
  plan.pixels = n * plan.out_h * plan.out_w;

  plan.input_channel_tiles = ceil_div(channels, kTileN);
  plan.image_tiles = ceil_div(height * width, kTileM);
  // About 4 * kTargetBlocks blocks at most; each walks tiles_per_group pixel tiles of its image.
  const int64_t blocks_per_tile = n * plan.input_channel_tiles;
  const int64_t max_groups =
      blocks_per_tile > 0 ? ceil_div(4 * kTargetBlocks, blocks_per_tile) : 1;
  plan.groups = min64(plan.image_tiles, max_groups);
  plan.tiles_per_group = plan.groups > 0 ? ceil_div(plan.image_tiles, plan.groups) : 0;
  plan.groups = plan.tiles_per_group > 0 ? ceil_div(plan.image_tiles, plan.tiles_per_group) : 0;

  plan.weight_channel_tiles = channels > 0 ? ceil_div(channels, kTileN) : 1;
  const int64_t steps = ceil_div(plan.pixels, kTileK);
  if (steps > 0 && out_channels > 0) {
    const int64_t mn_blocks = ceil_div(out_channels, kTileM) * 9 * plan.weight_channel_tiles;
    int64_t splits = ceil_div(kTargetBlocks, mn_blocks);
    const int64_t max_splits = steps / kMinStepsPerSplit;
    splits = min64(splits, max_splits > 1 ? max_splits : 1);
    plan.steps_per_split = ceil_div(steps, splits);
    plan.splits = ceil_div(steps, plan.steps_per_split);
  }

  const size_t acc = acc_bytes(dtype);
  size_t at = 0;
  const auto take = [&](int64_t elems) {
    const size_t here = at;
    at += align_up(static_cast<size_t>(elems) * acc);
    return here;
  };
  plan.wpack_at = take(int64_t{plan.taps_per_dim} * plan.taps_per_dim * out_channels * channels);
  plan.input_partials_at = take(int64_t{kNumSums} * n * plan.groups * channels);
  plan.nc_sums_at = take(2 * n * channels);
  plan.weight_partials_at = take(plan.splits * out_channels * 9 * channels);
  plan.bias_partials_at = take(plan.splits * out_channels);
  plan.total_bytes = at;
  return plan;
}

// ---------------------------------------------------------------------------------------------
// adain_stats
// ---------------------------------------------------------------------------------------------

template <typename T>
struct StatsArgs {
  const T* __restrict__ x;
  const T* __restrict__ noise;         // [N, H * W] or nullptr
  const T* __restrict__ noise_weight;  // [C] (with noise)
  const T* __restrict__ act_bias;      // [C] or nullptr
  int64_t batch;
  int64_t channels;
  int64_t row_len;  // H * W
  acc_t<T> alpha;
  acc_t<T> eps;
  acc_t<T>* stats;  // [N, 2C] = (mean | rstd)
  // channels_last: [chunks][N][C] states, chunks of chunk_len pixels
  MeanM2<acc_t<T>>* partials;
  int64_t channel_tiles;  // ceil(C / 32)
  int64_t chunk_len;
};

// Contiguous x: one group of kGroup threads per row (n, c), as adain's forward computes its
// statistics (row_mean_m2 over RowPreact).
template <typename T, int kGroup>
__global__ void __launch_bounds__(RowBlock<kGroup>::kThreads)
    adain_stats_rows_kernel(StatsArgs<T> args) {
  using Acc = acc_t<T>;
  const int lane = threadIdx.x % kGroup;
  const int64_t C = args.channels;
  const int64_t M = args.row_len;
  const int64_t rows = args.batch * C;
  for (int64_t row = first_row<kGroup>(); row < rows; row += row_step<kGroup>()) {
    const int64_t n = row / C;
    const int64_t c = row - n * C;
    RowPreact<T> pre;
    pre.x = args.x + row * M;
    pre.noise = args.noise != nullptr ? args.noise + n * M : nullptr;
    pre.noise_weight = args.noise != nullptr ? to_acc(args.noise_weight[c]) : Acc(0);
    pre.bias = args.act_bias != nullptr ? to_acc(args.act_bias[c]) : Acc(0);
    const MeanM2<Acc> state = row_mean_m2<kGroup>(pre, M, args.alpha, lane);
    if (lane == 0) {
      args.stats[n * 2 * C + c] = state.mean;
      args.stats[n * 2 * C + C + c] = Acc(1) / sqrt(state.m2 / Acc(M) + args.eps);
    }
  }
}

// Pre-activation t(j) of channel c of sample n at pixel j of a channels_last x.
template <typename T>
struct ClPreact {
  const T* __restrict__ x;      // sample n, channel c
  const T* __restrict__ noise;  // sample n, or nullptr
  acc_t<T> noise_weight;
  acc_t<T> act_bias;
  int64_t channels;
  __device__ __forceinline__ ClPreact(const StatsArgs<T>& args, int64_t n, int64_t c) {
    const int64_t M = args.row_len;
    x = args.x + n * M * args.channels + c;
    noise = args.noise != nullptr ? args.noise + n * M : nullptr;
    noise_weight = noise != nullptr ? to_acc(args.noise_weight[c]) : acc_t<T>(0);
    act_bias = args.act_bias != nullptr ? to_acc(args.act_bias[c]) : acc_t<T>(0);
    channels = args.channels;
  }
  __device__ __forceinline__ acc_t<T> operator()(int64_t j) const {
    acc_t<T> pre = to_acc(x[j * channels]);
    if (noise != nullptr) pre += noise_weight * to_acc(noise[j]);
    return pre + act_bias;
  }
};

// channels_last x: block (bx, by) covers sample n = bx / channel_tiles, channels
// (bx % channel_tiles) * 32 + lane and the pixels of chunk by. Warp w takes pixels
// tile + w + 8 k (k < kRowItems) of each pass, computes their exact two-pass mean and M2 and
// merges them into its running state (as row_mean_m2 does); the 8 warps' states are merged in
// warp order and stored as the chunk's partial.
template <typename T>
__global__ void __launch_bounds__(kStatsThreads)
    adain_stats_channels_last_kernel(StatsArgs<T> args) {
  using Acc = acc_t<T>;
  __shared__ MeanM2<Acc> warp_states[kStatsWarps][kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t C = args.channels;
  const int64_t M = args.row_len;
  const int64_t n = int64_t{blockIdx.x} / args.channel_tiles;
  const int64_t c = (int64_t{blockIdx.x} - n * args.channel_tiles) * kWarpSize + lane;
  const int64_t chunk = blockIdx.y;
  const int64_t j_begin = chunk * args.chunk_len;
  const int64_t j_end = min64(M, j_begin + args.chunk_len);

  MeanM2<Acc> state{Acc(0), Acc(0), 0};
  if (c < C) {
    const ClPreact<T> pre(args, n, c);
    // Shifted by the (n, c) row's first value, as row_mean_m2 (the merge kernel adds it back).
    const Acc shift = lrelu(pre(0), args.alpha);
    for (int64_t tile = j_begin; tile < j_end; tile += kStatsPass) {
      merge_tile(state, tile + warp, kStatsWarps, j_end,
                 [&](int64_t j) { return lrelu(pre(j), args.alpha) - shift; });
    }
  }
  warp_states[warp][lane] = state;
  __syncthreads();
  if (warp == 0) {
    MeanM2<Acc> total = warp_states[0][lane];
    for (int w = 1; w < kStatsWarps; ++w) total = combine(total, warp_states[w][lane]);
    if (c < C) args.partials[(chunk * args.batch + n) * C + c] = total;
  }
}

// Per (n, c): the chunks' states merged in chunk order -> (mean | rstd).
template <typename T>
__global__ void __launch_bounds__(kSmallThreads)
    adain_stats_merge_kernel(StatsArgs<T> args, int64_t chunks) {
  using Acc = acc_t<T>;
  const int64_t C = args.channels;
  const int64_t count = args.batch * C;
  const int64_t stride = int64_t{gridDim.x} * kSmallThreads;
  for (int64_t i = int64_t{blockIdx.x} * kSmallThreads + threadIdx.x; i < count; i += stride) {
    const int64_t n = i / C;
    const int64_t c = i - n * C;
    MeanM2<Acc> total = args.partials[i];
    for (int64_t k = 1; k < chunks; ++k) total = combine(total, args.partials[k * count + i]);
    // The partials are shifted by the row's first value (exactly: a constant row's are 0).
    const Acc shift = lrelu(ClPreact<T>(args, n, c)(0), args.alpha);
    args.stats[n * 2 * C + c] = shift + total.mean;
    args.stats[n * 2 * C + C + c] = Acc(1) / sqrt(total.m2 / Acc(args.row_len) + args.eps);
  }
}

struct StatsPlan {
  int64_t channel_tiles;
  int64_t chunks;
  int64_t chunk_len;
};

// channels_last only; n, channels, row_len >= 1.
StatsPlan plan_stats_channels_last(int64_t n, int64_t channels, int64_t row_len) {
  StatsPlan plan{};
  plan.channel_tiles = ceil_div(channels, kWarpSize);
  const int64_t blocks = n * plan.channel_tiles;
  const int64_t max_chunks = ceil_div(row_len, kStatsMinChunk);
  int64_t chunks = min64(max_chunks, ceil_div(kStatsTargetBlocks, blocks));
  if (chunks < 1) chunks = 1;
  plan.chunk_len = ceil_div(ceil_div(row_len, chunks), kStatsPass) * kStatsPass;
  plan.chunks = ceil_div(row_len, plan.chunk_len);
  return plan;
}

size_t mean_m2_bytes(DType dtype) {
  return acc_bytes(dtype) == sizeof(double) ? sizeof(MeanM2<double>) : sizeof(MeanM2<float>);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

size_t adain_conv2d_forward_workspace_bytes(DType dtype, int64_t channels, int64_t out_channels) {
  if (channels <= 0 || out_channels <= 0) return 0;
  return align_up(static_cast<size_t>(9 * channels * out_channels) * acc_bytes(dtype));
}

cudaError_t adain_conv2d_forward(DType dtype, const void* x, Strides4 x_strides,
                                 const void* scale, const void* shift, const void* center,
                                 const void* weight, const void* bias, const void* noise,
                                 const void* noise_weight,
                                 const void* act_bias, int64_t n, int64_t channels,
                                 int64_t height, int64_t width, int64_t out_channels,
                                 double alpha, bool up, void* out, Strides4 out_strides,
                                 void* workspace, cudaStream_t stream) {
  if (n < 0 || channels < 0 || height < 0 || width < 0 || out_channels < 0) {
    return cudaErrorInvalidValue;
  }
  if (!noise_pair_ok(noise, noise_weight, n * height * width, channels)) {
    return cudaErrorInvalidValue;
  }
  const int64_t out_h = up ? 2 * height : height;
  const int64_t out_w = up ? 2 * width : width;
  const int64_t pixels = n * out_h * out_w;
  if (pixels == 0 || out_channels == 0) return cudaSuccess;
  const int64_t m_tiles = ceil_div(pixels, kTileM);
  const int64_t n_tiles = ceil_div(out_channels, kTileN);
  if (m_tiles > kMaxGridX || n_tiles > kMaxGridY) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    Acc* wpack = static_cast<Acc*>(workspace);
    if (channels > 0) {
      pack_weight_kernel<T>
          <<<small_num_blocks(9 * channels * out_channels), kSmallThreads, 0, stream>>>(
              static_cast<const T*>(weight), out_channels, channels, WeightPack::kForward,
              wpack);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    ForwardArgs<T> args{};
    args.pro = make_prologue<T>(x, x_strides, scale, shift, center, noise, noise_weight,
                                act_bias, channels, height, width, alpha, up);
    args.wpack = wpack;
    args.bias = static_cast<const T*>(bias);
    args.out = static_cast<T*>(out);
    args.os = out_strides;
    args.out_channels = out_channels;
    args.out_h = out_h;
    args.out_w = out_w;
    args.pixels = pixels;
    args.load_pixel_fast = pixel_fast(x_strides, channels);
    args.store_pixel_fast = pixel_fast(out_strides, out_channels);
    const dim3 grid(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles));
    adain_conv_forward_kernel<T><<<grid, kGemmThreads, 0, stream>>>(args);
    return cudaGetLastError();
  });
}

size_t adain_conv2d_backward_workspace_bytes(DType dtype, int64_t n, int64_t channels,
                                             int64_t height, int64_t width,
                                             int64_t out_channels, bool up) {
  if (n < 0 || channels < 0 || height < 0 || width < 0 || out_channels < 0) return 0;
  return plan_backward(dtype, n, channels, height, width, out_channels, up).total_bytes;
}

cudaError_t adain_conv2d_backward(DType dtype, const void* grad_out, Strides4 grad_out_strides,
                                  const void* x, Strides4 x_strides, const void* scale,
                                  const void* shift, const void* center, const void* weight,
                                  const void* noise, const void* noise_weight,
                                  const void* act_bias, int64_t n,
                                  int64_t channels, int64_t height, int64_t width,
                                  int64_t out_channels, double alpha, bool up, void* grad_x,
                                  Strides4 grad_x_strides, void* grad_scale, void* grad_shift,
                                  void* grad_weight, void* grad_bias, void* grad_noise_weight,
                                  void* grad_act_bias, void* workspace, cudaStream_t stream) {
  if (n < 0 || channels < 0 || height < 0 || width < 0 || out_channels < 0) {
    return cudaErrorInvalidValue;
  }
  if (!noise_pair_ok(noise, noise_weight, n * height * width, channels)) {
    return cudaErrorInvalidValue;
  }
  const BackwardPlan plan = plan_backward(dtype, n, channels, height, width, out_channels, up);
  const int64_t input_blocks_x = n * plan.groups;
  if (input_blocks_x > kMaxGridX || plan.input_channel_tiles > kMaxGridY ||
      ceil_div(out_channels, kTileM) > kMaxGridX || 9 * plan.weight_channel_tiles > kMaxGridY ||
      plan.splits > kMaxGridZ) {
    return cudaErrorInvalidValue;
  }
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    Acc* wpack = at_offset<Acc>(workspace, plan.wpack_at);
    Acc* input_partials = at_offset<Acc>(workspace, plan.input_partials_at);
    Acc* nc_sums = at_offset<Acc>(workspace, plan.nc_sums_at);
    Acc* weight_partials = at_offset<Acc>(workspace, plan.weight_partials_at);
    Acc* bias_partials = at_offset<Acc>(workspace, plan.bias_partials_at);
    const Prologue<T> pro = make_prologue<T>(x, x_strides, scale, shift, center, noise,
                                             noise_weight, act_bias, channels, height, width,
                                             alpha, up);
    cudaError_t err = cudaSuccess;

    // grad input and the prologue's gradients.
    if (channels > 0 && out_channels > 0) {
      const int64_t taps = int64_t{plan.taps_per_dim} * plan.taps_per_dim;
      pack_weight_kernel<T>
          <<<small_num_blocks(taps * out_channels * channels), kSmallThreads, 0, stream>>>(
              static_cast<const T*>(weight), out_channels, channels,
              up ? WeightPack::kGradInputUp : WeightPack::kGradInput, wpack);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }
    if (input_blocks_x > 0 && channels > 0) {
      GradInputArgs<T> args{};
      args.pro = pro;
      args.grad_out = static_cast<const T*>(grad_out);
      args.gs = grad_out_strides;
      args.wpack = wpack;
      args.grad_x = static_cast<T*>(grad_x);
      args.gxs = grad_x_strides;
      args.partials = input_partials;
      args.batch = n;
      args.out_channels = out_channels;
      args.out_h = plan.out_h;
      args.out_w = plan.out_w;
      args.taps_per_dim = plan.taps_per_dim;
      args.stride = up ? 2 : 1;
      args.image_tiles = plan.image_tiles;
      args.tiles_per_group = plan.tiles_per_group;
      args.groups = plan.groups;
      args.grad_pixel_fast = pixel_fast(grad_out_strides, out_channels);
      args.x_pixel_fast = pixel_fast(grad_x_strides, channels);
      const dim3 grid(static_cast<unsigned>(input_blocks_x),
                      static_cast<unsigned>(plan.input_channel_tiles));
      adain_conv_grad_input_kernel<T><<<grid, kGemmThreads, 0, stream>>>(args);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }
    if (n > 0 && channels > 0) {
      grad_input_finish_nc_kernel<T>
          <<<small_num_blocks(n * channels), kSmallThreads, 0, stream>>>(
              input_partials, n, plan.groups, channels, static_cast<T*>(grad_scale),
              static_cast<T*>(grad_shift), nc_sums);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }
    if (channels > 0) {
      grad_input_finish_c_kernel<T><<<small_num_blocks(channels), kSmallThreads, 0, stream>>>(
          nc_sums, n, channels,
          noise_weight != nullptr ? static_cast<T*>(grad_noise_weight) : nullptr,
          static_cast<T*>(grad_act_bias));
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }

    // grad weight and grad bias.
    if (plan.splits > 0) {
      GradWeightArgs<T> args{};
      args.pro = pro;
      args.grad_out = static_cast<const T*>(grad_out);
      args.gs = grad_out_strides;
      args.weight_partials = weight_partials;
      args.bias_partials = bias_partials;
      args.out_channels = out_channels;
      args.out_h = plan.out_h;
      args.out_w = plan.out_w;
      args.pixels = plan.pixels;
      args.channel_tiles = plan.weight_channel_tiles;
      args.steps_per_split = plan.steps_per_split;
      args.grad_pixel_fast = pixel_fast(grad_out_strides, out_channels);
      args.x_pixel_fast = pixel_fast(x_strides, channels);
      const dim3 grid(static_cast<unsigned>(ceil_div(out_channels, kTileM)),
                      static_cast<unsigned>(9 * plan.weight_channel_tiles),
                      static_cast<unsigned>(plan.splits));
      adain_conv_grad_weight_kernel<T><<<grid, kGemmThreads, 0, stream>>>(args);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }
    if (out_channels > 0) {
      grad_weight_finish_kernel<T>
          <<<small_num_blocks(out_channels * (9 * channels + 1)), kSmallThreads, 0, stream>>>(
              weight_partials, bias_partials, plan.splits, out_channels, channels,
              static_cast<T*>(grad_weight), static_cast<T*>(grad_bias));
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }
    return cudaSuccess;
  });
}

size_t adain_stats_forward_workspace_bytes(DType dtype, int64_t n, int64_t channels,
                                           int64_t height, int64_t width, bool channels_last) {
  if (!channels_last || n <= 0 || channels <= 0 || height <= 0 || width <= 0) return 0;
  const StatsPlan plan = plan_stats_channels_last(n, channels, height * width);
  return align_up(static_cast<size_t>(plan.chunks * n * channels) * mean_m2_bytes(dtype));
}

cudaError_t adain_stats_forward(DType dtype, const void* x, const void* noise,
                                const void* noise_weight, const void* act_bias, int64_t n,
                                int64_t channels, int64_t height, int64_t width,
                                bool channels_last, double alpha, double eps, void* stats,
                                void* workspace, cudaStream_t stream) {
  if (n < 0 || channels < 0 || height < 0 || width < 0) return cudaErrorInvalidValue;
  if (!noise_pair_ok(noise, noise_weight, n * height * width, channels)) {
    return cudaErrorInvalidValue;
  }
  const int64_t row_len = height * width;
  if (n == 0 || channels == 0 || row_len == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    StatsArgs<T> args{};
    args.x = static_cast<const T*>(x);
    args.noise = static_cast<const T*>(noise);
    args.noise_weight = static_cast<const T*>(noise_weight);
    args.act_bias = static_cast<const T*>(act_bias);
    args.batch = n;
    args.channels = channels;
    args.row_len = row_len;
    args.alpha = static_cast<Acc>(alpha);
    args.eps = static_cast<Acc>(eps);
    args.stats = static_cast<Acc*>(stats);
    if (!channels_last) {
      return with_row_group(row_len, [&](auto group) {
        constexpr int kGroup = decltype(group)::value;
        adain_stats_rows_kernel<T, kGroup>
            <<<row_num_blocks<kGroup>(n * channels), RowBlock<kGroup>::kThreads, 0, stream>>>(
                args);
        return cudaGetLastError();
      });
    }
    const StatsPlan plan = plan_stats_channels_last(n, channels, row_len);
    if (n * plan.channel_tiles > kMaxGridX || plan.chunks > kMaxGridY) {
      return cudaErrorInvalidValue;
    }
    args.partials = static_cast<MeanM2<Acc>*>(workspace);
    args.channel_tiles = plan.channel_tiles;
    args.chunk_len = plan.chunk_len;
    const dim3 grid(static_cast<unsigned>(n * plan.channel_tiles),
                    static_cast<unsigned>(plan.chunks));
    adain_stats_channels_last_kernel<T><<<grid, kStatsThreads, 0, stream>>>(args);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    adain_stats_merge_kernel<T>
        <<<small_num_blocks(n * channels), kSmallThreads, 0, stream>>>(args, plan.chunks);
    return cudaGetLastError();
  });
}

}  // namespace kernels
}  // namespace alae_fast
