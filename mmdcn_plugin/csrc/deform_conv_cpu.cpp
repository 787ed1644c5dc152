// Deformable convolution on the CPU (DCNv1/v2), with mmcv's sampling rules.
//
//   deform_conv_forward     the convolution: output = W @ columns (+ bias)
//   deform_conv_backward    its five gradients
//   deform_im2col           the columns alone: mask * bilinear(input, sampling point)
//   deform_col2im_backward  the input, offset and mask gradients from grad_columns
//
// The first two do the work (mmdcn_plugin/ops/backends/cpp_impl.py calls them); the last
// two expose the sampling kernels on whole tensors, for tests.  The convolution goes block
// by block of output positions: the block's columns are sampled into a buffer of about
// L2 size and the GEMMs (ATen's, one per conv group) read them from cache; the backward
// samples them again for the weight gradient and feeds the block's column gradient
// straight to the sampling adjoint.  Nothing of the size of all the columns is allocated.
//
// Sampling rules (mmcv's, see mmdcn_plugin/ops/backends/sampling.py): a point is valid
// only when -1 < y < H and -1 < x < W (NaN and inf fail that test, and nothing is cast
// to int before it); corners come from floor; corners outside the image read 0; the
// coordinate gradient is the slope between floor and floor + 1.  The Python definition
// of the grid and of the inside rule is mmdcn_plugin/ops/sampling_rules.py
// (sampling_points, inside_image); make_corners below restates the rule and must agree.
//
// Layout.  The kernels read the input channels-last ([N, H, W, C]), so the four corners
// of a sampling point are four contiguous channel vectors, and the columns are
// channels-last too: [groups, P, K, C / groups] per image (P = H_out * W_out, K = kh * kw,
// groups = conv groups), so that conv group g is one row-major [P, K*C/groups] matrix,
// the GEMM's transposed operand.  Every inner loop runs over contiguous channels.
//
// Threads (at::parallel_for, so torch.set_num_threads applies).  No two threads write
// the same memory: sampling and the offset/mask gradient split over output positions;
// the input gradient, a scatter, splits over blocks of channels, each thread owning its
// channels of every pixel.  Sums are in a fixed order, so the kernels' results do not
// depend on the number of threads (the GEMMs' may, in the last bits).
#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <tuple>
#include <vector>

// float and double, and bf16 and fp16 computed in float.
#define MMDCN_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, TYPE, NAME, __VA_ARGS__)

