"""Adversarial ISP training (Algorithm 1) at toy scale: tiny attacker and detector, synthetic data.

The trainer code paths are the real ones; only the models and the data are small. Identities of
the synthetic faces differ by colour, which the ISP can erase, so the protector's effect shows in
a few steps.
"""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from campro_bench.detection.base import DetectorContract, DetectorOutput, PersonDetector
from campro_bench.errors import CamproError, CheckpointError, MissingFileError
from campro_bench.protectors import build_protector
from campro_bench.protectors.isp import ISPParams
from campro_bench.recognizers.base import FaceModelContract, FaceRecognizer
from campro_bench.training.data import EpochSampler, FaceTrainingData, PersonTrainingData, split_by_image
from campro_bench.training.isp import ISPTrainConfig, ISPTrainer, ProxyHead, non_saturating_loss


# ----------------------------------------------------------------------------------------
# toy models and data
# ----------------------------------------------------------------------------------------
class TinyAttacker(FaceRecognizer):
    """A differentiable face "recogniser": conv + pooled features -> 16-d unit embedding."""

    def __init__(self, size: int = 16, seed: int = 0) -> None:
        super().__init__(FaceModelContract(input_size=(size, size), alignment="facenet-160", embedding_size=16), "tiny")
        generator = torch.Generator().manual_seed(seed)
        self.pool = nn.AdaptiveAvgPool2d(16)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(32, 16))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        self.name = "tiny-attacker"

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(self.normalize(self.pool(faces))), dim=1)


class TinyDetector(PersonDetector):
    """A differentiable "person detector": one conv predicting a person heat map (BCE to box masks)."""

    def __init__(self) -> None:
        super().__init__(DetectorContract(input_size=(24, 24), resize="stretch-tf-bilinear", value_range="[0,1]"), "tiny")
        self.net = nn.Conv2d(3, 1, 3, padding=1)
        with torch.no_grad():
            self.net.weight.fill_(0.1)
            self.net.bias.zero_()
        self.name = "tiny-detector"

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        heat = self.net(images).flatten(1)[..., None]
        return DetectorOutput(heat.expand(-1, -1, 4), heat, (int(images.shape[-2]), int(images.shape[-1])))

    def loss_components(self, images, targets):  # type: ignore[no-untyped-def]
        heat = self.net(images)[:, 0]
        mask = torch.zeros_like(heat)
        for i, target in enumerate(targets):
            for x1, y1, x2, y2 in target["boxes"].round().int().tolist():
                mask[i, y1:y2, x1:x2] = 1.0
        cls = F.binary_cross_entropy_with_logits(heat, mask)
        box = (heat.sigmoid() * (1 - mask)).mean()
        return {"cls": cls, "box": box, "total": cls + box}


