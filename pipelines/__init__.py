"""pipelines: image sources -> batched, preprocessed, augmented tf.data datasets.

    import pipelines
    train, info = pipelines.load("shapes", "train", task="localize", image_size=64,
                                 batch_size=32, training=True, augment=("crop", "flip"), seed=0)
    test, _ = pipelines.load("tf_flowers", "test", image_size=224, central_crop=True)
    folder, _ = pipelines.load("dir:photos", "train[:80%]", image_size=128)
"""

from pipelines.core import DatasetInfo, decode, distribute, load
from pipelines.ops import AUGMENTATIONS
from pipelines.sources import DataError

__all__ = ["AUGMENTATIONS", "DataError", "DatasetInfo", "decode", "distribute", "load"]