namespace {

// Output positions per task of the position-parallel kernels.
constexpr int64_t kPositionGrain = 16;
// Widest channel block of one scatter task (its rows of the gradient stay in cache).
constexpr int64_t kMaxChannelBlock = 64;
// Size of one block of columns in the fused ops (and as much for their gradient): about
// a core's L2, so the columns are still in cache when the GEMM reads them, and at least
// kMinBlockPositions columns, so that the GEMM streams the weight for enough of them.
// (1-4 MiB and 128-1024 positions timed alike at ResNet-50's c3-c5.)
constexpr int64_t kBlockBytes = 2 << 20;
constexpr int64_t kMinBlockPositions = 128;

struct Geometry {
  int64_t n, c, h, w;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t dg, groups, ho, wo;  // deform groups, conv groups, output size
  int64_t k() const { return kh * kw; }
  int64_t p() const { return ho * wo; }
  int64_t cpdg() const { return c / dg; }      // channels per deform group
  int64_t cpg() const { return c / groups; }   // channels per conv group
};

// Columns of output positions [q0, q0 + stride) of one image, laid out
// [groups, stride, K, C/groups]: conv group gr is a row-major [stride, K*C/groups] matrix.
template <typename T>
struct ColumnBlock {
  T* data;
  int64_t q0, stride;
  // Where channel cc of kernel point kk at position q starts (channels run contiguously
  // up to the end of cc's conv group).
  T* at(const Geometry& geo, int64_t q, int64_t kk, int64_t cc) const {
    const int64_t gr = cc / geo.cpg();
    return data + ((gr * stride + (q - q0)) * geo.k() + kk) * geo.cpg() + (cc - gr * geo.cpg());
  }
};

// The bilinear corners of one sampling point: pixel index y * W + x, or -1 for a corner
// outside the image (weight and slopes 0).  Corner order: (y0, x0), (y0, x1), (y1, x0),
// (y1, x1).
template <typename acc_t>
struct Corners {
  int32_t pixel[4];
  acc_t weight[4];   // bilinear weight
  acc_t slope_y[4];  // d weight / d y
  acc_t slope_x[4];  // d weight / d x
};

template <typename acc_t>
inline bool make_corners(acc_t y, acc_t x, int64_t h, int64_t w, Corners<acc_t>& out) {
  // The inside rule of mmdcn_plugin/ops/sampling_rules.py (inside_image), written so
  // that NaN is invalid; no cast to int before this test.
  if (!(y > -1 && y < static_cast<acc_t>(h) && x > -1 && x < static_cast<acc_t>(w))) {
    for (int i = 0; i < 4; ++i) {
      out.pixel[i] = -1;
      out.weight[i] = out.slope_y[i] = out.slope_x[i] = 0;
    }
    return false;
  }
  const acc_t fy = std::floor(y), fx = std::floor(x);
  const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
  const acc_t ly = y - fy, lx = x - fx, hy = 1 - ly, hx = 1 - lx;
  const bool in_y0 = y0 >= 0, in_y1 = y0 + 1 <= h - 1;
  const bool in_x0 = x0 >= 0, in_x1 = x0 + 1 <= w - 1;
  const bool inside[4] = {in_y0 && in_x0, in_y0 && in_x1, in_y1 && in_x0, in_y1 && in_x1};
  const int64_t pixel[4] = {y0 * w + x0, y0 * w + x0 + 1, (y0 + 1) * w + x0,
                            (y0 + 1) * w + x0 + 1};
  const acc_t weight[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
  const acc_t slope_y[4] = {-hx, -lx, hx, lx};
  const acc_t slope_x[4] = {-hy, hy, -ly, ly};
  for (int i = 0; i < 4; ++i) {
    out.pixel[i] = inside[i] ? static_cast<int32_t>(pixel[i]) : -1;
    out.weight[i] = inside[i] ? weight[i] : acc_t(0);
    out.slope_y[i] = inside[i] ? slope_y[i] : acc_t(0);
    out.slope_x[i] = inside[i] ? slope_x[i] : acc_t(0);
  }
  return true;
}

// The sampling point of kernel point kk (deform group gg) at output position q.
template <typename scalar_t, typename acc_t>
inline void sampling_point(const scalar_t* offset, const Geometry& geo, int64_t nn,
                           int64_t gg, int64_t kk, int64_t q, acc_t& y, acc_t& x) {
  // offset is [N, G, K, 2, P].
  const scalar_t* off = offset + (((nn * geo.dg + gg) * geo.k() + kk) * 2) * geo.p() + q;
  const int64_t i = kk / geo.kw, j = kk % geo.kw;
  const int64_t oy = q / geo.wo, ox = q % geo.wo;
  y = static_cast<acc_t>(oy * geo.sh - geo.ph + i * geo.dh) + static_cast<acc_t>(off[0]);
  x = static_cast<acc_t>(ox * geo.sw - geo.pw + j * geo.dw) +
      static_cast<acc_t>(off[geo.p()]);
}

// The channels of deform group gg split at conv-group boundaries: [begin, end) runs that
// are contiguous both in the input rows and in the columns.
template <typename F>
inline void for_each_run(const Geometry& geo, int64_t gg, F&& f) {
  int64_t cc = gg * geo.cpdg();
  const int64_t end = (gg + 1) * geo.cpdg();
  while (cc < end) {
    const int64_t run_end = std::min(end, (cc / geo.cpg() + 1) * geo.cpg());
    f(cc, run_end);
    cc = run_end;
  }
}

// ---- The inner loops: one sampling point, a run of contiguous channels.
//
// For float and double they are compiled for AVX-512, AVX2+FMA and the baseline, and
// the loader picks one for the CPU (GCC's target_clones, on x86-64 Linux).  bf16 and
// fp16 take the generic code.

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MMDCN_MULTIVERSION \
  __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define MMDCN_MULTIVERSION
#endif

// dst[c] = sum_i w[i] * row_i[c]: one column of im2col.
template <typename scalar_t, typename acc_t>
inline __attribute__((always_inline)) void combine4_impl(
    scalar_t* __restrict__ dst, const scalar_t* __restrict__ r0,
    const scalar_t* __restrict__ r1, const scalar_t* __restrict__ r2,
    const scalar_t* __restrict__ r3, const acc_t* w, int64_t len) {
  const acc_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  for (int64_t c = 0; c < len; ++c) {
    dst[c] = static_cast<scalar_t>(
        w0 * static_cast<acc_t>(r0[c]) + w1 * static_cast<acc_t>(r1[c]) +
        w2 * static_cast<acc_t>(r2[c]) + w3 * static_cast<acc_t>(r3[c]));
  }
}

// row_i[c] += w[i] * g[c] for the corners inside the image (pixel >= 0), row_i being
// image + pixel[i] * row_stride: one point's share of the input gradient.
template <typename scalar_t, typename acc_t>
inline __attribute__((always_inline)) void scatter4_impl(
    acc_t* image, int64_t row_stride, const int32_t* pixel, const acc_t* w,
    const scalar_t* __restrict__ g, int64_t len) {
  for (int i = 0; i < 4; ++i) {
    if (pixel[i] < 0) continue;
    acc_t* __restrict__ dst = image + pixel[i] * row_stride;
    const acc_t wi = w[i];
    for (int64_t c = 0; c < len; ++c) dst[c] += wi * static_cast<acc_t>(g[c]);
  }
}

// out[i] += sum_c g[c] * row_i[c] for the four corners.  Lanes of independent partial
// sums let the compiler vectorise without reassociating: the order is fixed, the same
// for every instruction set and thread count.
template <typename scalar_t, typename acc_t>
inline __attribute__((always_inline)) void dot4_impl(
    const scalar_t* __restrict__ g, const scalar_t* __restrict__ r0,
    const scalar_t* __restrict__ r1, const scalar_t* __restrict__ r2,
    const scalar_t* __restrict__ r3, int64_t len, acc_t* out) {
  constexpr int kLanes = 64 / sizeof(acc_t);  // one AVX-512 register, two AVX2 ones
  acc_t p0[kLanes] = {}, p1[kLanes] = {}, p2[kLanes] = {}, p3[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= len; c += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const acc_t gv = static_cast<acc_t>(g[c + l]);
      p0[l] += gv * static_cast<acc_t>(r0[c + l]);
      p1[l] += gv * static_cast<acc_t>(r1[c + l]);
      p2[l] += gv * static_cast<acc_t>(r2[c + l]);
      p3[l] += gv * static_cast<acc_t>(r3[c + l]);
    }
  }
  for (int l = 0; c < len; ++c, ++l) {
    const acc_t gv = static_cast<acc_t>(g[c]);
    p0[l] += gv * static_cast<acc_t>(r0[c]);
    p1[l] += gv * static_cast<acc_t>(r1[c]);
    p2[l] += gv * static_cast<acc_t>(r2[c]);
    p3[l] += gv * static_cast<acc_t>(r3[c]);
  }
  acc_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int l = 0; l < kLanes; ++l) {
    s0 += p0[l];
    s1 += p1[l];
    s2 += p2[l];
    s3 += p3[l];
  }
  out[0] += s0;
  out[1] += s1;
  out[2] += s2;
  out[3] += s3;
}

