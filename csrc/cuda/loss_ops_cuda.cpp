// CUDA implementations of the fused-loss ops of alae_fast._C (schemas in csrc/ops.cpp).
//
// Thin host glue: cheap argument checks, output and workspace allocation, and a call of the
// torch-free launchers of kernels/loss_kernels.h on the current stream. Nothing here
// synchronises with the device; the backward ops read their incoming gradient on the device.

#include <cstdint>
#include <tuple>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/cuda/cuda_glue.h"
#include "kernels/loss_kernels.h"

namespace alae_fast {
namespace {

using namespace cuda_glue;

// The op name of every error message ("alae_fast_C (CUDA): ..."), as the CPU implementations.
constexpr const char* kWho = "alae_fast_C";

// A CUDA, contiguous tensor of a supported dtype.
void check_input(const at::Tensor& t, const char* name) {
  check_contiguous_input(t, kWho, name);
}

// `t` passes check_input and matches `ref` in device and dtype.
void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref,
                const char* ref_name) {
  check_input(t, name);
  cuda_glue::check_like(t, kWho, name, ref, ref_name);
}

// The gradient of a scalar loss: one element, like `ref`.
void check_scalar_grad(const at::Tensor& grad, const at::Tensor& ref, const char* ref_name) {
  check_like(grad, "grad", ref, ref_name);
  ALAE_CHECK_CUDA(grad.numel() == 1, kWho,
                  "grad must have one element (the gradient of a scalar loss), got shape ",
                  grad.sizes());
}

// A 1-D vector of logits of length >= 1 that passes check_input.
void check_logits(const at::Tensor& t, const char* name) {
  check_input(t, name);
  ALAE_CHECK_CUDA(t.dim() == 1, kWho, name, " must be 1-D, got shape ", t.sizes());
  ALAE_CHECK_CUDA(t.numel() >= 1, kWho, name, " must not be empty");
}

// d_fake and d_real: logits of equal length, on one device, of one dtype.
void check_logit_pair(const at::Tensor& d_fake, const at::Tensor& d_real) {
  check_logits(d_fake, "d_fake");
  check_logits(d_real, "d_real");
  check_like(d_real, "d_real", d_fake, "d_fake");
  ALAE_CHECK_CUDA(d_fake.numel() == d_real.numel(), kWho,
                  "d_fake and d_real must have the same length, got ", d_fake.numel(), " and ",
                  d_real.numel());
}

// a and b: tensors of one shape with at least one element, on one device, of one dtype.
void check_latent_pair(const at::Tensor& a, const at::Tensor& b) {
  check_input(a, "a");
  check_like(b, "b", a, "a");
  ALAE_CHECK_CUDA(a.sizes() == b.sizes(), kWho, "a and b must have the same shape, got ", a.sizes(),
                  " and ", b.sizes());
  ALAE_CHECK_CUDA(a.numel() >= 1, kWho, "a and b must not be empty");
}

// grads: a [N, M] matrix (the per-sample input gradients, flattened) that passes check_input.
void check_r1_grads(const at::Tensor& grads) {
  check_input(grads, "grads");
  ALAE_CHECK_CUDA(grads.dim() == 2, kWho,
                  "grads must be 2-D [N, M] (flattened per sample), got shape ", grads.sizes());
}

// A mean loss over the elements of `like` (named name): a 0-d output and the reduction's
// workspace; launch(dtype, n, out, workspace) calls the launcher.
template <typename Launch>
at::Tensor mean_loss(const at::Tensor& like, const char* name, const Launch& launch) {
  const c10::cuda::CUDAGuard device_guard(like.device());
  const DType dtype = kernel_dtype(like, kWho, name);
  const int64_t n = like.numel();

  at::Tensor out = at::empty({}, like.options());
  at::Tensor workspace;
  void* ws = workspace_ptr(kernels::mean_reduction_workspace_bytes(dtype, n), like, workspace);
  C10_CUDA_CHECK(launch(dtype, n, out.mutable_data_ptr(), ws));
  return out;
}

// ---------------------------------------------------------------------------------------------
// d_adv_loss = mean(softplus(d_fake) + softplus(-d_real))
// ---------------------------------------------------------------------------------------------

at::Tensor d_adv_loss_fwd_cuda(const at::Tensor& d_fake, const at::Tensor& d_real) {
  check_logit_pair(d_fake, d_real);
  return mean_loss(d_fake, "d_fake", [&](DType dtype, int64_t n, void* out, void* ws) {
    return kernels::d_adv_loss_forward(dtype, d_fake.const_data_ptr(), d_real.const_data_ptr(),
                                       n, out, ws, current_stream());
  });
}

std::tuple<at::Tensor, at::Tensor> d_adv_loss_bwd_cuda(const at::Tensor& grad,
                                                       const at::Tensor& d_fake,
                                                       const at::Tensor& d_real) {
  check_logit_pair(d_fake, d_real);
  check_scalar_grad(grad, d_fake, "d_fake");
  const c10::cuda::CUDAGuard device_guard(d_fake.device());
  const DType dtype = kernel_dtype(d_fake, kWho, "d_fake");
  const int64_t n = d_fake.numel();

  at::Tensor grad_fake = at::empty(d_fake.sizes(), d_fake.options());
  at::Tensor grad_real = at::empty(d_real.sizes(), d_real.options());
  C10_CUDA_CHECK(kernels::d_adv_loss_backward(
      dtype, grad.const_data_ptr(), d_fake.const_data_ptr(), d_real.const_data_ptr(), n,
      grad_fake.mutable_data_ptr(), grad_real.mutable_data_ptr(), current_stream()));
  return {grad_fake, grad_real};
}

// ---------------------------------------------------------------------------------------------
// g_adv_loss = mean(softplus(-d_fake))
// ---------------------------------------------------------------------------------------------

at::Tensor g_adv_loss_fwd_cuda(const at::Tensor& d_fake) {
  check_logits(d_fake, "d_fake");
  return mean_loss(d_fake, "d_fake", [&](DType dtype, int64_t n, void* out, void* ws) {
    return kernels::g_adv_loss_forward(dtype, d_fake.const_data_ptr(), n, out, ws,
                                       current_stream());
  });
}

at::Tensor g_adv_loss_bwd_cuda(const at::Tensor& grad, const at::Tensor& d_fake) {
  check_logits(d_fake, "d_fake");
  check_scalar_grad(grad, d_fake, "d_fake");
  const c10::cuda::CUDAGuard device_guard(d_fake.device());
  const DType dtype = kernel_dtype(d_fake, kWho, "d_fake");
  const int64_t n = d_fake.numel();

  at::Tensor grad_fake = at::empty(d_fake.sizes(), d_fake.options());
  C10_CUDA_CHECK(kernels::g_adv_loss_backward(dtype, grad.const_data_ptr(),
                                              d_fake.const_data_ptr(), n,
                                              grad_fake.mutable_data_ptr(), current_stream()));
  return grad_fake;
}

// ---------------------------------------------------------------------------------------------
// r1_penalty[r] = gamma / 2 * sum_j grads[r, j]^2
// ---------------------------------------------------------------------------------------------

at::Tensor r1_penalty_fwd_cuda(const at::Tensor& grads, double gamma) {
  check_r1_grads(grads);
  const c10::cuda::CUDAGuard device_guard(grads.device());
  const DType dtype = kernel_dtype(grads, kWho, "grads");
  const int64_t rows = grads.size(0);
  const int64_t row_len = grads.size(1);

  at::Tensor out = at::empty({rows}, grads.options());
  if (rows == 0) return out;
  at::Tensor workspace;
  void* ws = workspace_ptr(kernels::r1_penalty_workspace_bytes(dtype, rows, row_len), grads,
                           workspace);
  // row_len == 0 is fine: the launcher writes zeros.
  C10_CUDA_CHECK(kernels::r1_penalty_forward(dtype, grads.const_data_ptr(), rows, row_len, gamma,
                                             out.mutable_data_ptr(), ws, current_stream()));
  return out;
}

at::Tensor r1_penalty_bwd_cuda(const at::Tensor& grad, const at::Tensor& grads, double gamma) {
  check_r1_grads(grads);
  check_like(grad, "grad", grads, "grads");
  const int64_t rows = grads.size(0);
  const int64_t row_len = grads.size(1);
  ALAE_CHECK_CUDA(grad.dim() == 1 && grad.size(0) == rows, kWho, "grad must have shape [", rows,
                  "] (one value per row of grads), got ", grad.sizes());
  const c10::cuda::CUDAGuard device_guard(grads.device());
  const DType dtype = kernel_dtype(grads, kWho, "grads");

  at::Tensor grad_grads = at::empty(grads.sizes(), grads.options());
  if (grad_grads.numel() == 0) return grad_grads;
  C10_CUDA_CHECK(kernels::r1_penalty_backward(dtype, grad.const_data_ptr(), grads.const_data_ptr(),
                                              rows, row_len, gamma, grad_grads.mutable_data_ptr(),
                                              current_stream()));
  return grad_grads;
}

// ---------------------------------------------------------------------------------------------
// latent_l2 = mean((a - b)^2)
// ---------------------------------------------------------------------------------------------

at::Tensor latent_l2_fwd_cuda(const at::Tensor& a, const at::Tensor& b) {
  check_latent_pair(a, b);
  return mean_loss(a, "a", [&](DType dtype, int64_t n, void* out, void* ws) {
    return kernels::latent_l2_forward(dtype, a.const_data_ptr(), b.const_data_ptr(), n, out,
                                      ws, current_stream());
  });
}

std::tuple<at::Tensor, at::Tensor> latent_l2_bwd_cuda(const at::Tensor& grad, const at::Tensor& a,
                                                      const at::Tensor& b) {
  check_latent_pair(a, b);
  check_scalar_grad(grad, a, "a");
  const c10::cuda::CUDAGuard device_guard(a.device());
  const DType dtype = kernel_dtype(a, kWho, "a");
  const int64_t n = a.numel();

  at::Tensor grad_a = at::empty(a.sizes(), a.options());
  at::Tensor grad_b = at::empty(b.sizes(), b.options());
  C10_CUDA_CHECK(kernels::latent_l2_backward(
      dtype, grad.const_data_ptr(), a.const_data_ptr(), b.const_data_ptr(), n,
      grad_a.mutable_data_ptr(), grad_b.mutable_data_ptr(), current_stream()));
  return {grad_a, grad_b};
}

}  // namespace
}  // namespace alae_fast

TORCH_LIBRARY_IMPL(alae_fast_C, CUDA, m) {
  m.impl("d_adv_loss_fwd", &alae_fast::d_adv_loss_fwd_cuda);
  m.impl("d_adv_loss_bwd", &alae_fast::d_adv_loss_bwd_cuda);
  m.impl("g_adv_loss_fwd", &alae_fast::g_adv_loss_fwd_cuda);
  m.impl("g_adv_loss_bwd", &alae_fast::g_adv_loss_bwd_cuda);
  m.impl("r1_penalty_fwd", &alae_fast::r1_penalty_fwd_cuda);
  m.impl("r1_penalty_bwd", &alae_fast::r1_penalty_bwd_cuda);
  m.impl("latent_l2_fwd", &alae_fast::latent_l2_fwd_cuda);
  m.impl("latent_l2_bwd", &alae_fast::latent_l2_bwd_cuda);
}
