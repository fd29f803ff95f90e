"""The fused resize+flip kernel: TF's result, eagerly and in tf.data, its build, and the fallback."""

import os

import numpy as np
import pytest
import tensorflow as tf

import pipelines
from pipelines import fused, ops
from tests.conftest import skip_without_kernel

# The kernel interpolates along y first, TF along x first: a few float32 ulps apart on 0..255.
ATOL = 1e-4


@pytest.fixture(scope="module")
def kernel():
    """The kernel `make install` built; without it these tests are skipped with the reason (CI fails)."""
    module, reason = fused.status()
    if module is None:
        skip_without_kernel(reason)
    return module


@pytest.fixture
def without_kernel(monkeypatch):
    monkeypatch.setenv(fused.DISABLE_VARIABLE, "0")


def random_image(shape, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8))


CASES = [
    ((299, 299, 3), (224, 224)),  # the training crop -> 224
    ((300, 451, 3), (224, 224)),  # wide, stronger along x
    ((37, 50, 1), (64, 20)),  # gray, up along y, down along x
    ((5, 7, 3), (3, 9)),
    ((1, 1, 3), (4, 4)),  # one pixel: every weight is at a border
    ((6, 4, 4), (5, 9)),  # four channels: the general path
    ((9, 9, 2), (9, 9)),  # same size
]


@pytest.mark.parametrize("shape,size", CASES)
@pytest.mark.parametrize("flip", [False, True])
def test_kernel_gives_tf_resize_then_reverse(kernel, shape, size, flip):
    image = random_image(shape)
    want = tf.image.resize(tf.cast(image, tf.float32), size)
    if flip:
        want = tf.reverse(want, [1])
    got = kernel.zoo_resize_flip(image, size, flip)
    assert got.dtype == tf.float32 and got.shape == (*size, shape[-1])
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_kernel_eager_equals_tf_data_map_with_unknown_shapes(kernel):
    images = [random_image((30 + i, 41 - i, 3), seed=i) for i in range(4)]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((image, i % 2 == 1) for i, image in enumerate(images)),
        output_signature=(tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.bool)),
    ).map(lambda image, flip: fused.resize_flip(image, [16, 24], flip), num_parallel_calls=2)
    count = 0
    for i, got in enumerate(dataset):
        assert got.shape == (16, 24, 3)  # static shape inference: size is a constant
        np.testing.assert_array_equal(got, fused.resize_flip(images[i], [16, 24], i % 2 == 1))
        count += 1
    assert count == len(images)


def test_kernel_rejects_bad_input_with_a_message(kernel):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"size must be positive, got \[0, 5\]"):
        kernel.zoo_resize_flip(random_image((4, 4, 3)), [0, 5], False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"cannot resize an empty image"):
        kernel.zoo_resize_flip(tf.zeros([0, 4, 3], tf.uint8), [2, 2], False)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"rank 3|must be \(height"):
        kernel.zoo_resize_flip(tf.zeros([4, 4], tf.uint8), [2, 2], False)
    with pytest.raises(TypeError, match=r"uint8 images, received float32"):
        fused.resize_flip(tf.zeros([4, 4, 3]), [2, 2])


def test_turned_off_it_is_exactly_the_tf_ops(without_kernel):
    assert fused.kernel() is None
    image = random_image((40, 30, 3))
    for flip in (False, True):
        want = tf.image.resize(tf.cast(image, tf.float32), (20, 25))
        want = tf.reverse(want, [1]) if flip else want
        np.testing.assert_array_equal(fused.resize_flip(image, (20, 25), flip), want)


def test_resize_with_flip_mirrors_pixels_and_box_like_random_flip(kernel):
    image, box = random_image((48, 60, 3)), tf.constant([0.1, 0.2, 0.5, 0.3])
    seed = tf.constant([5, 7], tf.int64)
    flip = ops.flip_decision(seed)
    got_image, got_box = ops.resize(image, box, size=(24, 30), flip=flip)
    want_image, want_box = ops.random_flip(*ops.resize(image, box, size=(24, 30)), seed=seed)
    np.testing.assert_allclose(got_image, want_image, atol=ATOL)
    np.testing.assert_array_equal(got_box, want_box)