// Generic entry points (bf16), and multi-versioned overloads for float and double.
template <typename scalar_t, typename acc_t>
void combine4(scalar_t* dst, const scalar_t* const r[4], const acc_t* w, int64_t len) {
  combine4_impl(dst, r[0], r[1], r[2], r[3], w, len);
}
template <typename scalar_t, typename acc_t>
void scatter4(acc_t* image, int64_t row_stride, const int32_t* pixel, const acc_t* w,
              const scalar_t* g, int64_t len) {
  scatter4_impl(image, row_stride, pixel, w, g, len);
}
template <typename scalar_t, typename acc_t>
void dot4(const scalar_t* g, const scalar_t* const r[4], int64_t len, acc_t* out) {
  dot4_impl(g, r[0], r[1], r[2], r[3], len, out);
}

#define MMDCN_LOOPS(T)                                                                \
  MMDCN_MULTIVERSION void combine4(T* dst, const T* const r[4], const T* w,            \
                                   int64_t len) {                                     \
    combine4_impl(dst, r[0], r[1], r[2], r[3], w, len);                               \
  }                                                                                   \
  MMDCN_MULTIVERSION void scatter4(T* image, int64_t row_stride, const int32_t* pixel, \
                                   const T* w, const T* g, int64_t len) {             \
    scatter4_impl(image, row_stride, pixel, w, g, len);                               \
  }                                                                                   \
  MMDCN_MULTIVERSION void dot4(const T* g, const T* const r[4], int64_t len, T* out) { \
    dot4_impl(g, r[0], r[1], r[2], r[3], len, out);                                   \
  }
MMDCN_LOOPS(float)
MMDCN_LOOPS(double)
#undef MMDCN_LOOPS

