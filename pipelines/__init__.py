"""pipelines: image sources -> batched, preprocessed, augmented tf.data datasets.

import pipelines
train, info = pipelines.load("shapes", "train", task="localize", image_size=64,
                             batch_size=32, training=True, augment=("crop", "flip"), seed=0)
test, _ = pipelines.load("tf_flowers", "test", image_size=224, central_crop=True)
folder, _ = pipelines.load("dir:photos", "train[:80%]", image_size=128)
"""

from zoo import compat
from zoo.common import lazy_exports

# Every pipeline is TensorFlow: start it quietly (TF_CPP_MIN_LOG_LEVEL obeyed), before a module
# of this package imports it.
compat.start_tensorflow_quietly()

# Loaded on first use (PEP 562), so `python -m pipelines.shapes` / `python -m pipelines.fused` run
# their module once, as __main__, instead of after the package has already imported it.
_EXPORTS = {
    "AUGMENTATIONS": "ops",
    "check_image_paths": "images",
    "DataError": "errors",
    "DatasetInfo": "core",
    "dataset_options": "core",
    "image_folder": "sources",
    "decode": "ops",
    "distribute": "core",
    "load": "core",
    "load_images": "images",
    "resumable": "core",
    "sample_photo_paths": "images",
    "sample_photos": "images",
    "SettingError": "errors",
    "undecodable": "core",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
