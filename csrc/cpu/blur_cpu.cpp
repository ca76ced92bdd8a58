// CPU kernel of blur: the depthwise [1, 2, 1] x [1, 2, 1] / 16 filter with zero padding 1,
// for contiguous (NCHW) and channels_last (NHWC) tensors; the output keeps the layout.
//
// Separable: a vertical pass into a zero-padded buffer, then a horizontal pass, each one loop
// over a contiguous run of rows: groups of whole images when they are small, else bands of
// rows of one image. In NCHW a row is W elements with horizontal neighbours 1 apart; in NHWC
// it is W * C elements with neighbours C apart, so the same loops serve both layouts.
#include "csrc/cpu/layer_common.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace alae_fast {
namespace {

using namespace layer;

// Rows of one image per band: enough that small images are one band, few enough that a
// band's buffers stay in L2.
constexpr int64_t kBandElems = 16384;
// Rows shorter than this are too short for a loop each: small images of such rows are
// blurred kStackElems elements at a time with masks (building the masks costs about as much
// as one pass, so the groups stay small).
constexpr int64_t kShortRow = 32;
constexpr int64_t kStackElems = 4096;

// Output rows [i0, i1) of one image of `height` rows of `len` elements; `step` is the distance
// of horizontal neighbours (1 in NCHW, C in NHWC). x points at row i0 of the input and may be
// read one row above and below the band where the image has them; out receives the band.
// mid holds (i1 - i0) * len + 2 * step elements.
template <typename acc>
ALAE_INLINE void blur_band(const acc* x, acc* out, int64_t height, int64_t len, int64_t step,
                           int64_t i0, int64_t i1, acc* mid_buffer) {
  const acc quarter = acc(0.25), half = acc(0.5);
  const int64_t rows = i1 - i0;
  const int64_t width = len / step;
  // Vertical pass into mid, whose `step` elements either side stay zero.
  acc* mid = mid_buffer + step;
  for (int64_t q = 0; q < step; ++q) {
    mid_buffer[q] = acc(0);
    mid[rows * len + q] = acc(0);
  }
  const int64_t first = i0 == 0 ? 1 : 0;                  // band rows [first, last) have
  const int64_t last = i1 == height ? rows - 1 : rows;  // a row above and below
  if (i0 == 0) {
    if (height > 1) {
      for (int64_t q = 0; q < len; ++q) {
        mid[q] = half * x[q] + quarter * x[q + len];
      }
    } else {
      for (int64_t q = 0; q < len; ++q) {
        mid[q] = half * x[q];
      }
    }
  }
  if (i1 == height && height > 1) {
    const int64_t base = (rows - 1) * len;
    for (int64_t q = base; q < base + len; ++q) {
      mid[q] = half * x[q] + quarter * x[q - len];
    }
  }
  for (int64_t q = first * len; q < last * len; ++q) {
    mid[q] = half * x[q] + quarter * (x[q - len] + x[q + len]);
  }
  // Horizontal pass over the whole band as one run, then the first and last column of each
  // row again, whose outer neighbour is padding, not the adjacent row.
  for (int64_t q = 0; q < rows * len; ++q) {
    out[q] = half * mid[q] + quarter * (mid[q - step] + mid[q + step]);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t begin = r * len, end = begin + len - step;
    if (width > 1) {
      for (int64_t c = 0; c < step; ++c) {
        out[begin + c] = half * mid[begin + c] + quarter * mid[begin + step + c];
        out[end + c] = half * mid[end + c] + quarter * mid[end - step + c];
      }
    } else {
      for (int64_t c = 0; c < step; ++c) {
        out[begin + c] = half * mid[begin + c];
      }
    }
  }
}

// Band b of the band_count bands of every image, for tasks [t0, t1) of images * band_count.
template <typename scalar_t, bool kAvx2>
ALAE_INLINE void blur_tasks(const scalar_t* x, scalar_t* y, int64_t height, int64_t len,
                            int64_t step, int64_t band_rows, int64_t band_count, int64_t t0,
                            int64_t t1) {
  using acc = acc_t<scalar_t>;
  const int64_t max_band = std::min(band_rows, height) * len;
  constexpr bool reduced = is_reduced<scalar_t>();
  // mid, then for float16/bfloat16 the input band with a row of margin each side and the
  // float output band.
  std::vector<acc> buffer(max_band + 2 * step + (reduced ? 2 * max_band + 2 * len : 0));
  acc* mid = buffer.data();
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t image = t / band_count;
    const int64_t i0 = (t - image * band_count) * band_rows;
    const int64_t i1 = std::min(height, i0 + band_rows);
    const scalar_t* xb = x + (image * height + i0) * len;
    scalar_t* yb = y + (image * height + i0) * len;
    if constexpr (reduced) {
      const int64_t above = i0 > 0 ? 1 : 0, below = i1 < height ? 1 : 0;
      acc* in = mid + max_band + 2 * step;
      acc* out = in + max_band + 2 * len;
      to_acc<kAvx2>(xb - above * len, in, (i1 - i0 + above + below) * len);
      blur_band<acc>(in + above * len, out, height, len, step, i0, i1, mid);
      from_acc<kAvx2>(out, yb, (i1 - i0) * len);
    } else {
      blur_band<acc>(xb, yb, height, len, step, i0, i1, mid);
    }
  }
}