Geometry make_geometry(const at::Tensor& input, const at::Tensor& offset,
                       const std::optional<at::Tensor>& mask, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                       int64_t deform_groups, int64_t groups) {
  TORCH_CHECK(input.device().is_cpu() && offset.device().is_cpu(),
              "deform_conv_cpu: tensors must be on the CPU, got input on ", input.device(),
              " and offset on ", offset.device());
  TORCH_CHECK(input.dim() == 4 && offset.dim() == 4,
              "deform_conv_cpu: input and offset must be 4-D, got ", input.sizes(), " and ",
              offset.sizes());
  TORCH_CHECK(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 &&
                  pw >= 0 && deform_groups >= 1 && groups >= 1,
              "deform_conv_cpu: kernel, stride, dilation and groups must be >= 1 and padding "
              ">= 0");
  Geometry geo{input.size(0), input.size(1), input.size(2), input.size(3), kh, kw, sh, sw,
               ph, pw, dh, dw, deform_groups, groups, offset.size(2), offset.size(3)};
  const int64_t ho = (geo.h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  const int64_t wo = (geo.w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  TORCH_CHECK(geo.ho == ho && geo.wo == wo && ho >= 1 && wo >= 1,
              "deform_conv_cpu: offset spatial size ", offset.sizes(),
              " does not match the output size ", ho, "x", wo);
  TORCH_CHECK(offset.size(0) == geo.n && offset.size(1) == 2 * deform_groups * geo.k(),
              "deform_conv_cpu: offset must be [N, 2*G*K, Ho, Wo] = [", geo.n, ", ",
              2 * deform_groups * geo.k(), ", ", ho, ", ", wo, "], got ", offset.sizes());
  TORCH_CHECK(geo.c % deform_groups == 0 && geo.c % groups == 0, "deform_conv_cpu: ",
              geo.c, " channels are not divisible by deform_groups=", deform_groups,
              " and groups=", groups);
  TORCH_CHECK(geo.h * geo.w < std::numeric_limits<int32_t>::max(),
              "deform_conv_cpu: feature map too large (", geo.h, "x", geo.w, ")");
  TORCH_CHECK(offset.scalar_type() == input.scalar_type(), "deform_conv_cpu: offset dtype ",
              offset.scalar_type(), " != input dtype ", input.scalar_type());
  if (mask.has_value() && mask->defined()) {
    TORCH_CHECK(mask->device().is_cpu() && mask->scalar_type() == input.scalar_type(),
                "deform_conv_cpu: mask must be a CPU tensor of the input's dtype");
    TORCH_CHECK(mask->dim() == 4 && mask->size(0) == geo.n &&
                    mask->size(1) == deform_groups * geo.k() && mask->size(2) == ho &&
                    mask->size(3) == wo,
                "deform_conv_cpu: mask must be [N, G*K, Ho, Wo], got ", mask->sizes());
  }
  return geo;
}

std::optional<at::Tensor> contiguous_mask(const std::optional<at::Tensor>& mask) {
  if (mask.has_value() && mask->defined()) return mask->contiguous();
  return std::nullopt;
}

// ---- Sampling over a range of output positions of one image.

// cols = mask * bilinear(input) for positions [q0, q1) of image nn (image: its
// channels-last [H, W, C] input; offset and mask: the whole tensors).
template <typename scalar_t>
void im2col_range(const Geometry& geo, const scalar_t* image, const scalar_t* offset,
                  const scalar_t* mask, int64_t nn, int64_t q0, int64_t q1,
                  const ColumnBlock<scalar_t>& cols) {
  // Named in torch.profiler's tables, next to the GEMMs.
  RECORD_FUNCTION("deform_conv_cpu::sample_columns", std::vector<c10::IValue>());
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k(), p = geo.p();
  const std::vector<scalar_t> zeros(geo.c, scalar_t(0));  // the row of an outside corner
  at::parallel_for(q0, q1, kPositionGrain, [&](int64_t begin, int64_t end) {
    Corners<acc_t> cn;
    for (int64_t q = begin; q < end; ++q) {
      for (int64_t kk = 0; kk < k; ++kk) {
        for (int64_t gg = 0; gg < geo.dg; ++gg) {
          acc_t y, x;
          sampling_point(offset, geo, nn, gg, kk, q, y, x);
          const bool valid = make_corners(y, x, geo.h, geo.w, cn);
          const acc_t mq =
              mask ? static_cast<acc_t>(mask[((nn * geo.dg + gg) * k + kk) * p + q]) : acc_t(1);
          for_each_run(geo, gg, [&](int64_t c0, int64_t c1) {
            scalar_t* dst = cols.at(geo, q, kk, c0);
            if (!valid) {
              std::fill(dst, dst + (c1 - c0), scalar_t(0));
              return;
            }
            const scalar_t* r[4];
            acc_t wt[4];
            for (int i = 0; i < 4; ++i) {
              r[i] = cn.pixel[i] >= 0 ? image + cn.pixel[i] * geo.c + c0 : zeros.data();
              wt[i] = cn.weight[i] * mq;
            }
            combine4(dst, r, wt, c1 - c0);
          });
        }
      }
    }
  });
}

// Channel blocks of the input-gradient scatter: they never straddle a deform or conv
// group, and are as many as there are threads (blocks of equal width do equal work), at
// least 8 channels wide.
struct ChannelBlocks {
  int64_t unit, width, per_unit, count;
  explicit ChannelBlocks(const Geometry& geo) {
    unit = std::gcd(geo.cpdg(), geo.cpg());
    width = std::min(unit, kMaxChannelBlock);
    const int64_t want = at::get_num_threads();
    while (width > 8 && (geo.c + width - 1) / width < want) width = (width + 1) / 2;
    per_unit = (unit + width - 1) / width;
    count = (geo.c / unit) * per_unit;
  }
  int64_t begin(int64_t b) const { return (b / per_unit) * unit + (b % per_unit) * width; }
  int64_t end(int64_t b) const {
    return std::min(begin(b) + width, (b / per_unit + 1) * unit);
  }
};

// The adjoint of im2col_range, given the gradient of its columns: adds into grad_image
// (image nn's channels-last [H, W, C] input gradient, or null), and writes the offset and
// mask gradients of positions [q0, q1) into grad_offset and grad_mask (whole tensors,
// [N, G, K, 2, P] and [N, G, K, P], or null).
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
void col2im_range(const Geometry& geo, const ColumnBlock<const scalar_t>& gcols,
                  const scalar_t* image, const scalar_t* offset, const scalar_t* mask,
                  int64_t nn, int64_t q0, int64_t q1, acc_t* grad_image, acc_t* grad_offset,
                  acc_t* grad_mask) {
  const int64_t k = geo.k(), p = geo.p();
  if (grad_image) {
    RECORD_FUNCTION("deform_conv_cpu::input_grad", std::vector<c10::IValue>());
    // The corners of every point, masked, shared by all channel blocks: [Q, K, G].
    const int64_t points = (q1 - q0) * k * geo.dg;
    std::unique_ptr<Corners<acc_t>[]> table(new Corners<acc_t>[points]);
    at::parallel_for(q0, q1, kPositionGrain, [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        for (int64_t kk = 0; kk < k; ++kk) {
          for (int64_t gg = 0; gg < geo.dg; ++gg) {
            acc_t y, x;
            sampling_point(offset, geo, nn, gg, kk, q, y, x);
            Corners<acc_t>& cn = table[((q - q0) * k + kk) * geo.dg + gg];
            make_corners(y, x, geo.h, geo.w, cn);
            const acc_t mq = mask ? static_cast<acc_t>(mask[((nn * geo.dg + gg) * k + kk) * p + q])
                                  : acc_t(1);
            for (int i = 0; i < 4; ++i) cn.weight[i] *= mq;
          }
        }
      }
    });
    // A scatter: each task owns a block of channels of every pixel.
    const ChannelBlocks blocks(geo);
    at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t c0 = blocks.begin(b), len = blocks.end(b) - c0;
        const int64_t gg = c0 / geo.cpdg();
        for (int64_t q = q0; q < q1; ++q) {
          for (int64_t kk = 0; kk < k; ++kk) {
            const Corners<acc_t>& cn = table[((q - q0) * k + kk) * geo.dg + gg];
            const scalar_t* g = gcols.at(geo, q, kk, c0);
            scatter4(grad_image + c0, geo.c, cn.pixel, cn.weight, g, len);
          }
        }
      }
    });
  }
  if (grad_offset || grad_mask) {
    RECORD_FUNCTION("deform_conv_cpu::offset_mask_grad", std::vector<c10::IValue>());
    const std::vector<scalar_t> zeros(geo.c, scalar_t(0));
    at::parallel_for(q0, q1, kPositionGrain, [&](int64_t begin, int64_t end) {
      Corners<acc_t> cn;
      for (int64_t q = begin; q < end; ++q) {
        for (int64_t kk = 0; kk < k; ++kk) {
          for (int64_t gg = 0; gg < geo.dg; ++gg) {
            acc_t y, x;
            sampling_point(offset, geo, nn, gg, kk, q, y, x);
            const int64_t row = (nn * geo.dg + gg) * k + kk;  // (n, g, k)
            acc_t dots[4] = {0, 0, 0, 0};  // sum over channels of grad_col * corner
            if (make_corners(y, x, geo.h, geo.w, cn)) {
              for_each_run(geo, gg, [&](int64_t c0, int64_t c1) {
                const scalar_t* r[4];
                for (int i = 0; i < 4; ++i)
                  r[i] = cn.pixel[i] >= 0 ? image + cn.pixel[i] * geo.c + c0 : zeros.data();
                dot4(gcols.at(geo, q, kk, c0), r, c1 - c0, dots);
              });
            }
            if (grad_offset) {
              const acc_t mq = mask ? static_cast<acc_t>(mask[row * p + q]) : acc_t(1);
              acc_t sy = 0, sx = 0;
              for (int i = 0; i < 4; ++i) {
                sy += cn.slope_y[i] * dots[i];
                sx += cn.slope_x[i] * dots[i];
              }
              grad_offset[row * 2 * p + q] = mq * sy;
              grad_offset[(row * 2 + 1) * p + q] = mq * sx;
            }
            if (grad_mask) {
              acc_t sv = 0;
              for (int i = 0; i < 4; ++i) sv += cn.weight[i] * dots[i];
              grad_mask[row * p + q] = sv;
            }
          }
        }
      }
    });
  }
}

