// CUDA implementations of the StyleALAE layer ops of alae_fast._C (schemas in csrc/ops.cpp):
// bias_act, blur, encode_norm, adain, adain_conv2d, adain_stats and lreq_adam_step_
// (linear_act has no CUDA kernel; its GPU path is Triton).
//
// Thin host glue: argument checks naming the argument, output and workspace allocation, and a
// call of the torch-free launchers of kernels/layer_kernels.h and kernels/adain_conv_kernels.h
// on the current stream. Nothing here synchronises with the device.

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/cuda/cuda_glue.h"
#include "kernels/adain_conv_kernels.h"
#include "kernels/layer_kernels.h"

namespace alae_fast {
namespace {

using namespace cuda_glue;

// lreq_adam_step_ reproduces what PyTorch's own CUDA kernels compute for the reference
// sequence (scalars in float, fused multiply-adds), so that it matches the reference optimizer
// bit for bit on the same GPU. kernels::AdamRounding::kSeparatelyRounded is the alternative
// without fma (see layer_kernels.h).
constexpr kernels::AdamRounding kAdamRounding = kernels::AdamRounding::kTorchCuda;

// Memory layout of a dense tensor: row-major, or 4-D channels_last that is not also row-major
// (when both hold, the two orders put every element at the same place).
enum class Layout { kContiguous, kChannelsLast };

Layout dense_layout(const at::Tensor& t, const char* op, const char* name) {
  if (t.is_contiguous()) return Layout::kContiguous;
  ALAE_CHECK_CUDA(t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast), op,
                  name, " must be contiguous or 4-D channels_last, got shape ", t.sizes(),
                  " and strides ", t.strides());
  return Layout::kChannelsLast;
}

// [N, C, H, W] sizes of a 4-D tensor.
struct Nchw {
  int64_t n, c, h, w;
};

Nchw nchw_sizes(const at::Tensor& x, const char* op, const char* name) {
  ALAE_CHECK_CUDA(x.dim() == 4, op, name, " must be 4-D [N, C, H, W], got shape ",
                  x.sizes());
  return {x.size(0), x.size(1), x.size(2), x.size(3)};
}

// ---------------------------------------------------------------------------------------------
// bias_act
// ---------------------------------------------------------------------------------------------

// x in memory as [outer, C, inner]: contiguous [N, C, *rest] has outer = N, inner = prod(rest);
// channels_last [N, C, H, W] has outer = N * H * W, inner = 1.
struct ChannelLayout {
  int64_t outer, channels, inner;
};

ChannelLayout channel_layout(const at::Tensor& x, Layout layout) {
  const int64_t channels = x.size(1);
  int64_t rest = 1;
  for (int64_t d = 2; d < x.dim(); ++d) rest *= x.size(d);
  if (layout == Layout::kChannelsLast) return {x.size(0) * rest, channels, 1};
  return {x.size(0), channels, rest};
}

void check_bias_act_input(const at::Tensor& t, const char* op, const char* name) {
  check_float_cuda(t, op, name);
  ALAE_CHECK_CUDA(t.dim() >= 2, op, name, " must be at least 2-D [N, C, ...], got shape ",
                  t.sizes());
}

at::Tensor bias_act_fwd_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b,
                             double alpha, double gain) {
  constexpr const char* op = "bias_act_fwd";
  check_bias_act_input(x, op, "x");
  const Layout layout = dense_layout(x, op, "x");
  const ChannelLayout shape = channel_layout(x, layout);
  const void* b_ptr = optional_input(b, op, "b", {shape.channels}, x, "x");
  const c10::cuda::CUDAGuard device_guard(x.device());

  at::Tensor y = at::empty_like(x);  // same layout as x (x is dense)
  if (x.numel() == 0) return y;
  C10_CUDA_CHECK(kernels::bias_act_forward(kernel_dtype(x, op, "x"), x.const_data_ptr(), b_ptr,
                                           shape.outer, shape.channels, shape.inner, alpha, gain,
                                           y.mutable_data_ptr(), current_stream()));
  return y;
}

