"""Build a real TFDS dataset on disk from sklearn's digits: `python tfds_digits_builder.py DATA_DIR`.

Run in its own process, so the process that loads it has no builder code: tensorflow-datasets
must find it from its files alone, as a user's prepared `~/tensorflow_datasets` is found.
"""

import sys

import numpy as np
import tensorflow_datasets as tfds


class DigitsLocal(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(8, 8, 1)),
                                               "label": tfds.features.ClassLabel(num_classes=10)})
        return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 150), "test": self._generate_examples(150, 200)}

    def _generate_examples(self, start, stop):
        from sklearn.datasets import load_digits

        d = load_digits()
        for i in range(start, stop):
            yield i, {"image": (d.images[i] * 255 / 16).astype(np.uint8)[..., None], "label": int(d.target[i])}


if __name__ == "__main__":
    DigitsLocal(data_dir=sys.argv[1]).download_and_prepare()