// Output positions per block of the fused ops: the block's columns (and the gradient's)
// stay in cache between the sampling kernel and the GEMM.
int64_t block_positions(const Geometry& geo, int64_t requested, int64_t elem_bytes) {
  if (requested > 0) return std::min(requested, geo.p());
  const int64_t per_position = geo.k() * geo.c * elem_bytes;
  return std::min(std::max(kBlockBytes / per_position, kMinBlockPositions), geo.p());
}

// weight[o, c, kh, kw] as Tensor[groups, C_out/groups, K * C/groups], columns ordered
// (kernel point, channel) as in a ColumnBlock.
at::Tensor weight_matrix(const at::Tensor& weight, const Geometry& geo) {
  const int64_t og = weight.size(0) / geo.groups;
  return weight.reshape({geo.groups, og, geo.cpg(), geo.k()})
      .transpose(2, 3)
      .contiguous()
      .view({geo.groups, og, geo.k() * geo.cpg()});
}

void check_weight(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  const at::Tensor& input, const Geometry& geo) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == geo.cpg() && weight.size(2) == geo.kh &&
                  weight.size(3) == geo.kw && weight.size(0) % geo.groups == 0 &&
                  weight.size(0) >= geo.groups,
              "deform_conv_cpu: weight must be [C_out, C/groups, kh, kw] = [?, ", geo.cpg(),
              ", ", geo.kh, ", ", geo.kw, "] with C_out divisible by groups=", geo.groups,
              ", got ", weight.sizes());
  TORCH_CHECK(weight.device().is_cpu() && weight.scalar_type() == input.scalar_type(),
              "deform_conv_cpu: weight must be a CPU tensor of the input's dtype");
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->device().is_cpu() && bias->scalar_type() == input.scalar_type() &&
                    bias->dim() == 1 && bias->size(0) == weight.size(0),
                "deform_conv_cpu: bias must be a CPU tensor [C_out] of the input's dtype");
  }
}

}  // namespace

// ---- Public ops.

