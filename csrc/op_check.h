// The one error-message form of the extension's kernels: "<op> (<backend>): <message>".
#pragma once

#include <c10/util/Exception.h>

// TORCH_CHECK with the "<op> (CPU): " / "<op> (CUDA): " prefix; a macro so that the message
// is only built when the check fails.
#define ALAE_CHECK_OP(cond, op, backend, ...) \
  TORCH_CHECK(cond, op, " (" backend "): ", __VA_ARGS__)
#define ALAE_CHECK_CPU(cond, op, ...) ALAE_CHECK_OP(cond, op, "CPU", __VA_ARGS__)
#define ALAE_CHECK_CUDA(cond, op, ...) ALAE_CHECK_OP(cond, op, "CUDA", __VA_ARGS__)