def toy_faces(identities: int = 6, per_identity: int = 8, size: int = 16, seed: int = 0) -> FaceTrainingData:
    """Faces whose identity is their colour (plus texture noise), split 1 val image per identity."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.15, 0.85, size=(identities, 3))
    crops, labels = [], []
    for k in range(identities):
        for _ in range(per_identity):
            img = colours[k] + rng.normal(0, 0.06, size=(size, size, 3))
            crops.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
            labels.append(k)
    crops_arr, labels_arr = np.stack(crops), np.array(labels, np.int64)
    train, val = split_by_image(labels_arr, 1, seed)
    return FaceTrainingData(crops_arr[train], labels_arr[train], crops_arr[val], labels_arr[val],
                            [f"id{k}" for k in range(identities)], {"dataset": "toy", "seed": seed})


def toy_persons(count: int = 6, size: int = 24) -> PersonTrainingData:
    g = torch.Generator().manual_seed(5)
    images = torch.rand(count, 3, size, size, generator=g) * 0.3
    boxes = []
    for i in range(count):
        x1, y1 = 2 + i % 5, 3 + i % 4
        images[i, :, y1:y1 + 12, x1:x1 + 8] = 0.8
        boxes.append(torch.tensor([[float(x1), float(y1), float(x1 + 8), float(y1 + 12)]]))
    return PersonTrainingData(images, boxes, {"dataset": "toy-persons"})


def toy_config(**overrides) -> ISPTrainConfig:
    base = dict(attacker="tiny-attacker", person_detector="tiny-detector", iterations=4, batch_size=8,
                person_batch_size=2, lr_attacker=0.05, lr_head=0.5, lr_isp=0.02, warmup_threshold=0.95,
                warmup_max_epochs=25, head_scale=8.0, checkpoint_every=2, val_every=2)
    base.update(overrides)
    return ISPTrainConfig(**base)


def make_trainer(tmp: Path, config: ISPTrainConfig | None = None, **kw) -> ISPTrainer:
    return ISPTrainer(config or toy_config(), toy_faces(), toy_persons(), TinyAttacker(), TinyDetector(), tmp, **kw)


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def isp_in_range(trainer: ISPTrainer) -> bool:
    lut, ccm = trainer.isp.lut.detach(), trainer.isp.ccm.detach()
    return bool(lut.min() >= 0 and lut.max() <= 1 and ccm.abs().max() <= trainer.config.ccm_bound)


# ----------------------------------------------------------------------------------------
# pieces
# ----------------------------------------------------------------------------------------
def test_non_saturating_loss_is_minus_log_one_minus_py() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [30.0, -5.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2, 1])
    p = torch.softmax(logits, 1)[torch.arange(3), labels]
    assert torch.allclose(non_saturating_loss(logits, labels), -torch.log1p(-p), atol=1e-12)
    # stable where p_y is ~1 (the naive formula gives inf)
    assert math.isfinite(float(non_saturating_loss(torch.tensor([[60.0, -60.0]]), torch.tensor([0]))))


def test_proxy_head_starts_uniform_and_needs_two_identities() -> None:
    head = ProxyHead(16, 5, scale=8.0)
    logits = head(F.normalize(torch.randn(3, 16), dim=1))
    assert torch.equal(logits, torch.zeros(3, 5))
    with pytest.raises(CamproError, match="at least 2 identities"):
        ProxyHead(16, 1)


def test_split_by_image_holds_out_images_not_identities() -> None:
    labels = np.repeat(np.arange(5), [2, 3, 4, 1, 6])
    train, val = split_by_image(labels, 1, seed=3)
    assert set(train).isdisjoint(val)
    assert sorted(labels[val].tolist()) == [0, 1, 2, 4]  # one per identity; identity 3 has 1 image
    assert set(labels[train]) == {0, 1, 2, 4}  # every validation identity is also a training identity
    assert len(train) + len(val) == len(labels) - 1
    again = split_by_image(labels, 1, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)  # same seed, same split
    seeds = {tuple(split_by_image(labels, 1, seed=s)[1]) for s in range(10)}
    assert len(seeds) > 1  # the seed matters


def test_sampler_is_seeded_and_resumes_its_sequence() -> None:
    a = EpochSampler(10, 3, seed=1, stream=2)
    seq = [a.next() for _ in range(7)]  # crosses two epoch boundaries (3 full batches per epoch)
    assert all(len(i) == 3 for i, _ in seq)
    assert sorted(np.concatenate([i for i, _ in seq[:3]]).tolist()) == sorted(set(np.concatenate([i for i, _ in seq[:3]]).tolist()))
    b = EpochSampler(10, 3, seed=1, stream=2)
    for _ in range(4):
        b.next()
    c = EpochSampler(10, 3, seed=1, stream=2)
    c.load_state_dict(b.state_dict())
    for i, f in seq[4:]:
        j, g = c.next()
        assert np.array_equal(i, j) and np.array_equal(f, g)
    other = EpochSampler(10, 3, seed=1, stream=3).next()[0]
    assert not np.array_equal(other, seq[0][0])
    with pytest.raises(CamproError, match="fewer than one batch"):
        EpochSampler(2, 3, seed=0, stream=0)


# ----------------------------------------------------------------------------------------
# the algorithm's properties
# ----------------------------------------------------------------------------------------
def test_warmup_reaches_the_threshold_on_raw_faces(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    trainer.run_warmup()
    assert trainer.phase == "adversarial"
    last = trainer.warmup_rows[-1]
    assert last["train_acc"] >= 0.95 and len(trainer.warmup_rows) < 25
    assert trainer.validate()["val_acc_raw"] >= 0.8  # held-out images of the same identities


def test_head_init_probes_raw_embeddings_with_the_attacker_fixed(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, toy_config(head_init_epochs=30))
    weights = copy.deepcopy(trainer.attacker.state_dict())
    info = trainer.init_head()
    assert info["train_acc"] >= 0.9 and info["epochs"] == 30
    assert all(torch.equal(v, trainer.attacker.state_dict()[k]) for k, v in weights.items())
    zero = make_trainer(tmp_path / "zero", toy_config(head_init_epochs=0, warmup_max_epochs=1))
    zero.run_warmup()
    assert zero.head_init == {} and len(zero.warmup_rows) == 1


def test_protector_steps_lower_attacker_accuracy_and_keep_params_in_range(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, toy_config(lr_isp=0.05, ccm_bound=1.5, protector_only=True))
    trainer.run_warmup()
    before = trainer.validate()
    assert before["val_acc_protected"] >= 0.8  # the standard ISP barely changes the faces
    rows = [trainer.iterate() for _ in range(30)]
    after = trainer.validate()
    assert after["val_acc_protected"] <= before["val_acc_protected"] - 0.3
    assert after["val_ce_protected"] > before["val_ce_protected"] + 0.5
    assert np.mean([r["l_ns"] for r in rows[-5:]]) < np.mean([r["l_ns"] for r in rows[:5]])
    assert isp_in_range(trainer)
    assert all(math.isfinite(r["l_det"]) for r in rows)


def test_projection_clamps_the_ccm_to_its_bound(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, toy_config(lr_isp=0.5, ccm_bound=0.3, warmup_max_epochs=1))
    trainer.run_warmup()
    for _ in range(5):
        trainer.protector_step()
    ccm = trainer.isp.ccm.detach()
    assert float(ccm.abs().max()) == pytest.approx(0.3)  # the identity's 1.0 was pulled to the bound
    assert isp_in_range(trainer)


def test_attacker_steps_raise_accuracy_on_protected_faces(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    trainer.run_warmup()
    with torch.no_grad():  # a fixed, colour-scrambling camera
        trainer.isp.ccm.copy_(torch.tensor([[0.1, 0.9, 0.0], [0.0, 0.2, 0.8], [0.7, 0.0, 0.3]]))
        trainer.isp.lut.copy_(torch.linspace(0, 1, 32).mul(3.0).remainder(1.0))
    isp_before = copy.deepcopy(trainer.isp.state_dict())
    before = trainer.validate()["val_acc_protected"]
    for _ in range(150):
        trainer.attacker_step()
    after = trainer.validate()["val_acc_protected"]
    assert after >= before + 0.5 and after >= 0.8
    assert all(torch.equal(v, trainer.isp.state_dict()[k]) for k, v in isp_before.items())  # C fixed


def test_protector_only_leaves_attacker_and_head_untouched(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, toy_config(protector_only=True))
    trainer.run_warmup()
    attacker, head, isp, detector = (copy.deepcopy(m) for m in (trainer.attacker, trainer.head, trainer.isp, trainer.detector))
    trainer.run()
    assert states_equal(attacker, trainer.attacker) and states_equal(head, trainer.head)
    assert not states_equal(isp, trainer.isp) and not states_equal(detector, trainer.detector)
    assert all("attacker_acc" not in r for r in trainer.rows)
    full = make_trainer(tmp_path / "full")
    full.run()
    assert not states_equal(attacker, full.attacker)  # the full scheme does move F


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = make_trainer(tmp_path / "whole", toy_config(iterations=6))
    whole.run()
    first = make_trainer(tmp_path / "split", toy_config(iterations=3))
    first.run()  # stops after iteration 3 (checkpoint at 2 and at the end)
    second = make_trainer(tmp_path / "split", toy_config(iterations=6))
    second.resume()
    assert second.iteration == 3 and second.phase == "adversarial"
    second.run()
    for name in ("isp", "attacker", "head", "detector"):
        assert states_equal(getattr(whole, name), getattr(second, name)), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(whole.rows) == strip(second.rows) and whole.val_rows == second.val_rows
    assert whole.optimizers["isp"].state_dict()["state"][0]["exp_avg"].equal(
        second.optimizers["isp"].state_dict()["state"][0]["exp_avg"])
    with open(tmp_path / "split" / "log.csv") as fh:
        assert [int(r["iteration"]) for r in csv.DictReader(fh)] == list(range(1, 7))


def test_resume_in_the_middle_of_the_warmup_is_exact(tmp_path: Path) -> None:
    config = toy_config(head_init_epochs=0, warmup_threshold=0.99, warmup_max_epochs=3, iterations=2)
    whole = make_trainer(tmp_path / "whole", config)
    whole.run()
    first = make_trainer(tmp_path / "split", config)
    first.warmup_epoch()
    first.save_checkpoint()
    assert first.phase == "warmup"  # stopped inside the warm-up
    second = make_trainer(tmp_path / "split", config)
    second.resume()
    assert len(second.warmup_rows) == 1
    second.run()
    assert len(whole.warmup_rows) == len(second.warmup_rows) == 3
    for name in ("isp", "attacker", "head", "detector"):
        assert states_equal(getattr(whole, name), getattr(second, name)), name


def test_resume_refuses_a_different_configuration(tmp_path: Path) -> None:
    make_trainer(tmp_path, toy_config(iterations=1)).run()
    other = make_trainer(tmp_path, toy_config(iterations=2, omega=0.5))
    with pytest.raises(CamproError, match=r"configuration differs \(omega: 0.2 -> 0.5\)"):
        other.resume()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        make_trainer(tmp_path / "bad").resume()
    with pytest.raises(MissingFileError, match="no training checkpoint"):
        make_trainer(tmp_path / "none").resume()


def test_warmup_cache_reproduces_the_warmup(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = make_trainer(tmp_path / "a", warmup_cache=cache)
    a.run_warmup()
    assert len(list(cache.glob("*.pt"))) == 1
    b = make_trainer(tmp_path / "b", toy_config(protector_only=True), warmup_cache=cache)
    b.run_warmup()
    assert b.warmup_source.startswith("cache") and b.warmup_rows == a.warmup_rows
    assert states_equal(a.attacker, b.attacker) and states_equal(a.head, b.head)
    c = make_trainer(tmp_path / "c", toy_config(seed=1), warmup_cache=cache)  # another seed: no reuse
    c.run_warmup()
    assert c.warmup_source == "trained"


def test_outputs_validate_and_load_as_a_protector(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    trainer.run()
    manifest = trainer.finish()
    params = ISPParams.load(tmp_path / "isp.json")
    assert params.metadata["attacker"] == "tiny-attacker" and params.metadata["selection"] == "last iterate"
    assert params.metadata["iterations"] == 4 and params.metadata["scheme"] == "protector+attacker"
    protector = build_protector(f"campro-isp:params={tmp_path / 'isp.json'}")
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(protector(x), trainer.isp(x), atol=1e-6)
    for name in ("report.json", "report.png", "samples.png", "manifest.json", "log.csv", "val.csv", "detector.pt"):
        assert (tmp_path / name).is_file(), name
    assert manifest["metrics"]["iterations"] == 4 and manifest["config"]["omega"] == 0.2
    assert manifest["outputs"]["isp_digest"] == params.digest()
    report = json.loads((tmp_path / "report.json").read_text())
    assert [v["iteration"] for v in report["validation"]] == [0, 2, 4]
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary files


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"omega": -1.0}, "key 'omega': input should be greater than or equal to 0"),
        ({"m": 0}, "key 'm': input should be greater than or equal to 1"),
        ({"n": 0}, "key 'n'"),
        ({"iterations": -3}, "key 'iterations'"),
        ({"lr_isp": 0.0}, "key 'lr_isp': input should be greater than 0"),
        ({"lr_isp": float("nan")}, "key 'lr_isp'"),
        ({"warmup_threshold": 1.5}, "key 'warmup_threshold'"),
        ({"ccm_bound": 0.0}, "key 'ccm_bound'"),
        ({"batch_size": 2.5}, "key 'batch_size': input should be a valid integer"),
    ],
)
def test_bad_configuration_fails_with_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(CamproError, match=message) as info:
        toy_config(**overrides).check()
    assert "\n" not in str(info.value)


def test_mismatched_crops_and_non_differentiable_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CamproError, match="face crops are 16x16 but attacker 'tiny-attacker' takes 32x32"):
        ISPTrainer(toy_config(), toy_faces(), toy_persons(), TinyAttacker(size=32), TinyDetector(), tmp_path)
    frozen_model = TinyAttacker()
    frozen_model.differentiable = False
    with pytest.raises(CamproError, match="not differentiable"):
        ISPTrainer(toy_config(), toy_faces(), toy_persons(), frozen_model, TinyDetector(), tmp_path)


# ----------------------------------------------------------------------------------------
# ensembles of attackers
# ----------------------------------------------------------------------------------------
def test_ensemble_of_one_model_twice_is_the_single_model(tmp_path: Path) -> None:
    """The ensemble objective is the mean of the models' losses: two copies of one attacker give the
    single attacker's losses and the same ISP step."""
    single = make_trainer(tmp_path / "one")
    twice = ISPTrainer(toy_config(attacker="tiny-attacker,tiny-copy"), toy_faces(), toy_persons(),
                       [TinyAttacker(), TinyAttacker()], TinyDetector(), tmp_path / "two")
    a, b = single.protector_step(), twice.protector_step()
    assert a["l_ns"] == pytest.approx(b["l_ns"], rel=1e-6) and a["acc_protected"] == b["acc_protected"]
    assert torch.allclose(single.isp.lut, twice.isp.lut, atol=1e-6) and torch.allclose(single.isp.ccm, twice.isp.ccm, atol=1e-6)
    assert single.attacker_step()["ce"] == pytest.approx(twice.attacker_step()["ce"], rel=1e-6)


