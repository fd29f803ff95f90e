"""The built-in synthetic "shapes" dataset: one shape on a cluttered, noisy background.

Each example is a pure function of (seed, split, index), drawn with stateless TensorFlow ops, so the
set needs no download, no disk, any image size or count, and is identical on every machine and
every worker. The label is the shape's class and its tight box (normalized
[ymin, xmin, ymax, xmax]). It is meant to need learning: the shape's size, position and colour vary,
the background is a random gradient with noise, and bars of random colours clutter it (some the
shape's own colour); grayscale keeps a clear contrast between shape and background.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from pipelines.ops import tight_box

CLASS_NAMES = ("circle", "square", "triangle", "diamond", "cross")
SPLIT_SIZES = {"train": 4000, "validation": 500, "test": 500}
_SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}
MIN_SIZE = 16
DEFAULT_SIZE = 64
NUM_CLUTTER_BARS = 6
NOISE_STDDEV = 12.0


def render(
    index,
    *,
    height: int = DEFAULT_SIZE,
    width: int = DEFAULT_SIZE,
    channels: int = 3,
    split: str = "train",
    seed: int = 0,
) -> dict:
    """Draw example ``index``: a dict of image (H, W, C) float32 in [0, 255], label, bbox, mask."""
    return _render(stream_key(split, seed), index, height, width, channels)


def stream_key(split: str, seed: int) -> int:
    """The random stream of a (split, seed) pair: splits never share examples."""
    return _SPLIT_STREAMS[split] * 2**40 + int(seed) * 2**44


def _render(stream, index, height, width, channels) -> dict:
    key = tf.stack([tf.cast(stream, tf.int64), tf.cast(index, tf.int64)])
    k_params, k_noise, k_bars = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    u = tf.random.stateless_uniform([16], k_params)

    label = tf.minimum(tf.cast(u[0] * len(CLASS_NAMES), tf.int32), len(CLASS_NAMES) - 1)
    h, w = float(height), float(width)
    side = min(h, w)
    radius = (0.12 + 0.18 * u[1]) * side  # half-extent: the shape spans 24%..60% of the side
    cy = radius + u[2] * (h - 2 * radius)
    cx = radius + u[3] * (w - 2 * radius)
    yy, xx = tf.meshgrid(tf.range(h) + 0.5, tf.range(w) + 0.5, indexing="ij")
    dy, dx = yy - cy, xx - cx
    ady, adx = tf.abs(dy), tf.abs(dx)
    masks = tf.stack(
        [
            dy**2 + dx**2 <= radius**2,  # circle
            tf.maximum(ady, adx) <= 0.85 * radius,  # square, of an area close to the circle's
            (ady <= radius) & (adx <= (dy + radius) / 2),  # triangle, apex up
            ady + adx <= radius,  # diamond
            ((adx <= radius / 3) & (ady <= radius)) | ((ady <= radius / 3) & (adx <= radius)),  # cross
        ]
    )
    mask = tf.gather(masks, label)

    # Background and shape sit on opposite sides of mid-grey, so they differ in gray too.
    dark_background = u[4] < 0.5
    low = tf.random.stateless_uniform([2, 3], k_params + 1, 0.0, 110.0)
    high = 145.0 + tf.random.stateless_uniform([2, 3], k_params + 2, 0.0, 110.0)
    background_colours = tf.where(dark_background, low, high)
    shape_colour = tf.where(dark_background, high[0], low[0])
    angle = u[5] * 6.2832
    ramp = (tf.cos(angle) * yy / h + tf.sin(angle) * xx / w + 1.0) / 2.0
    image = (1 - ramp[..., None]) * background_colours[0] + ramp[..., None] * background_colours[1]

    # Clutter: thin horizontal or vertical bars, drawn under the shape.
    b = tf.random.stateless_uniform([NUM_CLUTTER_BARS, 8], k_bars)
    vertical = b[:, 0] < 0.5
    length = (0.1 + 0.3 * b[:, 1]) * side
    thickness = 1.0 + tf.floor(2.0 * b[:, 2])
    y0, x0 = b[:, 3] * h, b[:, 4] * w
    along = tf.where(vertical[:, None, None], yy - y0[:, None, None], xx - x0[:, None, None])
    across = tf.where(vertical[:, None, None], xx - x0[:, None, None], yy - y0[:, None, None])
    bars = (along >= 0) & (along <= length[:, None, None]) & (tf.abs(across) <= thickness[:, None, None] / 2)
    # Half the bars take the shape's colour, so colour alone does not give the shape away.
    bar_colours = tf.where(
        (b[:, 5] < 0.5)[:, None], shape_colour[None, :], 255.0 * tf.stack([b[:, 5], b[:, 6], b[:, 7]], 1)
    )
    for i in range(NUM_CLUTTER_BARS):
        image = tf.where(bars[i][..., None], bar_colours[i], image)

    image = tf.where(mask[..., None], shape_colour, image)
    image += tf.random.stateless_normal(tf.shape(image), k_noise, stddev=NOISE_STDDEV)
    image = tf.clip_by_value(image, 0.0, 255.0)
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    return {"image": image, "label": label, "bbox": tight_box(mask), "mask": mask}


@functools.cache
def materializer(*, height: int, width: int, channels: int):
    """element -> example dict (image, label, bbox), for `Dataset.map`.

    One traced function per image shape and process, which every dataset drawing that shape calls:
    the drawing is some 460 ops, and tracing them took about 0.5 s of CPU at each `Dataset.map`
    (a tiny training maps a split four or five times: train, validation, test, preview, adapt).
    """

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64)] * 2, autograph=False)
    def draw(stream, index):
        example = _render(stream, index, height, width, channels)
        example.pop("mask")
        return example

    return draw


def write_samples(directory: str, count: int = 4, *, size: int = DEFAULT_SIZE, split: str = "test") -> list[str]:
    """Write the first ``count`` examples of a split as PNG files named after their class."""
    import os

    os.makedirs(directory, exist_ok=True)
    paths = []
    for index in range(count):
        example = render(index, height=size, width=size, split=split)
        name = CLASS_NAMES[int(example["label"])]
        path = os.path.join(directory, f"{split}{index}_{name}.png")
        tf.io.write_file(path, tf.io.encode_png(tf.cast(tf.round(example["image"]), tf.uint8)))
        paths.append(path)
    return paths


def main(argv=None) -> int:
    """``python -m pipelines.shapes OUT_DIR [COUNT]``: sample images to try `trainers.predict` on."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.shapes", description="Write test images of the shapes set as PNG files."
    )
    parser.add_argument("out_dir", help="folder to write them into (created)")
    parser.add_argument("count", nargs="?", type=int, default=4, help="how many (default: 4)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"count must be at least 1, received {args.count}")
    try:
        written = write_samples(args.out_dir, args.count)
    except (OSError, tf.errors.OpError) as error:  # a folder that cannot be made or written
        parser.error(f"out_dir {args.out_dir}: cannot be written ({getattr(error, 'strerror', None) or error})")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