// Columns of a deformable convolution, channels-last: Tensor[N, groups, Ho*Wo, K, C/groups]
// of the input's dtype, where element [n, gr, q, k, c] is channel gr * C/groups + c of
// image n bilinearly sampled at kernel point k of output position q, times the mask
// (when given).  input may have any memory format (channels_last avoids a copy).
at::Tensor deform_im2col(const at::Tensor& input_, const at::Tensor& offset_,
                         const std::optional<at::Tensor>& mask_, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                         int64_t dw, int64_t deform_groups, int64_t groups) {
  const Geometry geo = make_geometry(input_, offset_, mask_, kh, kw, sh, sw, ph, pw, dh, dw,
                                     deform_groups, groups);
  const at::Tensor input = input_.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor offset = offset_.contiguous();
  const std::optional<at::Tensor> mask = contiguous_mask(mask_);
  const int64_t per_image = geo.c * geo.k() * geo.p();
  at::Tensor columns = at::empty({geo.n, groups, geo.p(), geo.k(), geo.cpg()}, input.options());
  MMDCN_DISPATCH(input.scalar_type(), "deform_im2col", [&] {
    const scalar_t* m = mask ? mask->data_ptr<scalar_t>() : nullptr;
    for (int64_t nn = 0; nn < geo.n; ++nn) {
      im2col_range(geo, input.data_ptr<scalar_t>() + nn * geo.h * geo.w * geo.c,
                   offset.data_ptr<scalar_t>(), m, nn, 0, geo.p(),
                   ColumnBlock<scalar_t>{columns.data_ptr<scalar_t>() + nn * per_image, 0,
                                         geo.p()});
    }
  });
  return columns;
}

// Gradients of deform_im2col given grad_columns (its output's gradient, same layout):
// (grad_input [N, C, H, W] contiguous, grad_offset [N, 2*G*K, Ho, Wo], grad_mask
// [N, G*K, Ho, Wo]), each undefined (None) when not requested.  grad_mask needs a mask.
std::tuple<at::Tensor, at::Tensor, at::Tensor> deform_col2im_backward(
    const at::Tensor& grad_columns_, const at::Tensor& input_, const at::Tensor& offset_,
    const std::optional<at::Tensor>& mask_, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
    int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t deform_groups, int64_t groups,
    bool need_input, bool need_offset, bool need_mask) {
  const Geometry geo = make_geometry(input_, offset_, mask_, kh, kw, sh, sw, ph, pw, dh, dw,
                                     deform_groups, groups);
  const int64_t per_image = geo.c * geo.k() * geo.p(), hwc = geo.h * geo.w * geo.c;
  TORCH_CHECK(grad_columns_.device().is_cpu() &&
                  grad_columns_.scalar_type() == input_.scalar_type() &&
                  grad_columns_.numel() == geo.n * per_image,
              "deform_conv_cpu: grad_columns must be a CPU tensor of the input's dtype with ",
              geo.n * per_image, " elements ([N, groups, P, K, C/groups]), got ",
              grad_columns_.sizes());
  const std::optional<at::Tensor> mask = contiguous_mask(mask_);
  TORCH_CHECK(!need_mask || mask.has_value(), "deform_conv_cpu: grad_mask needs a mask");
  const at::Tensor input = input_.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor offset = offset_.contiguous();
  const at::Tensor grad_columns = grad_columns_.contiguous();
  // Accumulate in float (double for double); bf16 results are rounded once at the end.
  const auto acc = input.options().dtype(at::toOpMathType(input.scalar_type()));
  at::Tensor gin = need_input ? at::zeros({geo.n, geo.h, geo.w, geo.c}, acc) : at::Tensor();
  at::Tensor goff = need_offset ? at::empty({geo.n, 2 * geo.dg * geo.k(), geo.ho, geo.wo}, acc)
                                : at::Tensor();
  at::Tensor gmask =
      need_mask ? at::empty({geo.n, geo.dg * geo.k(), geo.ho, geo.wo}, acc) : at::Tensor();
  MMDCN_DISPATCH(input.scalar_type(), "deform_col2im", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* m = mask ? mask->data_ptr<scalar_t>() : nullptr;
    for (int64_t nn = 0; nn < geo.n; ++nn) {
      col2im_range<scalar_t>(
          geo,
          ColumnBlock<const scalar_t>{grad_columns.data_ptr<scalar_t>() + nn * per_image, 0,
                                      geo.p()},
          input.data_ptr<scalar_t>() + nn * hwc, offset.data_ptr<scalar_t>(), m, nn, 0,
          geo.p(), need_input ? gin.data_ptr<acc_t>() + nn * hwc : nullptr,
          need_offset ? goff.data_ptr<acc_t>() : nullptr,
          need_mask ? gmask.data_ptr<acc_t>() : nullptr);
    }
  });
  const auto dtype = input.scalar_type();
  return {need_input ? gin.permute({0, 3, 1, 2}).contiguous().to(dtype) : gin,
          need_offset ? goff.to(dtype) : goff, need_mask ? gmask.to(dtype) : gmask};
}

