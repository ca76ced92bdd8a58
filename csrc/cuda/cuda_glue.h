// Helpers shared by the CUDA host glue (layer_ops_cuda.cpp, loss_ops_cuda.cpp): the kernels'
// dtype of a tensor, argument checks that name the argument, workspaces and the stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>

#include "csrc/op_check.h"
#include "kernels/loss_kernels.h"

namespace alae_fast {
namespace cuda_glue {

using kernels::DType;

// The kernels' dtype of a tensor's scalar type; other dtypes are rejected naming the argument.
inline DType kernel_dtype(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    default:
      break;
  }
  ALAE_CHECK_CUDA(false, op, name, " has unsupported dtype ", t.scalar_type(),
                  " (expected float32, float64, float16 or bfloat16)");
  return DType::kFloat32;  // not reached
}

// The dtype of the stats tensors: float64 for float64 inputs, else float32.
inline at::ScalarType acc_scalar_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// A CUDA tensor of a supported dtype.
inline void check_float_cuda(const at::Tensor& t, const char* op, const char* name) {
  ALAE_CHECK_CUDA(t.defined(), op, name, " is an undefined tensor");
  ALAE_CHECK_CUDA(t.is_cuda(), op, name, " must be a CUDA tensor, got one on ", t.device());
  kernel_dtype(t, op, name);
}

// A CUDA, contiguous tensor of a supported dtype.
inline void check_contiguous_input(const at::Tensor& t, const char* op, const char* name) {
  check_float_cuda(t, op, name);
  ALAE_CHECK_CUDA(t.is_contiguous(), op, name, " must be contiguous, got strides ",
                  t.strides());
}

// `t` is on ref's device; with `same_dtype`, also of ref's dtype.
inline void check_like(const at::Tensor& t, const char* op, const char* name,
                       const at::Tensor& ref, const char* ref_name, bool same_dtype = true) {
  ALAE_CHECK_CUDA(t.device() == ref.device(), op, name, " must be on the device of ", ref_name,
                  " (", ref.device(), "), got ", t.device());
  if (same_dtype) {
    ALAE_CHECK_CUDA(t.scalar_type() == ref.scalar_type(), op, name, " must have the dtype of ",
                    ref_name, " (", ref.scalar_type(), "), got ", t.scalar_type());
  }
}

inline void check_sizes(const at::Tensor& t, const char* op, const char* name,
                        at::IntArrayRef sizes) {
  ALAE_CHECK_CUDA(t.sizes() == sizes, op, name, " must have shape ", sizes, ", got ",
                  t.sizes());
}

// A contiguous tensor of `sizes` on ref's device with ref's dtype.
inline void check_contiguous_like(const at::Tensor& t, const char* op, const char* name,
                                  at::IntArrayRef sizes, const at::Tensor& ref,
                                  const char* ref_name) {
  check_contiguous_input(t, op, name);
  check_like(t, op, name, ref, ref_name);
  check_sizes(t, op, name, sizes);
}

inline bool has_tensor(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined();
}

// Optional tensor: nullptr when absent, else its data after check_contiguous_like.
inline const void* optional_input(const std::optional<at::Tensor>& t, const char* op,
                                  const char* name, at::IntArrayRef sizes,
                                  const at::Tensor& ref, const char* ref_name) {
  if (!has_tensor(t)) return nullptr;
  check_contiguous_like(*t, op, name, sizes, ref, ref_name);
  return t->const_data_ptr();
}

// Uninitialised bytes for a launcher's workspace, or nullptr when it needs none.
inline void* workspace_ptr(size_t bytes, const at::Tensor& like, at::Tensor& holder) {
  if (bytes == 0) return nullptr;
  holder = at::empty({static_cast<int64_t>(bytes)},
                     at::TensorOptions().dtype(at::kByte).device(like.device()));
  return holder.mutable_data_ptr();
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace cuda_glue
}  // namespace alae_fast
