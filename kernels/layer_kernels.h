// Launchers for the CUDA kernels of the StyleALAE layer ops (bias_act, blur, encode_norm, adain,
// lreq_adam_step_). Torch-free on purpose, like loss_kernels.h, whose DType enum they share.
//
// Contracts (checked by the C++ callers in csrc/cuda/, not here):
//   * every pointer is device memory on the current device, of dtype `dtype` unless stated
//     otherwise; optional inputs are nullptr when absent;
//   * tensors are dense: "contiguous" is row-major; a channels_last 4-D tensor is passed with
//     `channels_last` set (or, for bias_act, as [outer = N * H * W, C, inner = 1]);
//   * "Acc" is float for float32/float16/bfloat16 and double for float64: all arithmetic is done
//     in Acc and stats outputs are stored in Acc;
//   * `workspace` holds at least the bytes the matching *_workspace_bytes() returns (nullptr is
//     allowed when that is 0);
//   * reductions never use atomics and every grid is a function of the problem size alone, so
//     results are bitwise deterministic from run to run;
//   * a launcher returns the cudaGetLastError() after its launches (cudaErrorInvalidValue for a
//     negative size or an unknown dtype).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "loss_kernels.h"

namespace alae_fast {
namespace kernels {

// ---------------------------------------------------------------------------------------------
// bias_act: y = lrelu(x + b[c]) * gain, x seen in memory as [outer, channels, inner]
// (contiguous [N, C, *rest]: outer = N, inner = prod(rest); channels_last: outer = N*H*W,
// inner = 1). lrelu(t) = t > 0 ? t : alpha * t.
// ---------------------------------------------------------------------------------------------

// b may be nullptr (no bias). y has x's shape and layout.
cudaError_t bias_act_forward(DType dtype, const void* x, const void* b, int64_t outer,
                             int64_t channels, int64_t inner, double alpha, double gain, void* y,
                             cudaStream_t stream);

size_t bias_act_backward_workspace_bytes(DType dtype, int64_t outer, int64_t channels,
                                         int64_t inner);
// grad_x = grad * (y > 0 ? gain : alpha * gain); grad_b[c] (`channels` elements of dtype) =
// sum of grad_x over every position of channel c.
cudaError_t bias_act_backward(DType dtype, const void* grad, const void* y, int64_t outer,
                              int64_t channels, int64_t inner, double alpha, double gain,
                              void* grad_x, void* grad_b, void* workspace, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// blur: depthwise 3x3 [1, 2, 1] x [1, 2, 1] / 16 filter with zero padding 1, on [N, C, H, W]
// (contiguous, or channels_last when `channels_last`); y has x's shape and layout.
// ---------------------------------------------------------------------------------------------

cudaError_t blur_forward(DType dtype, const void* x, int64_t n, int64_t channels, int64_t height,
                         int64_t width, bool channels_last, void* y, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// encode_norm: per row (n, c) of a contiguous [N, C, M = H * W] x: a = lrelu(x + bias[c]),
// mu = mean(a), var = mean((a - mu)^2), std = sqrt(var), rstd = 1 / sqrt(var + eps).
// ---------------------------------------------------------------------------------------------

// y = (a - mu) * rstd [N, C, M]; style [N, 2C] = (mu | std) in dtype; stats [N, 3C] in Acc =
// (mu | std | rstd).
cudaError_t encode_norm_forward(DType dtype, const void* x, const void* bias, int64_t n,
                                int64_t channels, int64_t row_len, double alpha, double eps,
                                void* y, void* style, void* stats, cudaStream_t stream);

size_t encode_norm_backward_workspace_bytes(DType dtype, int64_t n, int64_t channels);
// grad_style [N, 2C] = (g_mu | g_std); stats as written by the forward (Acc). Writes grad_x
// [N, C, M] and grad_bias [C].
cudaError_t encode_norm_backward(DType dtype, const void* grad_y, const void* grad_style,
                                 const void* x, const void* bias, const void* stats, int64_t n,
                                 int64_t channels, int64_t row_len, double alpha, double eps,
                                 void* grad_x, void* grad_bias, void* workspace,
                                 cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// adain: per row (n, c): t = x + noise_weight[c] * noise[n, h, w] + bias[c] (noise and
// noise_weight both given or both nullptr; bias may be nullptr), a = lrelu(t), xn = (a - mu) *
// rstd, y = xn * (1 + style[n, c]) + style[n, C + c].
// ---------------------------------------------------------------------------------------------

// noise is [N, M] (one plane per sample); stats [N, 2C] in Acc = (mu | rstd).
cudaError_t adain_forward(DType dtype, const void* x, const void* style, const void* noise,
                          const void* noise_weight, const void* bias, int64_t n, int64_t channels,
                          int64_t row_len, double alpha, double eps, void* y, void* stats,
                          cudaStream_t stream);

size_t adain_backward_workspace_bytes(DType dtype, int64_t n, int64_t channels, bool has_noise);
// Writes grad_x [N, C, M], grad_style [N, 2C] = (sum g * xn | sum g), grad_bias [C] and, when
// noise is given, grad_noise_weight [C] (left untouched otherwise: the caller zero-fills it).
cudaError_t adain_backward(DType dtype, const void* grad_y, const void* x, const void* style,
                           const void* noise, const void* noise_weight, const void* bias,
                           const void* stats, int64_t n, int64_t channels, int64_t row_len,
                           double alpha, double eps, void* grad_x, void* grad_style,
                           void* grad_noise_weight, void* grad_bias, void* workspace,
                           cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// lreq_adam_step_: in-place Adam step with beta1 = 0 over many tensors (multi-tensor apply).
// ---------------------------------------------------------------------------------------------

// How the element-wise sequence is rounded (C is float, or double for float64 tensors; every
// op's result is rounded to the tensor dtype, which matters for float16/bfloat16):
//   kTorchCuda: what PyTorch's CUDA kernels compute. Scalars are rounded to C; add(alpha),
//     addcmul_ and addcdiv_ evaluate `a + alpha * b`, `a + value * (t1 * t2)` and
//     `a + value * (t1 / t2)` and nvcc contracts the final multiply-add into one fma:
//       g = fma(wd, p, grad); v = v * beta2; v = fma(1 - beta2, g * g, v);
//       denom = sqrt(v) + eps; p = fma(-step, g / denom, p).
//   kSeparatelyRounded: every multiply, add, divide and sqrt rounded on its own (no fma), in
//     the order (value * t1) * t2 and (value * t1) / t2, with the scalars rounded to the tensor
//     dtype first (the sequence written in the kernel spec).
enum class AdamRounding : int { kTorchCuda = 0, kSeparatelyRounded = 1 };

// Arrays of `num_tensors` entries in host memory; params[i], grads[i] and exp_avg_sqs[i] are
// contiguous device tensors of numels[i] elements, all of dtype `dtype`, updated in place
// (params and exp_avg_sqs). step_sizes[i] > 0 is the step of tensor i (p -= step * ...).
// weight_decay == 0 skips the decay term, as the reference does.
cudaError_t lreq_adam_step(DType dtype, int64_t num_tensors, void* const* params,
                           const void* const* grads, void* const* exp_avg_sqs,
                           const int64_t* numels, const double* step_sizes, double beta2,
                           double eps, double weight_decay, AdamRounding rounding,
                           cudaStream_t stream);

}  // namespace kernels
}  // namespace alae_fast