def test_ensemble_with_two_alignments_trains_and_records_each_model(tmp_path: Path) -> None:
    config = toy_config(attacker="tiny-attacker,tiny-big", iterations=2, warmup_max_epochs=1, head_init_epochs=2)
    big = TinyAttacker(size=24, seed=1)
    big.name = "tiny-big"
    trainer = ISPTrainer(config, [toy_faces(), toy_faces(size=24)], toy_persons(), [TinyAttacker(), big],
                         TinyDetector(), tmp_path)
    trainer.run()
    val = trainer.val_rows[-1]
    per_model = [val["val_acc_protected[tiny-attacker]"], val["val_acc_protected[tiny-big]"]]
    assert val["val_acc_protected"] == pytest.approx(np.mean(per_model))
    assert len(trainer.heads) == 2 and set(trainer.head_init["train_acc_per_model"]) == {"tiny-attacker", "tiny-big"}
    assert trainer.warmup_key()["attacker"] == ["tiny-attacker", "tiny-big"]
    manifest = trainer.finish()
    assert manifest["models"]["attacker"] == "tiny-attacker,tiny-big"
    with pytest.raises(CamproError, match="not of the same images"):
        ISPTrainer(config, [toy_faces(), toy_faces(identities=5, size=24)], toy_persons(), [TinyAttacker(), big],
                   TinyDetector(), tmp_path / "bad")
    with pytest.raises(CamproError, match="names a model twice"):
        toy_config(attacker="tiny-attacker, tiny-attacker").check()


