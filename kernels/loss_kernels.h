// Launchers for the fused GAN-loss CUDA kernels. Torch-free on purpose: the translation units
// in kernels/ must compile with plain nvcc on a machine whose torch has no CUDA headers.
//
// Contracts (checked by the Python and C++ callers, not here):
//   * every pointer is device memory on the current device, contiguous, of dtype `dtype`;
//   * `grad` points to one element (a 0-d tensor) for the mean losses, to `rows` elements for
//     r1_penalty_backward;
//   * `out` of a mean loss is one element of dtype `dtype`; r1_penalty_forward writes `rows`;
//   * `workspace` holds at least the bytes the matching *_workspace_bytes() returns;
//   * accumulation is in float for float32/float16/bfloat16 and in double for float64, and
//     the reduction order is fixed, so results are deterministic run to run.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace alae_fast {
namespace kernels {

enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Workspace of a mean over n elements (d_adv_loss, g_adv_loss, latent_l2 forward).
// It depends on n only (never on the device); 0 when one block does the whole reduction, in
// which case `workspace` may be nullptr.
size_t mean_reduction_workspace_bytes(DType dtype, int64_t n);
// Workspace of r1_penalty_forward over a [rows, row_len] matrix: one accumulator per (row, chunk
// of the row); 0 when a row fits one chunk or row_len == 0 (then `workspace` may be nullptr).
size_t r1_penalty_workspace_bytes(DType dtype, int64_t rows, int64_t row_len);

// out = mean(softplus(d_fake) + softplus(-d_real)); both of length n >= 1.
cudaError_t d_adv_loss_forward(DType dtype, const void* d_fake, const void* d_real, int64_t n,
                               void* out, void* workspace, cudaStream_t stream);
// grad_fake = grad / n * sigmoid(d_fake); grad_real = -grad / n * sigmoid(-d_real).
cudaError_t d_adv_loss_backward(DType dtype, const void* grad, const void* d_fake,
                                const void* d_real, int64_t n, void* grad_fake, void* grad_real,
                                cudaStream_t stream);

// out = mean(softplus(-d_fake)).
cudaError_t g_adv_loss_forward(DType dtype, const void* d_fake, int64_t n, void* out,
                               void* workspace, cudaStream_t stream);
// grad_fake = -grad / n * sigmoid(-d_fake).
cudaError_t g_adv_loss_backward(DType dtype, const void* grad, const void* d_fake, int64_t n,
                                void* grad_fake, cudaStream_t stream);

// out[r] = gamma / 2 * sum_j grads[r, j]^2 for a row-major [rows, row_len] matrix.
cudaError_t r1_penalty_forward(DType dtype, const void* grads, int64_t rows, int64_t row_len,
                               double gamma, void* out, void* workspace, cudaStream_t stream);
// grad_grads[r, j] = gamma * grad[r] * grads[r, j].
cudaError_t r1_penalty_backward(DType dtype, const void* grad, const void* grads, int64_t rows,
                                int64_t row_len, double gamma, void* grad_grads,
                                cudaStream_t stream);

// out = mean((a - b)^2) over n elements.
cudaError_t latent_l2_forward(DType dtype, const void* a, const void* b, int64_t n, void* out,
                              void* workspace, cudaStream_t stream);
// grad_a = 2 * grad / n * (a - b); grad_b = -grad_a.
cudaError_t latent_l2_backward(DType dtype, const void* grad, const void* a, const void* b,
                               int64_t n, void* grad_a, void* grad_b, cudaStream_t stream);

}  // namespace kernels
}  // namespace alae_fast