// Whole small images, many per call: rows * len elements of `images` stacked images of
// `height` rows. Image edges inside the run are handled with per-element masks (selects, so a
// neighbour image's inf or NaN cannot leak in) instead of per-row loops, which would be a few
// elements long here. mid holds count + 2 * step elements.
template <typename acc>
ALAE_INLINE void blur_stacked(const acc* x, acc* out, int64_t count, int64_t len, int64_t step,
                              const acc* up_ok, const acc* down_ok, const acc* left_ok,
                              const acc* right_ok, acc* mid_buffer) {
  const acc quarter = acc(0.25), half = acc(0.5), zero = acc(0);
  acc* mid = mid_buffer + step;
  for (int64_t q = 0; q < step; ++q) {
    mid_buffer[q] = zero;
    mid[count + q] = zero;
  }
  if (count == len) {  // a single row
    for (int64_t q = 0; q < len; ++q) {
      mid[q] = half * x[q];
    }
  } else {
    // The first and last row of the run read only inside it; rows between read both ways.
    // Neighbours are loaded unconditionally and then selected, so the loops vectorise.
    for (int64_t q = 0; q < len; ++q) {
      const acc down = x[q + len];
      mid[q] = half * x[q] + quarter * (down_ok[q] != zero ? down : zero);
    }
    for (int64_t q = len; q < count - len; ++q) {
      const acc up = x[q - len], down = x[q + len];
      mid[q] = half * x[q] + quarter * ((up_ok[q] != zero ? up : zero) +
                                        (down_ok[q] != zero ? down : zero));
    }
    for (int64_t q = count - len; q < count; ++q) {
      const acc up = x[q - len];
      mid[q] = half * x[q] + quarter * (up_ok[q] != zero ? up : zero);
    }
  }
  for (int64_t q = 0; q < count; ++q) {
    const acc left = mid[q - step], right = mid[q + step];
    out[q] = half * mid[q] + quarter * ((left_ok[q] != zero ? left : zero) +
                                        (right_ok[q] != zero ? right : zero));
  }
}