def write_jpegs(root, count=8):
    rng = np.random.default_rng(3)
    for i in range(count):
        folder = os.path.join(root, f"c{i % 2}")
        os.makedirs(folder, exist_ok=True)
        image = rng.integers(0, 256, (40 + 3 * i, 52 - 2 * i, 3)).astype(np.uint8)
        tf.io.write_file(os.path.join(folder, f"{i}.jpg"), tf.io.encode_jpeg(image))


@pytest.mark.parametrize("training", [False, True])
def test_pipelines_give_the_same_batches_with_and_without_the_kernel(kernel, tmp_path, monkeypatch, training):
    write_jpegs(str(tmp_path))

    def batches():
        dataset, _ = pipelines.load(
            f"dir:{tmp_path}",
            "train+validation+test",
            image_size=(20, 28),
            batch_size=4,
            training=training,
            augment="crop,flip",
            seed=11,
        )
        return [(x.numpy(), y.numpy()) for x, y in dataset]

    with_kernel = batches()
    monkeypatch.setenv(fused.DISABLE_VARIABLE, "0")
    without = batches()
    assert len(with_kernel) == len(without) == 2
    for (x1, y1), (x2, y2) in zip(with_kernel, without):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_allclose(x1, x2, atol=ATOL)


@pytest.mark.slow
def test_build_compiles_for_the_installed_tf(tmp_path):
    if fused.compiler() is None:
        skip_without_kernel("no C++ compiler")
    path = fused.build(tmp_path / "lib.so")
    assert path.read_bytes()[:4] == b"\x7fELF"
    assert os.listdir(tmp_path) == ["lib.so"]  # nothing half-written left behind


def test_build_failures_say_why_and_leave_nothing(tmp_path, monkeypatch):
    with pytest.raises(fused.BuildError, match=r"false failed \(exit 1\)"):
        fused.build(tmp_path / "lib.so", cxx="false")
    with pytest.raises(fused.BuildError, match=r"could not run /no/such/compiler"):
        fused.build(tmp_path / "lib.so", cxx="/no/such/compiler")
    assert os.listdir(tmp_path) == []
    with pytest.raises(fused.BuildError, match=r"cannot write the library to /proc/no-such-dir"):
        fused.build("/proc/no-such-dir/lib.so", cxx="false")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(fused.BuildError, match=r"no C\+\+ compiler found"):
        fused.build(tmp_path / "lib.so")


def test_command_line_status_and_optional_build(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(fused.DISABLE_VARIABLE, "0")
    assert fused.main(["status"]) == 0
    assert "tf.image.resize + tf.reverse (ZOO_FUSED_OPS=0)" in capsys.readouterr().out
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setattr(fused, "library_path", lambda directory=None: tmp_path / "lib.so")
    assert fused.main(["build"]) == 1
    assert fused.main(["build", "--optional"]) == 0
    err = capsys.readouterr().err
    assert "fused kernel not built: false failed" in err and "will use tf.image.resize" in err


def test_tracing_a_pipeline_gives_no_autograph_warning(tmp_path, capfd, caplog):
    # AutoGraph converts what a map function calls; the kernel's loading code must stay plain
    # Python (it once made AutoGraph warn that it could not read os.path.exists's source).
    write_jpegs(str(tmp_path), count=2)
    dataset, _ = pipelines.load(
        f"dir:{tmp_path}",
        "train+validation+test",
        image_size=8,
        batch_size=2,
        training=True,
        augment="crop,flip",
        seed=0,
    )
    next(iter(dataset))
    captured = capfd.readouterr()
    said = captured.err + captured.out + caplog.text
    assert "could not transform" not in said and "Unable to locate the source code" not in said