# ----------------------------------------------------------------------------------------
# the restoration adversary (train isp --restorer unet)
# ----------------------------------------------------------------------------------------
def restorer_config(**overrides) -> ISPTrainConfig:
    base = dict(restorer="unet", restorer_channels=4, restorer_depth=2, restorer_warmup_steps=40,
                lr_restorer=1e-2, restoration_weight=1.0)
    base.update(overrides)
    return toy_config(**base)


def test_straight_through_rounding_is_8_bit_forward_and_identity_backward() -> None:
    from campro_bench.training.losses import quantize8, quantize8_straight_through

    x = torch.tensor([0.1234, 0.5, 0.9999, 1.3, -0.2], requires_grad=True)
    y = quantize8_straight_through(x)
    assert torch.equal(y.detach(), quantize8(x.detach()))
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]  # clamped values get none


def test_restorer_learns_to_invert_the_isp_and_judges_score_restored_faces(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, restorer_config(restorer_warmup_steps=80))
    trainer.run_warmup()
    with torch.no_grad():  # a camera that scrambles colour (invertible): raw identities are lost in it
        trainer.isp.ccm.copy_(torch.tensor([[0.1, 0.9, 0.0], [0.0, 0.2, 0.8], [0.7, 0.0, 0.3]]))
    trainer.start_restorer()
    rows = trainer.restoration.warmup_rows
    assert len(rows) == 80
    assert np.mean([r["r_l1"] for r in rows[-10:]]) < 0.6 * np.mean([r["r_l1"] for r in rows[:10]])
    val = trainer.validate()
    assert val["val_acc_protected"] <= 0.5  # the warmed-up F does not see through the camera
    assert val["val_acc_restored"] >= val["val_acc_protected"] + 0.3  # R inverts it for the judges
    assert (tmp_path / "restorer_warmup.csv").is_file()


