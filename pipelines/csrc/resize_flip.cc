// ZooResizeFlip: uint8 (H, W, C) image -> float32 (h, w, C), bilinearly resized and, when `flip`
// is true, mirrored left-right: one pass for what TF spells as three (tf.cast, tf.image.resize,
// tf.reverse), each of which reads and writes the whole image.
//
// The result is TF's `tf.image.resize(tf.cast(image, tf.float32), size)` (bilinear, half-pixel
// centres, no antialiasing), then `tf.reverse(..., [1])` if `flip`: the same sampling positions
// and weights; it differs only in rounding (TF interpolates along x first, this along y first, so
// the float32 results differ by a few ulps: at most ~3e-5 for pixel values up to 255).
// pipelines/fused.py builds it against the installed TF and falls back to the TF ops without it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace zoo {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
namespace si = ::tensorflow::shape_inference;

// One output coordinate's two source pixels and the weight of the second, as TF computes them
// (resize_bilinear_op.cc, HalfPixelScaler): in = (i + 0.5) * in_size / out_size - 0.5.
struct Lerp {
  int64_t lower;
  int64_t upper;
  float lerp;
};

std::vector<Lerp> Weights(int64_t out_size, int64_t in_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  std::vector<Lerp> weights(out_size);
  for (int64_t i = 0; i < out_size; ++i) {
    const float in = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float in_floor = std::floor(in);
    Lerp& w = weights[i];
    w.lower = std::max(static_cast<int64_t>(in_floor), int64_t{0});
    w.upper = std::min(static_cast<int64_t>(std::ceil(in)), in_size - 1);
    // TF computes a + (b - a) * lerp with b == a at the borders, which is exactly a; reading
    // pixel lower + 1 with weight 0 gives the same a and lets every x read two adjacent pixels.
    w.lerp = (w.upper == w.lower) ? 0.f : in - in_floor;
  }
  return weights;
}

// Runtime dispatch on x86-64: an AVX2 clone and a baseline one, picked when the library loads.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ZOO_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ZOO_TARGET_CLONES
#endif

ZOO_TARGET_CLONES
void ResizeFlip(const uint8_t* in, int64_t in_height, int64_t in_width, int64_t channels,
                const std::vector<Lerp>& ys, const std::vector<Lerp>& xs, float* out) {
  typedef float Float4 __attribute__((vector_size(16)));
  const int64_t row = in_width * channels;
  const int64_t out_height = static_cast<int64_t>(ys.size());
  const int64_t out_width = static_cast<int64_t>(xs.size());
  // One interpolated row, plus a copy of its last pixel (for `lower + 1` at the right border)
  // and one float so a 4-wide load at the last pixel stays inside.
  std::vector<float> blended(row + channels + 1, 0.f);
  float* t = blended.data();
  for (int64_t y = 0; y < out_height; ++y) {
    // Along y: two source rows -> one float row (contiguous, so the compiler vectorizes it).
    const uint8_t* top = in + ys[y].lower * row;
    const uint8_t* bottom = in + ys[y].upper * row;
    const float ly = ys[y].lerp;
    for (int64_t i = 0; i < row; ++i) {
      const float a = top[i];
      t[i] = a + (static_cast<float>(bottom[i]) - a) * ly;
    }
    for (int64_t c = 0; c < channels; ++c) t[row + c] = t[row - channels + c];
    // Along x, in output order (`xs` is already mirrored for a flip).
    float* dst = out + y * out_width * channels;
    if (channels == 3) {
      // One 4-wide lerp per pixel; lane 3 spills into the next pixel, which overwrites it. The
      // image's very last pixel has no next pixel, so it is written lane by lane.
      const int64_t wide = (y == out_height - 1) ? out_width - 1 : out_width;
      int64_t x = 0;
      for (; x < wide; ++x, dst += 3) {
        const float* left = t + xs[x].lower * 3;
        Float4 a, b;
        __builtin_memcpy(&a, left, sizeof a);
        __builtin_memcpy(&b, left + 3, sizeof b);
        const Float4 r = a + (b - a) * xs[x].lerp;
        __builtin_memcpy(dst, &r, sizeof r);
      }
      for (; x < out_width; ++x, dst += 3) {
        const float* left = t + xs[x].lower * 3;
        for (int c = 0; c < 3; ++c) dst[c] = left[c] + (left[3 + c] - left[c]) * xs[x].lerp;
      }
    } else {
      for (int64_t x = 0; x < out_width; ++x, dst += channels) {
        const float* left = t + xs[x].lower * channels;
        const float lx = xs[x].lerp;
        for (int64_t c = 0; c < channels; ++c) {
          dst[c] = left[c] + (left[channels + c] - left[c]) * lx;
        }
      }
    }
  }
}

class ResizeFlipOp : public OpKernel {
 public:
  explicit ResizeFlipOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& image = context->input(0);
    const Tensor& size = context->input(1);
    const Tensor& flip = context->input(2);
    OP_REQUIRES(context, image.dims() == 3,
                InvalidArgument("image must be (height, width, channels), got shape ",
                                image.shape().DebugString()));
    OP_REQUIRES(context, size.dims() == 1 && size.NumElements() == 2,
                InvalidArgument("size must be [height, width], got shape ",
                                size.shape().DebugString()));
    OP_REQUIRES(context, flip.dims() == 0,
                InvalidArgument("flip must be a scalar, got shape ", flip.shape().DebugString()));
    const int64_t in_height = image.dim_size(0);
    const int64_t in_width = image.dim_size(1);
    const int64_t channels = image.dim_size(2);
    const auto out_size = size.vec<int32_t>();
    const int64_t out_height = out_size(0);
    const int64_t out_width = out_size(1);
    OP_REQUIRES(context, out_height > 0 && out_width > 0,
                InvalidArgument("size must be positive, got [", out_height, ", ", out_width, "]"));
    OP_REQUIRES(context, in_height > 0 && in_width > 0,
                InvalidArgument("cannot resize an empty image of shape ",
                                image.shape().DebugString()));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({out_height, out_width, channels}), &output));
    if (channels == 0) return;
    const std::vector<Lerp> ys = Weights(out_height, in_height);
    std::vector<Lerp> xs = Weights(out_width, in_width);
    if (flip.scalar<bool>()()) std::reverse(xs.begin(), xs.end());
    ResizeFlip(image.flat<uint8_t>().data(), in_height, in_width, channels, ys, xs,
               output->flat<float>().data());
  }
};

}  // namespace

REGISTER_OP("ZooResizeFlip")
    .Input("image: uint8")
    .Input("size: int32")
    .Input("flip: bool")
    .Output("resized: float")
    .SetShapeFn([](si::InferenceContext* c) {
      si::ShapeHandle image;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &image));
      si::ShapeHandle size;
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(1, &size));
      TF_RETURN_IF_ERROR(c->WithRank(size, 2, &size));
      si::ShapeHandle flip;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 0, &flip));
      c->set_output(0, c->MakeShape({c->Dim(size, 0), c->Dim(size, 1), c->Dim(image, 2)}));
      return absl::OkStatus();
    })
    .Doc("Bilinear resize (half-pixel centres) of a uint8 image to float32, mirrored if flip.");

REGISTER_KERNEL_BUILDER(Name("ZooResizeFlip").Device(::tensorflow::DEVICE_CPU), ResizeFlipOp);

}  // namespace zoo
