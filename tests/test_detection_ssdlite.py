"""The converted SSDLite detector against TensorFlow running the original graph, and its gradients.

The reference runs in a subprocess with TensorFlow (a dev extra, never imported by the product):
it feeds the uint8 images to ``image_tensor`` and fetches the raw box encodings (``Squeeze``),
class logits (``concat_1``), sigmoid scores, anchors and the final detections.
Tolerances: raw encodings / logits |diff| < 2e-3, scores < 1e-4, anchors < 1e-6; final person
boxes with score > 0.3: IoU > 0.99 and |score diff| < 1e-3.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from campro_bench.detection import create_person_detector, person_targets
from campro_bench.detection.ssdlite import graph_path
from campro_bench.io import load_image_tensor
from campro_bench.protectors.isp import CamproISP

pytestmark = pytest.mark.realdata

IMAGES = ("000000000872.jpg", "000000000785.jpg", "000000000139.jpg")  # coco128 val, with people

TF_REFERENCE = r"""
import sys, numpy as np
from PIL import Image
import tensorflow as tf
graph_file, out_file, *images = sys.argv[1:]
graph_def = tf.compat.v1.GraphDef()
graph_def.ParseFromString(open(graph_file, "rb").read())
graph = tf.Graph()
with graph.as_default():
    tf.import_graph_def(graph_def, name="")
fetch = {"box_encodings": "Squeeze:0", "class_logits": "concat_1:0", "scores": "Postprocessor/raw_box_scores:0",
         "anchors": "Concatenate/concat:0", "boxes": "detection_boxes:0", "det_scores": "detection_scores:0",
         "num": "num_detections:0"}
result = {}
with tf.compat.v1.Session(graph=graph) as session:
    for i, path in enumerate(images):
        image = np.asarray(Image.open(path).convert("RGB"))
        values = session.run(list(fetch.values()), {"image_tensor:0": image[None]})
        for key, value in zip(fetch, values):
            result[f"{key}_{i}"] = value
np.savez(out_file, **result)
"""


@pytest.fixture(scope="module")
def detector(cache_dir: Path):
    return create_person_detector("ssdlite-mobilenetv2-coco", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def image_paths(data_root: Path) -> list[Path]:
    return [data_root / "coco128" / "images" / "val2017" / name for name in IMAGES]


@pytest.fixture(scope="module")
def tf_reference(image_paths: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow (dev extra tensorflow-cpu) is not installed")
    out = tmp_path_factory.mktemp("tf") / "reference.npz"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", TF_REFERENCE, str(graph_path()), str(out), *map(str, image_paths)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


def test_raw_outputs_match_tensorflow(detector, image_paths, tf_reference) -> None:
    assert np.abs(detector.anchors.numpy() - tf_reference["anchors_0"]).max() < 1e-6
    for i, path in enumerate(image_paths):
        with torch.no_grad():
            out = detector(load_image_tensor(path)[None])
        assert out.box_encodings.shape == (1, 1917, 4) and out.class_logits.shape == (1, 1917, 2)
        np.testing.assert_allclose(out.box_encodings.numpy(), tf_reference[f"box_encodings_{i}"], atol=2e-3)
        np.testing.assert_allclose(out.class_logits.numpy(), tf_reference[f"class_logits_{i}"], atol=2e-3)
        np.testing.assert_allclose(torch.sigmoid(out.class_logits).numpy(), tf_reference[f"scores_{i}"], atol=1e-4)


def test_final_person_boxes_match_tensorflow(detector, image_paths, tf_reference) -> None:
    confident = 0
    for i, path in enumerate(image_paths):
        image = load_image_tensor(path)[None]
        height, width = image.shape[-2:]
        (det,) = detector.detect(image, score_threshold=0.3)
        n = int(tf_reference[f"num_{i}"][0])
        ref_scores = torch.from_numpy(tf_reference[f"det_scores_{i}"][0, :n])
        ref_boxes = torch.from_numpy(tf_reference[f"boxes_{i}"][0, :n])[:, [1, 0, 3, 2]]
        ref_boxes = ref_boxes * torch.tensor([width, height, width, height])
        keep = ref_scores > 0.3
        assert len(det) == int(keep.sum())
        if len(det):
            assert float(box_iou(det.boxes, ref_boxes[keep]).diag().min()) > 0.99
            assert float((det.scores - ref_scores[keep]).abs().max()) < 1e-3
            assert det.labels.eq(1).all()
        confident += len(det)
    assert confident >= 3  # the images do hold confidently detected people


def test_detection_loss_decreases_over_sgd_steps(detector, image_paths, data_root: Path) -> None:
    import copy

    from campro_bench.datasets.coco import load_coco128

    val = load_coco128(data_root, "val")
    index = [r.path.name for r in val.images].index(IMAGES[0])
    image = val.load_image(index)[None]
    targets = person_targets([val.boxes(index)])
    model = copy.deepcopy(detector).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        parts = model.loss_components(image, targets)
        assert set(parts) == {"cls", "box", "total"}
        assert torch.allclose(parts["total"], parts["cls"] + parts["box"])
        optimizer.zero_grad()
        parts["total"].backward()
        optimizer.step()
        losses.append(float(parts["total"].detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    # batch norms keep their statistics in training mode
    assert all(not m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_gradients_reach_all_41_isp_parameters(detector, image_paths, data_root: Path) -> None:
    from campro_bench.datasets.coco import load_coco128

    val = load_coco128(data_root, "val")
    index = [r.path.name for r in val.images].index(IMAGES[0])
    isp = CamproISP(preset="standard")
    loss = detector.loss(isp(val.load_image(index)[None]), person_targets([val.boxes(index)]))
    loss.backward()
    grads = torch.cat([isp.ccm.grad.flatten(), isp.lut.grad.flatten()])
    assert grads.numel() == 41
    assert bool((grads != 0).all()), f"zero gradient at {torch.nonzero(grads == 0).flatten().tolist()}"
    assert bool(torch.isfinite(grads).all())