// Groups [t0, t1) of `group` small images each (the last group may be shorter).
template <typename scalar_t, bool kAvx2>
ALAE_INLINE void blur_groups(const scalar_t* x, scalar_t* y, int64_t images, int64_t height,
                             int64_t len, int64_t step, int64_t group, int64_t t0, int64_t t1) {
  using acc = acc_t<scalar_t>;
  const int64_t image_elems = height * len;
  const int64_t max_count = std::min(group, images - t0 * group) * image_elems;
  constexpr bool reduced = is_reduced<scalar_t>();
  std::vector<acc> buffer(5 * max_count + 2 * step + (reduced ? 2 * max_count : 0));
  acc* up_ok = buffer.data();
  acc* down_ok = up_ok + max_count;
  acc* left_ok = down_ok + max_count;
  acc* right_ok = left_ok + max_count;
  acc* mid = right_ok + max_count;
  // Masks of one image, built row by row and column by column, then repeated.
  const int64_t width = len / step;
  for (int64_t i = 0; i < height; ++i) {
    for (int64_t j = 0; j < width; ++j) {
      for (int64_t c = 0; c < step; ++c) {
        const int64_t q = (i * width + j) * step + c;
        up_ok[q] = acc(i > 0);
        down_ok[q] = acc(i + 1 < height);
        left_ok[q] = acc(j > 0);
        right_ok[q] = acc(j + 1 < width);
      }
    }
  }
  for (int64_t q = image_elems; q < max_count; q += image_elems) {
    std::copy(up_ok, up_ok + image_elems, up_ok + q);
    std::copy(down_ok, down_ok + image_elems, down_ok + q);
    std::copy(left_ok, left_ok + image_elems, left_ok + q);
    std::copy(right_ok, right_ok + image_elems, right_ok + q);
  }
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t offset = t * group * image_elems;
    const int64_t count = std::min(group, images - t * group) * image_elems;
    if constexpr (reduced) {
      acc* in = mid + max_count + 2 * step;
      acc* out = in + max_count;
      to_acc<kAvx2>(x + offset, in, count);
      blur_stacked<acc>(in, out, count, len, step, up_ok, down_ok, left_ok, right_ok, mid);
      from_acc<kAvx2>(out, y + offset, count);
    } else {
      blur_stacked<acc>(x + offset, y + offset, count, len, step, up_ok, down_ok, left_ok,
                        right_ok, mid);
    }
  }
}

at::Tensor blur_fwd(const at::Tensor& x) {
  constexpr const char* op = "blur_fwd";
  check_cpu_float(x, op, "x");
  ALAE_CHECK_CPU(x.dim() == 4, op, "x must be 4-D [N, C, H, W], got shape ", x.sizes());
  const bool channels_last = is_channels_last_only(x);
  ALAE_CHECK_CPU(channels_last || x.is_contiguous(), op,
                 "x must be contiguous or channels_last, got strides ", x.strides());
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) {
    return y;
  }
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  // NCHW: N * C images of H rows of W; NHWC: N images of H rows of W * C.
  const int64_t images = channels_last ? N : N * C;
  const int64_t len = channels_last ? W * C : W;
  const int64_t step = channels_last ? C : 1;
  if (len < kShortRow && 2 * H * len <= kStackElems) {
    // Small images of short rows: groups of whole images per call.
    const int64_t group = kStackElems / (H * len);
    const int64_t groups = (images + group - 1) / group;
    const int64_t grain = std::max<int64_t>(1, kGrain / (group * H * len));
    ALAE_DISPATCH_FLOATS(x.scalar_type(), op, [&] {
      const scalar_t* px = x.data_ptr<scalar_t>();
      scalar_t* py = y.data_ptr<scalar_t>();
      at::parallel_for(0, groups, grain, [&](int64_t t0, int64_t t1) {
        dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
          blur_groups<scalar_t, decltype(isa)::value>(px, py, images, H, len, step, group, t0,
                                                      t1);
        });
      });
    });
    return y;
  }
  // Large images: bands of rows of one image per call.
  const int64_t band_rows = std::max<int64_t>(1, kBandElems / len);
  const int64_t band_count = (H + band_rows - 1) / band_rows;
  const int64_t grain = std::max<int64_t>(1, kGrain / (std::min(band_rows, H) * len));
  ALAE_DISPATCH_FLOATS(x.scalar_type(), op, [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, images * band_count, grain, [&](int64_t t0, int64_t t1) {
      dispatch_isa([&](auto isa) ALAE_INLINE_LAMBDA {
        blur_tasks<scalar_t, decltype(isa)::value>(px, py, H, len, step, band_rows, band_count,
                                                   t0, t1);
      });
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(alae_fast_C, CPU, m) {
  m.impl("blur_fwd", &blur_fwd);
}

}  // namespace alae_fast
