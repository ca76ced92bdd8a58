// Element-type dispatch shared by the CUDA launchers: DType -> C++ type, and the size of its
// accumulator. Device-code only, free of torch headers like the rest of kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "loss_kernels.h"

namespace alae_fast {
namespace kernels {

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with T the element type of `dtype`; an unknown dtype is an invalid value.
template <typename F>
cudaError_t dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32:
      return f(TypeTag<float>{});
    case DType::kFloat64:
      return f(TypeTag<double>{});
    case DType::kFloat16:
      return f(TypeTag<__half>{});
    case DType::kBFloat16:
      return f(TypeTag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

// Bytes of one accumulator of `dtype` (0 for an unknown dtype).
inline size_t acc_bytes(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
    case DType::kFloat16:
    case DType::kBFloat16:
      return sizeof(float);
    case DType::kFloat64:
      return sizeof(double);
  }
  return 0;
}

}  // namespace kernels
}  // namespace alae_fast
