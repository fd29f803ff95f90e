"""Image folders and files as a hostile (or unlucky) user hands them over: decompression bombs,
links out of the dataset, folders that cannot be read. Each ends in a one-line DataError naming
the thing, or a counted skip, before anything is decoded."""

import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import pipelines
from pipelines.errors import DataError
from pipelines.sources import folders
from zoo.common import MAX_IMAGE_PIXELS


def write_jpeg(path, seed=0, size=(12, 12)):
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    tf.io.write_file(str(path), tf.io.encode_jpeg(pixels))


def write_bomb(path, width=23000, height=23000):
    """A small PNG whose header declares ``width`` x ``height`` pixels (its IHDR rewritten, CRC
    included): what a decompression bomb looks like to anything that reads the header."""
    png = bytearray(tf.io.encode_png(np.zeros((8, 8, 1), np.uint8)).numpy())
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    path.write_bytes(bytes(png))


def pets(root, per_class=3):
    for label, seed in (("cats", 0), ("dogs", 10)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            write_jpeg(root / label / f"{i}.jpg", seed=seed + i)
    return root


def test_headers_tell_the_size_of_every_format_without_decoding(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)  # 30 high, 20 wide
    cases = 0
    for name, save in (
        ("a.jpg", lambda p: tf.io.write_file(p, tf.io.encode_jpeg(pixels))),
        ("b.png", lambda p: tf.io.write_file(p, tf.io.encode_png(pixels))),
        ("c.gif", lambda p: Image.fromarray(pixels).save(p)),
        ("d.bmp", lambda p: Image.fromarray(pixels).save(p)),
        ("e.jpg", lambda p: Image.fromarray(pixels).save(p, exif=Image.Exif())),  # APP1 before the frame
    ):
        path = str(tmp_path / name)
        save(path)
        kind, dimensions, problem = folders.inspect_image_file(path)
        assert (dimensions, problem) == ((20, 30), None), (name, kind)
        cases += 1
    assert cases == 5


def test_a_decompression_bomb_is_refused_before_decoding_or_skipped_and_counted(tmp_path, caplog):
    root = pets(tmp_path / "pets")
    write_bomb(root / "cats" / "huge.png")
    with pytest.raises(DataError, match=r"huge.png' declares 23000x23000 = 529,000,000 pixels, over max_image_pixels"):
        pipelines.load(f"dir:{root}", "train+validation+test", image_size=16)
    _, info = pipelines.load(f"dir:{root}", "train+validation+test", image_size=16, skip_bad_files=True)
    assert info.num_examples == 6 and "skipped 1 bad file(s)" in caplog.text
    # A limit above it lets the header through (the file itself is then up to the decoder).
    assert folders.check_image_file(str(root / "cats" / "huge.png"), max_pixels=10**9) is None
    assert "declares 23000x23000" in folders.check_image_file(str(root / "cats" / "huge.png"))
    assert MAX_IMAGE_PIXELS == 89_478_485  # Pillow's limit
    with pytest.raises(DataError, match=r"huge.png' declares 23000x23000"):
        pipelines.check_image_paths([str(root / "cats" / "0.jpg"), str(root / "cats" / "huge.png")])


def test_a_link_out_of_the_dataset_is_refused_unless_asked_for(tmp_path):
    root = pets(tmp_path / "pets")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_jpeg(elsewhere / "bird.jpg", seed=99)
    os.symlink(str(elsewhere), root / "cats" / "more")
    with pytest.raises(DataError, match=r"more' is a link to .*elsewhere', outside the dataset's folder"):
        pipelines.load(f"dir:{root}", "train+validation+test", image_size=16)
    _, info = pipelines.load(f"dir:{root}", "train+validation+test", image_size=16, follow_links=True)
    assert info.num_examples == 7
    os.remove(root / "cats" / "more")
    os.symlink("/", root / "dogs" / "everything")  # would walk the whole disk
    with pytest.raises(DataError, match=r"everything' is a link to '/', outside the dataset's folder"):
        pipelines.load(f"dir:{root}", "train", image_size=16)
    os.remove(root / "dogs" / "everything")
    os.symlink(str(elsewhere / "bird.jpg"), root / "dogs" / "bird.jpg")  # a file, too
    with pytest.raises(DataError, match=r"bird.jpg' is a link to .*elsewhere/bird.jpg', outside"):
        pipelines.load(f"dir:{root}", "train", image_size=16)


def test_a_folder_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    root = pets(tmp_path / "pets")
    locked = str(root / "dogs")
    real_scandir = os.scandir

    def scandir(path="."):  # as root, permissions cannot lock a folder: refuse it here instead
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match=rf"folder '{locked}' cannot be read \(Permission denied\)"):
        pipelines.load(f"dir:{root}", "train", image_size=16)
