"""``campro-bench train isp`` end to end: tiny registered attacker, real detector, real data paths.

The face dataset is a tiny identity folder (synthetic faces, aligned by the real MTCNN pipeline
with its centre fallback); persons come from coco128 with the real SSDLite detector. Also: the
real facenet-casia attacker for a couple of protector steps, and one-line errors for bad options.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from campro_bench.cli.main import main
from campro_bench.protectors import build_protector
from campro_bench.protectors.isp import ISPParams
from campro_bench.registries import FACE_RECOGNIZERS

from test_training_isp import TinyAttacker, toy_config  # noqa: E402  (tests/ is on sys.path)

ATTACKER = "tiny-cli-attacker"


@pytest.fixture()
def tiny_attacker():
    contract = TinyAttacker(size=160).contract
    FACE_RECOGNIZERS.add(ATTACKER, lambda models_dir, cache_dir, device: TinyAttacker(size=160),
                         origin="tests", contract=contract)
    yield ATTACKER
    FACE_RECOGNIZERS.remove(ATTACKER)


@pytest.fixture()
def face_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for k in range(4):
        colour = rng.uniform(40, 220, size=3)
        (root / f"person{k}").mkdir(parents=True)
        for j in range(4):
            img = np.clip(colour + rng.normal(0, 12, size=(64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"person{k}" / f"{j}.png")
    return root


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.realdata
def test_train_isp_cli_writes_a_loadable_parameter_file(
    tiny_attacker: str, face_folder: Path, tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"

    def args(iterations: int) -> list[str]:
        return ["train", "isp", "--attacker", tiny_attacker, "--face-dataset", f"identity-folder:folder={face_folder}",
                "--max-person-images", "3", "--person-batch-size", "1", "--batch-size", "4",
                "--iterations", str(iterations), "--warmup-max-epochs", "1", "--lr-isp", "0.01", "--val-every", "1",
                "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]

    status, stdout, err = run_cli(args(2), capsys)
    assert status == 0, err
    summary = json.loads(stdout)
    assert summary["iterations"] == 2 and 0.0 <= summary["final_val"]["val_acc_protected"] <= 1.0
    params = ISPParams.load(out / "isp.json")
    assert params.metadata["attacker"] == tiny_attacker and params.metadata["omega"] == 0.2
    assert params.lut != ISPParams.standard().lut  # two protector steps moved the LUT
    protector = build_protector(f"campro-isp:params={out / 'isp.json'}")
    assert protector(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["faces"]["identities"] == 4 and manifest["data"]["faces"]["val_images"] == 4
    assert manifest["data"]["persons"]["dataset"] == "coco128" and manifest["data"]["persons"]["images"] == 3
    assert '"root":' not in json.dumps(manifest["data"])  # no data-root paths
    # a second run into the same folder must not overwrite it ...
    status, _, err = run_cli(args(2), capsys)
    assert status == 2 and "already holds a training run" in err and len(err.strip().splitlines()) == 1
    # ... but --resume with more iterations continues it
    status, stdout, err = run_cli([*args(3), "--resume"], capsys)
    assert status == 0, err
    assert json.loads(stdout)["iterations"] == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--omega", "-1"], "key 'omega': input should be greater than or equal to 0"),
        (["--m", "0"], "key 'm': input should be greater than or equal to 1"),
        (["--iterations", "-1"], "key 'iterations': input should be greater than or equal to 0"),
        (["--attacker", "no-such-model"], "unknown face recognizer 'no-such-model'"),
        (["--init", "no-such-preset"], "unknown ISP preset 'no-such-preset'"),
        (["--resume"], "no checkpoint"),
    ],
)
def test_bad_options_fail_with_one_line(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(["train", "isp", "--out", str(tmp_path / "x"), "--device", "cpu", *extra], capsys)
    assert status == 2
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    assert message in err


def test_real_facenet_casia_protector_step(tmp_path: Path) -> None:
    """Two protector steps through the real attacker and detector: finite losses, C moves, F fixed."""
    from campro_bench.detection import create_person_detector
    from campro_bench.recognizers import create_face_recognizer
    from campro_bench.training.data import FaceTrainingData, PersonTrainingData
    from campro_bench.training.isp import ISPTrainer

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(8, 160, 160, 3), dtype=np.uint8)
    faces = FaceTrainingData(crops[:6], np.array([0, 0, 0, 1, 1, 1]), crops[6:], np.array([0, 1]), ["a", "b"])
    persons = PersonTrainingData(torch.rand(2, 3, 300, 300), [torch.tensor([[50.0, 40.0, 150.0, 260.0]])] * 2)
    config = toy_config(attacker="facenet-casia", person_detector="ssdlite-mobilenetv2-coco", batch_size=2,
                        person_batch_size=1, warmup_max_epochs=0, lr_isp=1e-3, protector_only=True, omega=0.0)
    attacker = create_face_recognizer("facenet-casia")
    trainer = ISPTrainer(config, faces, persons, attacker, create_person_detector("ssdlite-mobilenetv2-coco"), tmp_path)
    with torch.no_grad():
        trainer.head.linear.weight.copy_(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    weights = {k: v.clone() for k, v in trainer.attacker.state_dict().items()}
    detector = {k: v.clone() for k, v in trainer.detector.state_dict().items()}
    rows = [trainer.protector_step() for _ in range(2)]
    assert all(np.isfinite([r["l_ns"], r["l_det"], r["ce_protected"]]).all() for r in rows)
    # omega = 0: only L_ns, back-propagated through facenet-casia, moved C (every CCM entry)
    assert bool((trainer.isp.ccm.detach() - torch.eye(3)).abs().min() > 1e-4)
    assert all(torch.equal(v, trainer.attacker.state_dict()[k]) for k, v in weights.items())  # F fixed
    assert any(not torch.equal(v, trainer.detector.state_dict()[k]) for k, v in detector.items())  # P trained on L_det