// The deformable convolution, block by block of output positions: sample a block's
// columns, then one GEMM per conv group writes the block's outputs.  Nothing of the
// size of the whole columns is ever allocated.  Returns Tensor[N, C_out, Ho, Wo].
at::Tensor deform_conv_forward(const at::Tensor& input_, const at::Tensor& offset_,
                               const std::optional<at::Tensor>& mask_,
                               const at::Tensor& weight_, const std::optional<at::Tensor>& bias,
                               int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                               int64_t dw, int64_t deform_groups, int64_t block) {
  TORCH_CHECK(weight_.dim() == 4 && weight_.size(1) >= 1 && input_.dim() == 4 &&
                  input_.size(1) % weight_.size(1) == 0,
              "deform_conv_cpu: weight must be [C_out, C/groups, kh, kw], got ",
              weight_.sizes(), " for input ", input_.sizes());
  const int64_t groups = input_.size(1) / weight_.size(1);
  const Geometry geo = make_geometry(input_, offset_, mask_, weight_.size(2), weight_.size(3),
                                     sh, sw, ph, pw, dh, dw, deform_groups, groups);
  check_weight(weight_, bias, input_, geo);
  const at::Tensor input = input_.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor offset = offset_.contiguous();
  const std::optional<at::Tensor> mask = contiguous_mask(mask_);
  const int64_t c_out = weight_.size(0), og = c_out / groups, kcg = geo.k() * geo.cpg();
  const at::Tensor wmat = weight_matrix(weight_, geo);
  const bool has_bias = bias.has_value() && bias->defined();
  // Each output is written by exactly one GEMM: onto the bias, or (beta = 0, which
  // ignores what the memory held) from nothing.
  // A fresh tensor in every case: expand().contiguous() of a 1x1 map with a batch of
  // one is the bias itself, and the GEMM would then add into the layer's parameter.
  at::Tensor out = at::empty({geo.n, c_out, geo.ho, geo.wo}, input.options());
  if (has_bias) out.copy_(bias->view({1, c_out, 1, 1}).expand_as(out));
  const int beta = has_bias ? 1 : 0;
  const at::Tensor out_blocks = out.view({geo.n, groups, og, geo.p()});
  const int64_t stride = block_positions(geo, block, input.element_size());
  at::Tensor buffer = at::empty({groups, stride, kcg}, input.options());
  MMDCN_DISPATCH(input.scalar_type(), "deform_conv_forward", [&] {
    const scalar_t* m = mask ? mask->data_ptr<scalar_t>() : nullptr;
    for (int64_t nn = 0; nn < geo.n; ++nn) {
      for (int64_t q0 = 0; q0 < geo.p(); q0 += stride) {
        const int64_t q1 = std::min(geo.p(), q0 + stride);
        im2col_range(geo, input.data_ptr<scalar_t>() + nn * geo.h * geo.w * geo.c,
                     offset.data_ptr<scalar_t>(), m, nn, q0, q1,
                     ColumnBlock<scalar_t>{buffer.data_ptr<scalar_t>(), q0, stride});
        for (int64_t gr = 0; gr < groups; ++gr) {
          out_blocks[nn][gr].narrow(1, q0, q1 - q0).addmm_(
              wmat[gr], buffer[gr].narrow(0, 0, q1 - q0).t(), beta);
        }
      }
    }
  });
  return out;
}