std::tuple<at::Tensor, at::Tensor> bias_act_bwd_cuda(const at::Tensor& grad, const at::Tensor& y,
                                                     double alpha, double gain) {
  constexpr const char* op = "bias_act_bwd";
  check_bias_act_input(y, op, "y");
  check_float_cuda(grad, op, "grad");
  check_like(grad, op, "grad", y, "y");
  check_sizes(grad, op, "grad", y.sizes());
  const Layout layout = dense_layout(y, op, "y");
  ALAE_CHECK_CUDA(dense_layout(grad, op, "grad") == layout, op,
                  "grad must have the memory format of y, got strides ", grad.strides(),
                  " and ", y.strides());
  const ChannelLayout shape = channel_layout(y, layout);
  const DType dtype = kernel_dtype(y, op, "y");
  const c10::cuda::CUDAGuard device_guard(y.device());

  at::Tensor grad_x = at::empty_like(y);
  at::Tensor grad_b = at::empty({shape.channels}, y.options());
  if (shape.channels == 0) return {grad_x, grad_b};
  at::Tensor workspace;
  void* ws = workspace_ptr(
      kernels::bias_act_backward_workspace_bytes(dtype, shape.outer, shape.channels, shape.inner),
      y, workspace);
  C10_CUDA_CHECK(kernels::bias_act_backward(
      dtype, grad.const_data_ptr(), y.const_data_ptr(), shape.outer, shape.channels, shape.inner,
      alpha, gain, grad_x.mutable_data_ptr(), grad_b.mutable_data_ptr(), ws, current_stream()));
  return {grad_x, grad_b};
}

// ---------------------------------------------------------------------------------------------
// blur
// ---------------------------------------------------------------------------------------------

at::Tensor blur_fwd_cuda(const at::Tensor& x) {
  constexpr const char* op = "blur_fwd";
  check_float_cuda(x, op, "x");
  const Nchw s = nchw_sizes(x, op, "x");
  const Layout layout = dense_layout(x, op, "x");
  const c10::cuda::CUDAGuard device_guard(x.device());

  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  C10_CUDA_CHECK(kernels::blur_forward(kernel_dtype(x, op, "x"), x.const_data_ptr(), s.n, s.c,
                                       s.h, s.w, layout == Layout::kChannelsLast,
                                       y.mutable_data_ptr(), current_stream()));
  return y;
}

// ---------------------------------------------------------------------------------------------
// encode_norm
// ---------------------------------------------------------------------------------------------

