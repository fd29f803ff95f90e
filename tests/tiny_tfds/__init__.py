"""Two tiny local TFDS builders (a package: TFDS looks for a builder's files beside its module).

`zoo_tiny_images` prepares 40 training and 6 test images of two classes from memory: the first-use
download-and-prepare path, offline. `zoo_unreachable_images` fails as a download without network
does (TFDS itself retries the URL for minutes first; the failure is raised at once here).
"""

import numpy as np
import tensorflow_datasets as tfds


class ZooTinyImages(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(8, 8, 3)), "label": tfds.features.ClassLabel(names=["a", "b"])}
            )
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40), "test": self._generate_examples(6)}

    def _generate_examples(self, count):
        rng = np.random.default_rng(count)
        for index in range(count):
            yield index, {"image": rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), "label": index % 2}


class ZooUnreachableImages(ZooTinyImages):
    def _split_generators(self, dl_manager):
        raise ConnectionError("HTTPSConnectionPool(host='example.org'): Max retries exceeded")


class ZooTinyBoxes(tfds.core.GeneratorBasedBuilder):
    """24 training and 8 test images of two classes, each with one box (train and test only)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(32, 32, 3)),
                    "label": tfds.features.ClassLabel(names=["left", "right"]),
                    "bbox": tfds.features.BBoxFeature(),
                }
            )
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(24), "test": self._generate_examples(8)}

    def _generate_examples(self, count):
        rng = np.random.default_rng(count)
        for index in range(count):
            image = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            left = 2 + 16 * (index % 2)
            image[8:24, left : left + 12] = 230
            box = tfds.features.BBox(8 / 32, left / 32, 24 / 32, (left + 12) / 32)
            yield index, {"image": image, "label": index % 2, "bbox": box}