// Gradients of deform_conv_forward: (grad_input, grad_offset, grad_mask, grad_weight,
// grad_bias), each undefined (None) when not requested.  Block by block of output
// positions, the columns are sampled again for the weight gradient and the columns'
// gradient goes straight into the sampling adjoint; the input gradient accumulates
// channels-last in float (double for double).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv_backward(
    const at::Tensor& grad_out_, const at::Tensor& input_, const at::Tensor& offset_,
    const std::optional<at::Tensor>& mask_, const at::Tensor& weight_, bool has_bias,
    int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
    int64_t deform_groups, int64_t block, bool need_input, bool need_offset, bool need_mask,
    bool need_weight, bool need_bias) {
  TORCH_CHECK(weight_.dim() == 4 && weight_.size(1) >= 1 && input_.dim() == 4 &&
                  input_.size(1) % weight_.size(1) == 0,
              "deform_conv_cpu: weight must be [C_out, C/groups, kh, kw], got ",
              weight_.sizes(), " for input ", input_.sizes());
  const int64_t groups = input_.size(1) / weight_.size(1);
  const Geometry geo = make_geometry(input_, offset_, mask_, weight_.size(2), weight_.size(3),
                                     sh, sw, ph, pw, dh, dw, deform_groups, groups);
  check_weight(weight_, std::nullopt, input_, geo);
  const int64_t c_out = weight_.size(0), og = c_out / groups, kcg = geo.k() * geo.cpg();
  TORCH_CHECK(grad_out_.device().is_cpu() && grad_out_.scalar_type() == input_.scalar_type() &&
                  grad_out_.dim() == 4 && grad_out_.size(0) == geo.n &&
                  grad_out_.size(1) == c_out && grad_out_.size(2) == geo.ho &&
                  grad_out_.size(3) == geo.wo,
              "deform_conv_cpu: grad_out must be a CPU tensor [N, C_out, Ho, Wo] = [", geo.n,
              ", ", c_out, ", ", geo.ho, ", ", geo.wo, "] of the input's dtype, got ",
              grad_out_.sizes());
  const std::optional<at::Tensor> mask = contiguous_mask(mask_);
  need_mask = need_mask && mask.has_value();
  const bool need_columns_grad = need_input || need_offset || need_mask;
  at::Tensor grad_input, grad_offset, grad_mask, grad_weight, grad_bias;
  if (need_bias && has_bias) grad_bias = grad_out_.sum({0, 2, 3});
  if (!(need_columns_grad || need_weight)) {
    return {grad_input, grad_offset, grad_mask, grad_weight, grad_bias};
  }
  const at::Tensor input = input_.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor offset = offset_.contiguous();
  const at::Tensor gout = grad_out_.contiguous().view({geo.n, groups, og, geo.p()});
  const at::Tensor wmat = weight_matrix(weight_, geo);
  const auto dtype = input.scalar_type();
  const auto acc = input.options().dtype(at::toOpMathType(dtype));
  const bool same_acc = at::toOpMathType(dtype) == dtype;
  const int64_t hwc = geo.h * geo.w * geo.c;
  if (need_input) grad_input = at::zeros({geo.n, geo.h, geo.w, geo.c}, acc);
  if (need_offset) grad_offset = at::empty({geo.n, 2 * geo.dg * geo.k(), geo.ho, geo.wo}, acc);
  if (need_mask) grad_mask = at::empty({geo.n, geo.dg * geo.k(), geo.ho, geo.wo}, acc);
  if (need_weight) grad_weight = at::zeros({groups, og, kcg}, acc);
  const int64_t stride = block_positions(geo, block, input.element_size());
  at::Tensor columns = need_weight ? at::empty({groups, stride, kcg}, input.options())
                                   : at::Tensor();
  at::Tensor grad_columns = need_columns_grad ? at::empty({groups, stride, kcg}, input.options())
                                              : at::Tensor();
  MMDCN_DISPATCH(dtype, "deform_conv_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* m = mask ? mask->data_ptr<scalar_t>() : nullptr;
    const scalar_t* off = offset.data_ptr<scalar_t>();
    for (int64_t nn = 0; nn < geo.n; ++nn) {
      const scalar_t* image = input.data_ptr<scalar_t>() + nn * hwc;
      for (int64_t q0 = 0; q0 < geo.p(); q0 += stride) {
        const int64_t q1 = std::min(geo.p(), q0 + stride), len = q1 - q0;
        if (need_weight) {
          im2col_range(geo, image, off, m, nn, q0, q1,
                       ColumnBlock<scalar_t>{columns.data_ptr<scalar_t>(), q0, stride});
          for (int64_t gr = 0; gr < groups; ++gr) {
            const at::Tensor g = gout[nn][gr].narrow(1, q0, len);   // [og, len]
            const at::Tensor c = columns[gr].narrow(0, 0, len);     // [len, K*cg]
            if (same_acc) {
              grad_weight[gr].addmm_(g, c);
            } else {
              grad_weight[gr].add_(at::mm(g, c));
            }
          }
        }
        if (need_columns_grad) {
          for (int64_t gr = 0; gr < groups; ++gr) {
            at::Tensor dst = grad_columns[gr].narrow(0, 0, len);
            at::mm_out(dst, gout[nn][gr].narrow(1, q0, len).t(), wmat[gr]);
          }
          col2im_range<scalar_t>(
              geo, ColumnBlock<const scalar_t>{grad_columns.data_ptr<scalar_t>(), q0, stride},
              image, off, m, nn, q0, q1,
              need_input ? grad_input.data_ptr<acc_t>() + nn * hwc : nullptr,
              need_offset ? grad_offset.data_ptr<acc_t>() : nullptr,
              need_mask ? grad_mask.data_ptr<acc_t>() : nullptr);
        }
      }
    }
  });
  if (need_input) grad_input = grad_input.permute({0, 3, 1, 2}).contiguous().to(dtype);
  if (need_offset) grad_offset = grad_offset.to(dtype);
  if (need_mask) grad_mask = grad_mask.to(dtype);
  if (need_weight) {
    grad_weight = grad_weight.view({groups, og, geo.k(), geo.cpg()})
                      .transpose(2, 3)
                      .reshape(weight_.sizes())
                      .to(dtype);
  }
  return {grad_input, grad_offset, grad_mask, grad_weight, grad_bias};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Deformable convolution CPU kernels (mmdcn_plugin/csrc/deform_conv_cpu.cpp)";
  m.def("deform_conv_forward", &deform_conv_forward,
        "Deformable convolution Tensor[N, C_out, Ho, Wo] (block: output positions per block, "
        "0 for automatic)",
        py::arg("input"), py::arg("offset"), py::arg("mask"), py::arg("weight"),
        py::arg("bias"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
        py::arg("dh"), py::arg("dw"), py::arg("deform_groups"), py::arg("block") = 0,
        py::call_guard<py::gil_scoped_release>());
  m.def("deform_conv_backward", &deform_conv_backward,
        "(grad_input, grad_offset, grad_mask, grad_weight, grad_bias) of deform_conv_forward",
        py::arg("grad_out"), py::arg("input"), py::arg("offset"), py::arg("mask"),
        py::arg("weight"), py::arg("has_bias"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
        py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("deform_groups"),
        py::arg("block"), py::arg("need_input"), py::arg("need_offset"),
        py::arg("need_mask"), py::arg("need_weight"), py::arg("need_bias"),
        py::call_guard<py::gil_scoped_release>());
  m.def("deform_im2col", &deform_im2col,
        "Channels-last deformable columns Tensor[N, groups, Ho*Wo, K, C/groups], mask "
        "applied",
        py::arg("input"), py::arg("offset"), py::arg("mask"), py::arg("kh"), py::arg("kw"),
        py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"),
        py::arg("dw"), py::arg("deform_groups"), py::arg("groups"),
        py::call_guard<py::gil_scoped_release>());
  m.def("deform_col2im_backward", &deform_col2im_backward,
        "(grad_input, grad_offset, grad_mask) from the gradient of deform_im2col's columns",
        py::arg("grad_columns"), py::arg("input"), py::arg("offset"), py::arg("mask"),
        py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
        py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("deform_groups"),
        py::arg("groups"), py::arg("need_input"), py::arg("need_offset"),
        py::arg("need_mask"), py::call_guard<py::gil_scoped_release>());
}