// Statistics of empty rows are NaN, like the mean of an empty tensor.
void fill_nan(at::Tensor& t) { t.fill_(std::numeric_limits<double>::quiet_NaN()); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> encode_norm_fwd_cuda(const at::Tensor& x,
                                                                    const at::Tensor& bias,
                                                                    double alpha, double eps) {
  constexpr const char* op = "encode_norm_fwd";
  check_contiguous_input(x, op, "x");
  const Nchw s = nchw_sizes(x, op, "x");
  check_contiguous_like(bias, op, "bias", {s.c}, x, "x");
  const c10::cuda::CUDAGuard device_guard(x.device());

  at::Tensor y = at::empty(x.sizes(), x.options());
  at::Tensor style = at::empty({s.n, 2 * s.c}, x.options());
  at::Tensor stats = at::empty({s.n, 3 * s.c}, x.options().dtype(acc_scalar_type(x)));
  const int64_t row_len = s.h * s.w;
  if (s.n == 0 || s.c == 0) return {y, style, stats};
  if (row_len == 0) {
    fill_nan(style);
    fill_nan(stats);
    return {y, style, stats};
  }
  C10_CUDA_CHECK(kernels::encode_norm_forward(
      kernel_dtype(x, op, "x"), x.const_data_ptr(), bias.const_data_ptr(), s.n, s.c, row_len,
      alpha, eps, y.mutable_data_ptr(), style.mutable_data_ptr(), stats.mutable_data_ptr(),
      current_stream()));
  return {y, style, stats};
}

// stats: contiguous [N, k * C] of the accumulation dtype of x, on x's device.
void check_stats(const at::Tensor& stats, const char* op, const at::Tensor& x, int64_t n,
                 int64_t cols) {
  check_contiguous_input(stats, op, "stats");
  check_like(stats, op, "stats", x, "x", false);
  ALAE_CHECK_CUDA(stats.scalar_type() == acc_scalar_type(x), op, "stats must have dtype ",
                  acc_scalar_type(x), " (the accumulation dtype of x), got ", stats.scalar_type());
  check_sizes(stats, op, "stats", {n, cols});
}

std::tuple<at::Tensor, at::Tensor> encode_norm_bwd_cuda(const at::Tensor& grad_y,
                                                        const at::Tensor& grad_style,
                                                        const at::Tensor& x,
                                                        const at::Tensor& bias,
                                                        const at::Tensor& stats, double alpha,
                                                        double eps) {
  constexpr const char* op = "encode_norm_bwd";
  check_contiguous_input(x, op, "x");
  const Nchw s = nchw_sizes(x, op, "x");
  check_contiguous_like(grad_y, op, "grad_y", x.sizes(), x, "x");
  check_contiguous_like(grad_style, op, "grad_style", {s.n, 2 * s.c}, x, "x");
  check_contiguous_like(bias, op, "bias", {s.c}, x, "x");
  check_stats(stats, op, x, s.n, 3 * s.c);
  const DType dtype = kernel_dtype(x, op, "x");
  const c10::cuda::CUDAGuard device_guard(x.device());

  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_bias = at::empty({s.c}, x.options());
  if (s.c == 0) return {grad_x, grad_bias};
  at::Tensor workspace;
  void* ws = workspace_ptr(kernels::encode_norm_backward_workspace_bytes(dtype, s.n, s.c), x,
                           workspace);
  C10_CUDA_CHECK(kernels::encode_norm_backward(
      dtype, grad_y.const_data_ptr(), grad_style.const_data_ptr(), x.const_data_ptr(),
      bias.const_data_ptr(), stats.const_data_ptr(), s.n, s.c, s.h * s.w, alpha, eps,
      grad_x.mutable_data_ptr(), grad_bias.mutable_data_ptr(), ws, current_stream()));
  return {grad_x, grad_bias};
}

// ---------------------------------------------------------------------------------------------
// adain
// ---------------------------------------------------------------------------------------------

// Checks the optional adain inputs against x; returns their data pointers (nullptr if absent).
struct AdainOptionals {
  const void* noise;
  const void* noise_weight;
  const void* bias;
};

AdainOptionals adain_optionals(const std::optional<at::Tensor>& noise,
                               const std::optional<at::Tensor>& noise_weight,
                               const std::optional<at::Tensor>& bias, const at::Tensor& x,
                               const Nchw& s, const char* op, const char* bias_name = "bias") {
  ALAE_CHECK_CUDA(has_tensor(noise) == has_tensor(noise_weight), op,
                  "noise and noise_weight must be given together (got ",
                  has_tensor(noise) ? "noise" : "noise_weight", " only)");
  return {optional_input(noise, op, "noise", {s.n, 1, s.h, s.w}, x, "x"),
          optional_input(noise_weight, op, "noise_weight", {s.c}, x, "x"),
          optional_input(bias, op, bias_name, {s.c}, x, "x")};
}

std::tuple<at::Tensor, at::Tensor> adain_fwd_cuda(const at::Tensor& x, const at::Tensor& style,
                                                  const std::optional<at::Tensor>& noise,
                                                  const std::optional<at::Tensor>& noise_weight,
                                                  const std::optional<at::Tensor>& bias,
                                                  double alpha, double eps) {
  constexpr const char* op = "adain_fwd";
  check_contiguous_input(x, op, "x");
  const Nchw s = nchw_sizes(x, op, "x");
  check_contiguous_like(style, op, "style", {s.n, 2 * s.c}, x, "x");
  const AdainOptionals opt = adain_optionals(noise, noise_weight, bias, x, s, op);
  const c10::cuda::CUDAGuard device_guard(x.device());

  at::Tensor y = at::empty(x.sizes(), x.options());
  at::Tensor stats = at::empty({s.n, 2 * s.c}, x.options().dtype(acc_scalar_type(x)));
  const int64_t row_len = s.h * s.w;
  if (s.n == 0 || s.c == 0) return {y, stats};
  if (row_len == 0) {
    fill_nan(stats);
    return {y, stats};
  }
  C10_CUDA_CHECK(kernels::adain_forward(kernel_dtype(x, op, "x"), x.const_data_ptr(),
                                        style.const_data_ptr(), opt.noise, opt.noise_weight,
                                        opt.bias, s.n, s.c, row_len, alpha, eps,
                                        y.mutable_data_ptr(), stats.mutable_data_ptr(),
                                        current_stream()));
  return {y, stats};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> adain_bwd_cuda(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& style,
    const std::optional<at::Tensor>& noise, const std::optional<at::Tensor>& noise_weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& stats, double alpha, double eps) {
  constexpr const char* op = "adain_bwd";
  check_contiguous_input(x, op, "x");
  const Nchw s = nchw_sizes(x, op, "x");
  check_contiguous_like(grad_y, op, "grad_y", x.sizes(), x, "x");
  check_contiguous_like(style, op, "style", {s.n, 2 * s.c}, x, "x");
  const AdainOptionals opt = adain_optionals(noise, noise_weight, bias, x, s, op);
  check_stats(stats, op, x, s.n, 2 * s.c);
  const DType dtype = kernel_dtype(x, op, "x");
  const bool has_noise = opt.noise != nullptr;
  const c10::cuda::CUDAGuard device_guard(x.device());

  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_style = at::empty({s.n, 2 * s.c}, x.options());
  // Without noise its weight gets no gradient: zeros, as the spec asks.
  at::Tensor grad_noise_weight =
      has_noise ? at::empty({s.c}, x.options()) : at::zeros({s.c}, x.options());
  at::Tensor grad_bias = at::empty({s.c}, x.options());
  if (s.c == 0) return {grad_x, grad_style, grad_noise_weight, grad_bias};
  at::Tensor workspace;
  void* ws = workspace_ptr(kernels::adain_backward_workspace_bytes(dtype, s.n, s.c, has_noise),
                           x, workspace);
  C10_CUDA_CHECK(kernels::adain_backward(
      dtype, grad_y.const_data_ptr(), x.const_data_ptr(), style.const_data_ptr(), opt.noise,
      opt.noise_weight, opt.bias, stats.const_data_ptr(), s.n, s.c, s.h * s.w, alpha, eps,
      grad_x.mutable_data_ptr(), grad_style.mutable_data_ptr(),
      has_noise ? grad_noise_weight.mutable_data_ptr() : nullptr, grad_bias.mutable_data_ptr(),
      ws, current_stream()));
  return {grad_x, grad_style, grad_noise_weight, grad_bias};
}

// ---------------------------------------------------------------------------------------------
// adain_conv2d and adain_stats
// ---------------------------------------------------------------------------------------------

kernels::Strides4 strides4(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

at::MemoryFormat memory_format(Layout layout) {
  return layout == Layout::kChannelsLast ? at::MemoryFormat::ChannelsLast
                                         : at::MemoryFormat::Contiguous;
}

// The checked inputs of adain_conv2d's forward and backward.
struct AdainConvInputs {
  Nchw s;
  int64_t out_channels;
  int64_t out_h;
  int64_t out_w;
  Layout layout;  // of x (and of out and grad_x)
  AdainOptionals opt;  // noise, noise_weight, act_bias
};

// x: [N, C, H, W], contiguous or channels_last; scale, shift (center): contiguous [N, C]; weight:
// contiguous [Cout, C, 3, 3]; noise [N, 1, H, W] and noise_weight [C] together; act_bias [C].
// All on x's device with x's dtype.
AdainConvInputs check_adain_conv(const char* op, const at::Tensor& x, const at::Tensor& scale,
                                 const at::Tensor& shift,
                                 const std::optional<at::Tensor>& center,
                                 const at::Tensor& weight,
                                 const std::optional<at::Tensor>& noise,
                                 const std::optional<at::Tensor>& noise_weight,
                                 const std::optional<at::Tensor>& act_bias, bool up) {
  check_float_cuda(x, op, "x");
  AdainConvInputs in{};
  in.s = nchw_sizes(x, op, "x");
  in.layout = dense_layout(x, op, "x");
  check_contiguous_like(scale, op, "scale", {in.s.n, in.s.c}, x, "x");
  check_contiguous_like(shift, op, "shift", {in.s.n, in.s.c}, x, "x");
  if (center.has_value()) {
    check_contiguous_like(*center, op, "center", {in.s.n, in.s.c}, x, "x");
  }
  check_contiguous_input(weight, op, "weight");
  check_like(weight, op, "weight", x, "x");
  ALAE_CHECK_CUDA(weight.dim() == 4 && weight.size(1) == in.s.c && weight.size(2) == 3 &&
                      weight.size(3) == 3,
                  op, "weight must have shape [Cout, ", in.s.c, ", 3, 3], got ",
                  weight.sizes());
  in.out_channels = weight.size(0);
  in.out_h = up ? 2 * in.s.h : in.s.h;
  in.out_w = up ? 2 * in.s.w : in.s.w;
  in.opt = adain_optionals(noise, noise_weight, act_bias, x, in.s, op, "act_bias");
  return in;
}

at::Tensor adain_conv2d_fwd_cuda(const at::Tensor& x, const at::Tensor& scale,
                                 const at::Tensor& shift,
                                 const std::optional<at::Tensor>& center,
                                 const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias,
                                 const std::optional<at::Tensor>& noise,
                                 const std::optional<at::Tensor>& noise_weight,
                                 const std::optional<at::Tensor>& act_bias, double alpha,
                                 bool up) {
  constexpr const char* op = "adain_conv2d_fwd";
  const AdainConvInputs in =
      check_adain_conv(op, x, scale, shift, center, weight, noise, noise_weight, act_bias, up);
  const void* center_ptr = center.has_value() ? center->const_data_ptr() : nullptr;
  const void* bias_ptr = optional_input(bias, op, "bias", {in.out_channels}, x, "x");
  const DType dtype = kernel_dtype(x, op, "x");
  const c10::cuda::CUDAGuard device_guard(x.device());

  // out has x's memory format.
  at::Tensor out = at::empty({in.s.n, in.out_channels, in.out_h, in.out_w},
                             x.options().memory_format(memory_format(in.layout)));
  if (out.numel() == 0) return out;
  at::Tensor workspace;
  void* ws = workspace_ptr(
      kernels::adain_conv2d_forward_workspace_bytes(dtype, in.s.c, in.out_channels), x,
      workspace);
  C10_CUDA_CHECK(kernels::adain_conv2d_forward(
      dtype, x.const_data_ptr(), strides4(x), scale.const_data_ptr(), shift.const_data_ptr(),
      center_ptr, weight.const_data_ptr(), bias_ptr, in.opt.noise, in.opt.noise_weight,
      in.opt.bias, in.s.n,
      in.s.c, in.s.h, in.s.w, in.out_channels, alpha, up, out.mutable_data_ptr(), strides4(out),
      ws, current_stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
adain_conv2d_bwd_cuda(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& scale,
                      const at::Tensor& shift, const std::optional<at::Tensor>& center,
                      const at::Tensor& weight, const std::optional<at::Tensor>& noise,
                      const std::optional<at::Tensor>& noise_weight,
                      const std::optional<at::Tensor>& act_bias, double alpha, bool up) {
  constexpr const char* op = "adain_conv2d_bwd";
  const AdainConvInputs in =
      check_adain_conv(op, x, scale, shift, center, weight, noise, noise_weight, act_bias, up);
  const void* center_ptr = center.has_value() ? center->const_data_ptr() : nullptr;
  check_float_cuda(grad_out, op, "grad_out");
  check_like(grad_out, op, "grad_out", x, "x");
  check_sizes(grad_out, op, "grad_out", {in.s.n, in.out_channels, in.out_h, in.out_w});
  // Either layout, independently of x's (the kernels read it through its strides).
  dense_layout(grad_out, op, "grad_out");
  const DType dtype = kernel_dtype(x, op, "x");
  const bool has_noise = has_tensor(noise_weight);
  const c10::cuda::CUDAGuard device_guard(x.device());

  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(memory_format(in.layout)));
  at::Tensor grad_scale = at::empty({in.s.n, in.s.c}, scale.options());
  at::Tensor grad_shift = at::empty({in.s.n, in.s.c}, shift.options());
  at::Tensor grad_weight = at::empty(weight.sizes(), weight.options());
  at::Tensor grad_bias = at::empty({in.out_channels}, x.options());
  // Without noise its weight gets no gradient: zeros, as the spec asks.
  at::Tensor grad_noise_weight =
      has_noise ? at::empty({in.s.c}, x.options()) : at::zeros({in.s.c}, x.options());
  at::Tensor grad_act_bias = at::empty({in.s.c}, x.options());
  // Every output is written by the launcher for any sizes (empty sums are zeros).
  at::Tensor workspace;
  void* ws = workspace_ptr(
      kernels::adain_conv2d_backward_workspace_bytes(dtype, in.s.n, in.s.c, in.s.h, in.s.w,
                                                     in.out_channels, up),
      x, workspace);
  C10_CUDA_CHECK(kernels::adain_conv2d_backward(
      dtype, grad_out.const_data_ptr(), strides4(grad_out), x.const_data_ptr(), strides4(x),
      scale.const_data_ptr(), shift.const_data_ptr(), center_ptr, weight.const_data_ptr(),
      in.opt.noise,
      in.opt.noise_weight, in.opt.bias, in.s.n, in.s.c, in.s.h, in.s.w, in.out_channels, alpha,
      up, grad_x.mutable_data_ptr(), strides4(grad_x), grad_scale.mutable_data_ptr(),
      grad_shift.mutable_data_ptr(), grad_weight.mutable_data_ptr(),
      grad_bias.mutable_data_ptr(), has_noise ? grad_noise_weight.mutable_data_ptr() : nullptr,
      grad_act_bias.mutable_data_ptr(), ws, current_stream()));
  return {grad_x, grad_scale, grad_shift, grad_weight, grad_bias, grad_noise_weight,
          grad_act_bias};
}

at::Tensor adain_stats_fwd_cuda(const at::Tensor& x, const std::optional<at::Tensor>& noise,
                                const std::optional<at::Tensor>& noise_weight,
                                const std::optional<at::Tensor>& act_bias, double alpha,
                                double eps) {
  constexpr const char* op = "adain_stats_fwd";
  check_float_cuda(x, op, "x");
  const Nchw s = nchw_sizes(x, op, "x");
  const Layout layout = dense_layout(x, op, "x");
  const AdainOptionals opt = adain_optionals(noise, noise_weight, act_bias, x, s, op, "act_bias");
  const DType dtype = kernel_dtype(x, op, "x");
  const bool channels_last = layout == Layout::kChannelsLast;
  const c10::cuda::CUDAGuard device_guard(x.device());

  at::Tensor stats = at::empty({s.n, 2 * s.c}, x.options().dtype(acc_scalar_type(x)));
  if (s.n == 0 || s.c == 0) return stats;
  if (s.h * s.w == 0) {
    fill_nan(stats);
    return stats;
  }
  at::Tensor workspace;
  void* ws = workspace_ptr(kernels::adain_stats_forward_workspace_bytes(dtype, s.n, s.c, s.h,
                                                                        s.w, channels_last),
                           x, workspace);
  C10_CUDA_CHECK(kernels::adain_stats_forward(
      dtype, x.const_data_ptr(), opt.noise, opt.noise_weight, opt.bias, s.n, s.c, s.h, s.w,
      channels_last, alpha, eps, stats.mutable_data_ptr(), ws, current_stream()));
  return stats;
}

// ---------------------------------------------------------------------------------------------
// lreq_adam_step_
// ---------------------------------------------------------------------------------------------

void lreq_adam_step_cuda(at::TensorList params, at::TensorList grads,
                         at::TensorList exp_avg_sqs, at::ArrayRef<double> step_sizes,
                         double beta2, double eps, double weight_decay) {
  constexpr const char* op = "lreq_adam_step_";
  const size_t count = params.size();
  ALAE_CHECK_CUDA(grads.size() == count && exp_avg_sqs.size() == count &&
                      step_sizes.size() == count,
                  op, "params, grads, exp_avg_sqs and step_sizes must have the same length, "
                  "got ", count, ", ", grads.size(), ", ", exp_avg_sqs.size(), " and ",
                  step_sizes.size());
  if (count == 0) return;
  const at::Tensor& first = params[0];
  check_contiguous_input(first, op, "params[0]");
  const DType dtype = kernel_dtype(first, op, "params[0]");

  std::vector<void*> param_ptrs(count);
  std::vector<const void*> grad_ptrs(count);
  std::vector<void*> exp_avg_sq_ptrs(count);
  std::vector<int64_t> numels(count);
  for (size_t i = 0; i < count; ++i) {
    const at::Tensor& p = params[i];
    const at::Tensor& g = grads[i];
    const at::Tensor& v = exp_avg_sqs[i];
    // Names like "grads[3]" for the messages.
    const std::string index = "[" + std::to_string(i) + "]";
    const std::string p_name = "params" + index;
    const std::string g_name = "grads" + index;
    const std::string v_name = "exp_avg_sqs" + index;
    check_contiguous_input(p, op, p_name.c_str());
    check_like(p, op, p_name.c_str(), first, "params[0]");
    check_contiguous_like(g, op, g_name.c_str(), p.sizes(), p, p_name.c_str());
    check_contiguous_like(v, op, v_name.c_str(), p.sizes(), p, p_name.c_str());
    param_ptrs[i] = p.mutable_data_ptr();
    grad_ptrs[i] = g.const_data_ptr();
    exp_avg_sq_ptrs[i] = v.mutable_data_ptr();
    numels[i] = p.numel();
  }
  const c10::cuda::CUDAGuard device_guard(first.device());
  C10_CUDA_CHECK(kernels::lreq_adam_step(
      dtype, static_cast<int64_t>(count), param_ptrs.data(), grad_ptrs.data(),
      exp_avg_sq_ptrs.data(), numels.data(), step_sizes.data(), beta2, eps, weight_decay,
      kAdamRounding, current_stream()));
}

}  // namespace
}  // namespace alae_fast

TORCH_LIBRARY_IMPL(alae_fast_C, CUDA, m) {
  m.impl("bias_act_fwd", &alae_fast::bias_act_fwd_cuda);
  m.impl("bias_act_bwd", &alae_fast::bias_act_bwd_cuda);
  m.impl("blur_fwd", &alae_fast::blur_fwd_cuda);
  m.impl("encode_norm_fwd", &alae_fast::encode_norm_fwd_cuda);
  m.impl("encode_norm_bwd", &alae_fast::encode_norm_bwd_cuda);
  m.impl("adain_fwd", &alae_fast::adain_fwd_cuda);
  m.impl("adain_bwd", &alae_fast::adain_bwd_cuda);
  m.impl("adain_conv2d_fwd", &alae_fast::adain_conv2d_fwd_cuda);
  m.impl("adain_conv2d_bwd", &alae_fast::adain_conv2d_bwd_cuda);
  m.impl("adain_stats_fwd", &alae_fast::adain_stats_fwd_cuda);
  m.impl("lreq_adam_step_", &alae_fast::lreq_adam_step_cuda);
}
