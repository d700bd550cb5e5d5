"""The YOLO ONNX loader, on synthetic ONNX models with the ultralytics v5 / v8 interface."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from campro_bench.detection import NotDifferentiableError, create_person_detector
from campro_bench.detection.yolo_onnx import LETTERBOX_FILL, letterbox, letterbox_params, load_yolo_onnx
from campro_bench.errors import MissingFileError

pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package (dev extra)")
# the TorchScript ONNX exporter is deprecated in torch but needs no onnxscript
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# rows: cx, cy, w, h (network pixels), objectness, 80 class scores
PERSON = (320.0, 320.0, 100.0, 200.0, 0.9, 0.95)  # objectness, person score
DUPLICATE = (322.0, 322.0, 100.0, 200.0, 0.3, 0.80)  # IoU ~0.96 with PERSON, lower score: suppressed
CAR = (100.0, 100.0, 50.0, 50.0, 0.9, 0.0)  # class 2 (car) only: not a person


class SyntheticYolo(nn.Module):
    """Fixed predictions; the objectness of the first row is the mean of the input's top-left
    pixel, which for a landscape image is letterbox padding (114/255): it checks preprocessing."""

    def __init__(self, version: str) -> None:
        super().__init__()
        rows = torch.zeros(3, 85)
        for i, (cx, cy, w, h, obj, person) in enumerate((PERSON, DUPLICATE, CAR)):
            rows[i, :5] = torch.tensor([cx, cy, w, h, obj])
            rows[i, 5] = person
        rows[2, 5 + 2] = 0.99
        self.register_buffer("rows", rows)
        self.version = version

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.rows.clone()
        rows[0, 4] = x[:, :, 0, 0].mean()
        out = rows[None].expand(x.shape[0], -1, -1)
        if self.version == "v8":  # no objectness column, channels first: [N, 84, boxes]
            scores = out[..., 5:] * out[..., 4:5]
            out = torch.cat([out[..., :4], scores], -1).transpose(1, 2)
        return out


def export(tmp_path: Path, version: str, name: str) -> Path:
    path = tmp_path / name
    torch.onnx.export(
        SyntheticYolo(version), (torch.zeros(1, 3, 640, 640),), str(path), dynamo=False,
        input_names=["images"], output_names=["output0"],
    )
    return path


@pytest.mark.parametrize("version", ["v5", "v8"])
def test_yolo_onnx_detects_letterboxed_person_boxes(tmp_path: Path, version: str) -> None:
    path = export(tmp_path, version, f"yolo{version}.onnx")
    detector = load_yolo_onnx(path)
    image = torch.rand(1, 3, 480, 640, generator=torch.Generator().manual_seed(0))
    (det,) = detector.detect(image, score_threshold=0.01)
    # 480x640 -> scale 1, 80 px of padding above: the box moves up by 80 px
    assert len(det) == 1  # duplicate suppressed, car ignored
    assert det.boxes[0].tolist() == pytest.approx([270.0, 140.0, 370.0, 340.0], abs=1e-3)
    assert det.labels.tolist() == [1]
    assert float(det.scores[0]) == pytest.approx(LETTERBOX_FILL * 0.95, abs=1e-5)
    with pytest.raises(NotDifferentiableError, match="outside torch"):
        detector.loss(image, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}])


def test_yolo_boxes_map_back_through_scaling(tmp_path: Path) -> None:
    detector = load_yolo_onnx(export(tmp_path, "v5", "yolov5.onnx"), output_format="v5")
    image = torch.rand(2, 3, 1280, 960)  # portrait, scale 0.5, 80 px padding left and right
    ratio, new_h, new_w, top, left = letterbox_params(1280, 960, (640, 640))
    assert (ratio, new_h, new_w, top, left) == (0.5, 640, 480, 0, 80)
    dets = detector.detect(image)
    assert len(dets) == 2  # the fixed batch of 1 is run per image
    assert dets[1].boxes[0].tolist() == pytest.approx([(270 - 80) * 2, 220 * 2, (370 - 80) * 2, 420 * 2], abs=1e-3)


def test_letterbox_keeps_aspect_and_pads_grey() -> None:
    out = letterbox(torch.ones(1, 3, 100, 200), (64, 64))
    assert out.shape == (1, 3, 64, 64)
    assert torch.allclose(out[0, :, 0, 0], torch.full((3,), LETTERBOX_FILL))
    assert torch.allclose(out[0, :, 32, 32], torch.ones(3))


def test_missing_yolo_file_names_file_and_models_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError) as info:
        create_person_detector("yolov5m-onnx", models_dir=tmp_path)
    message = str(info.value)
    assert "yolov5m.onnx" in message and str(tmp_path) in message
    with pytest.raises(MissingFileError, match="nothing.onnx"):
        load_yolo_onnx(tmp_path / "nothing.onnx")


def test_registered_yolo_reads_the_models_folder(tmp_path: Path) -> None:
    export(tmp_path, "v8", "yolov8m.onnx")
    detector = create_person_detector("yolov8m-onnx", models_dir=tmp_path)
    assert detector.name == "yolov8m-onnx" and not detector.differentiable
    assert len(detector.detect(torch.rand(1, 3, 640, 640))[0]) == 1
