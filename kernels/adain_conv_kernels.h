// Launchers for the CUDA kernels of adain_conv2d and adain_stats (alae_fast/ops/adain_conv2d.py
// has the math they reproduce). Torch-free on purpose, like layer_kernels.h, whose DType enum
// (from loss_kernels.h) they share.
//
// adain_conv2d: a 3x3 convolution (stride 1, zero padding 1) of the AdaIN output, which is
// formed while the input tile is loaded and never written:
//   pre[n,c,h,w] = x + noise_weight[c] * noise[n,0,h,w] + act_bias[c]   (absent terms are 0)
//   t = pre > 0 ? pre : alpha * pre;   a = scale[n,c] * (t - center[n,c]) + shift[n,c]
//   (center optional: 0 when nullptr)
//   A = a (H x W), or with `up` its nearest 2x up-sampling (2H x 2W): A[u, v] = a[u/2, v/2]
//   out[n,co,oh,ow] = bias[co] + sum_{ci,kh,kw} weight[co,ci,kh,kw] * A[n,ci,oh+kh-1,ow+kw-1]
// with A = 0 outside its bounds (the padding comes after the affine). Ho x Wo = A's size.
//
// Contracts (checked by the C++ callers in csrc/cuda/, not here):
//   * every pointer is device memory on the current device, of dtype `dtype` unless stated
//     otherwise; optional inputs are nullptr when absent. noise and noise_weight come together
//     (either may be nullptr when it has no elements, as an empty tensor's data pointer may be);
//   * x, out, grad_out and grad_x are dense 4-D tensors described by their element strides
//     (Strides4: contiguous, channels_last, or any other layout); scale, shift and center are
//     contiguous [N, C], weight contiguous [Cout, C, 3, 3], noise contiguous [N, 1, H, W],
//     noise_weight and act_bias [C], bias [Cout];
//   * "Acc" is float for float32/float16/bfloat16 and double for float64: every input is loaded
//     as Acc, all arithmetic is done in Acc, and outputs are rounded to their dtype once;
//   * `workspace` holds at least the bytes the matching *_workspace_bytes() returns (nullptr is
//     allowed when that is 0); its contents on entry do not matter;
//   * no atomics: every sum is taken in a fixed order (per-tile partials in the workspace, then
//     added in tile order), and every grid is a function of the problem size alone, so results
//     are bitwise deterministic from run to run;
//   * a launcher returns the cudaGetLastError() after its launches (cudaErrorInvalidValue for a
//     negative size, a grid that does not fit, a half-given noise pair or an unknown dtype).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "loss_kernels.h"

namespace alae_fast {
namespace kernels {

// Element strides of a 4-D tensor indexed [N, C, H, W].
struct Strides4 {
  int64_t n, c, h, w;
};

// ---------------------------------------------------------------------------------------------
// adain_conv2d
// ---------------------------------------------------------------------------------------------

// The forward's workspace: the weight re-laid out as [9][C][Cout] in Acc.
size_t adain_conv2d_forward_workspace_bytes(DType dtype, int64_t channels, int64_t out_channels);

// out [N, Cout, Ho, Wo] (dtype, strides out_strides) from x [N, C, H, W]; bias may be nullptr.
cudaError_t adain_conv2d_forward(DType dtype, const void* x, Strides4 x_strides,
                                 const void* scale, const void* shift, const void* center,
                                 const void* weight, const void* bias, const void* noise,
                                 const void* noise_weight,
                                 const void* act_bias, int64_t n, int64_t channels,
                                 int64_t height, int64_t width, int64_t out_channels,
                                 double alpha, bool up, void* out, Strides4 out_strides,
                                 void* workspace, cudaStream_t stream);

size_t adain_conv2d_backward_workspace_bytes(DType dtype, int64_t n, int64_t channels,
                                             int64_t height, int64_t width,
                                             int64_t out_channels, bool up);

// The seven gradients of the forward for grad_out [N, Cout, Ho, Wo] (strides
// grad_out_strides): with GA the transposed convolution of grad_out (A's size) and Ga = GA,
// or with `up` the sum of GA over each 2x2 block,
//   grad_x [N, C, H, W] (strides grad_x_strides) = Ga * scale * (pre > 0 ? 1 : alpha),
//   grad_scale, grad_shift [N, C] = sums of Ga * (t - center) and Ga over (h, w) (the caller
//     forms grad_center = -scale * grad_shift),
//   grad_weight [Cout, C, 3, 3] (contiguous), grad_bias [Cout] = sum of grad_out over (n, h, w),
//   grad_noise_weight [C] = sum of grad_x * noise over (n, h, w), written only when
//     noise_weight is given (the caller zero-fills it otherwise), grad_act_bias [C] = sum of
//     grad_x.
// Every output is written in full for any sizes (empty sums are 0).
cudaError_t adain_conv2d_backward(DType dtype, const void* grad_out, Strides4 grad_out_strides,
                                  const void* x, Strides4 x_strides, const void* scale,
                                  const void* shift, const void* center, const void* weight,
                                  const void* noise, const void* noise_weight,
                                  const void* act_bias, int64_t n,
                                  int64_t channels, int64_t height, int64_t width,
                                  int64_t out_channels, double alpha, bool up, void* grad_x,
                                  Strides4 grad_x_strides, void* grad_scale, void* grad_shift,
                                  void* grad_weight, void* grad_bias, void* grad_noise_weight,
                                  void* grad_act_bias, void* workspace, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// adain_stats: per (n, c), the mean and 1 / sqrt(var + eps) of t over (h, w) (population
// variance, merged with Chan et al.'s update, never E[t^2] - E[t]^2).
// ---------------------------------------------------------------------------------------------

// x is contiguous, or channels_last when `channels_last`.
size_t adain_stats_forward_workspace_bytes(DType dtype, int64_t n, int64_t channels,
                                           int64_t height, int64_t width, bool channels_last);

// stats [N, 2C] in Acc = (mean | rstd). Writes nothing when height * width == 0 (the caller
// fills NaN, the statistics of empty rows).
cudaError_t adain_stats_forward(DType dtype, const void* x, const void* noise,
                                const void* noise_weight, const void* act_bias, int64_t n,
                                int64_t channels, int64_t height, int64_t width,
                                bool channels_last, double alpha, double eps, void* stats,
                                void* workspace, cudaStream_t stream);

}  // namespace kernels
}  // namespace alae_fast