def test_restoration_loss_moves_the_isp_through_the_restorer(tmp_path: Path) -> None:
    from campro_bench.training.isp_restoration import restoration_privacy_loss

    trainer = make_trainer(tmp_path, restorer_config(restorer_warmup_steps=80))
    trainer.run_warmup()
    trainer.start_restorer()
    restorer = copy.deepcopy(trainer.restoration.net.state_dict())
    before = trainer.validate()["val_acc_restored"]
    trainer.restoration.optimizer.zero_grad(set_to_none=True)
    optimizer = torch.optim.Adam([trainer.isp.ccm, trainer.isp.lut], lr=0.05)
    for _ in range(40):  # C alone against the fixed R and judges
        xs, y = trainer._faces(*trainer.samplers["protect"].next())
        loss, _ = restoration_privacy_loss(trainer.restoration, trainer._protect(xs), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        trainer.isp.project_(trainer.config.ccm_bound)
    assert trainer.validate()["val_acc_restored"] <= before - 0.3
    assert all(torch.equal(v, trainer.restoration.net.state_dict()[k]) for k, v in restorer.items())  # R fixed
    assert all(p.grad is None for p in trainer.restoration.net.parameters())


def test_zero_restoration_weight_is_the_papers_algorithm_exactly(tmp_path: Path) -> None:
    paper = make_trainer(tmp_path / "paper", toy_config(iterations=4))
    paper.run()
    off = make_trainer(tmp_path / "off", restorer_config(iterations=4, restoration_weight=0.0))
    off.run()
    on = make_trainer(tmp_path / "on", restorer_config(iterations=4, restoration_weight=1.0))
    on.run()
    for name in ("isp", "attacker", "head", "detector"):
        assert states_equal(getattr(paper, name), getattr(off, name)), name
    assert not states_equal(paper.isp, on.isp)  # the term does act when weighted
    assert all({"l_rs", "acc_restored", "r_l1"} <= r.keys() for r in off.rows)
    shared = [{k: v for k, v in r.items() if k in p and k not in ("seconds", "objective")} for r, p in zip(off.rows, paper.rows)]
    assert shared == [{k: v for k, v in p.items() if k not in ("seconds", "objective")} for p in paper.rows]


def test_judges_are_the_warmed_up_attacker_frozen(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, restorer_config(iterations=3))
    trainer.run_warmup()
    warmed = copy.deepcopy(trainer.attacker)
    trainer.run()
    assert states_equal(warmed, trainer.restoration.judges[0])
    assert not states_equal(warmed, trainer.attacker)  # F itself went on adapting
    assert all(not p.requires_grad for p in trainer.restoration.judges[0].parameters())


def test_resumed_run_with_restorer_is_bit_identical(tmp_path: Path) -> None:
    whole = make_trainer(tmp_path / "whole", restorer_config(iterations=5))
    whole.run()
    first = make_trainer(tmp_path / "split", restorer_config(iterations=2))
    first.run()
    second = make_trainer(tmp_path / "split", restorer_config(iterations=5))
    second.resume()
    second.run()
    for name in ("isp", "attacker", "head", "detector"):
        assert states_equal(getattr(whole, name), getattr(second, name)), name
    assert states_equal(whole.restoration.net, second.restoration.net)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(whole.rows) == strip(second.rows) and whole.val_rows == second.val_rows


def test_restorer_outputs_and_bad_restorer_name(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, restorer_config(iterations=2, val_every=1))
    trainer.run()
    manifest = trainer.finish()
    params = ISPParams.load(tmp_path / "isp.json")
    assert params.metadata["restorer"] == "unet" and params.metadata["restoration_weight"] == 1.0
    assert manifest["metrics"]["restorer_warmup_steps"] == 40
    assert all("val_acc_restored" in v for v in trainer.val_rows) and len(trainer.val_rows) == 3
    assert "train_last10pct_acc_restored" in manifest["metrics"]
    with pytest.raises(CamproError, match="restorer must be one of none, unet, got 'gan'") as info:
        toy_config(restorer="gan").check()
    assert "\n" not in str(info.value)
