from __future__ import annotations

from pathlib import Path

import pytest
import torch

from campro_bench.enhancer import UNet, UNetConfig, load_enhancer, masked_l1_loss, save_enhancer
from campro_bench.errors import CamproError, CheckpointError, InvalidFileError, MissingFileError
from campro_bench.protectors import build_protector
from campro_bench.protectors.isp import ISPParams


@pytest.mark.parametrize("size", [(32, 32), (37, 53), (8, 9)])
def test_unet_keeps_size_and_range(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=4, depth=3)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_masked_l1_matches_eq8_by_hand() -> None:
    enhanced = torch.tensor([[[[0.2, 0.8]]]]).expand(1, 3, 1, 2)
    original = torch.tensor([[[[0.5, 0.5]]]]).expand(1, 3, 1, 2)
    keep = torch.tensor([[[[1.0, 0.0]]]])  # second pixel is a face
    # pixel 1: |0.2 - 0.5| = 0.3 (restored); pixel 2: |0.8| = 0.8 (pushed to black)
    assert float(masked_l1_loss(enhanced, original, keep)) == pytest.approx((0.3 + 0.8) / 2)
    assert float(masked_l1_loss(enhanced, original, None)) == pytest.approx(0.3)


def test_training_steps_reduce_the_masked_loss() -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=4, depth=2))
    x = torch.rand(2, 3, 16, 16)
    keep = torch.ones(2, 1, 16, 16)
    keep[..., 4:8, 4:8] = 0
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = masked_l1_loss(net(1 - x), x, keep)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=4, depth=3)).eval()
    path = tmp_path / "enh.pt"
    save_enhancer(net, path, trained_for="test")
    loaded = load_enhancer(path)
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(loaded(x), net(x))
    assert loaded.metadata == {"trained_for": "test"}


def test_bad_enhancer_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="do not exist"):
        load_enhancer(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torch")
    with pytest.raises(InvalidFileError, match="junk.pt"):
        load_enhancer(junk)
    net = UNet(UNetConfig(base_channels=4, depth=3))
    path = tmp_path / "enh.pt"
    save_enhancer(net, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop("head.weight")
    payload["state_dict"]["down.0.0.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="head.weight") as info:
        load_enhancer(path)
    assert "down.0.0.weight" in str(info.value) and str(path) in str(info.value)


def test_enhanced_protector_from_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    isp_path = tmp_path / "isp.json"
    ISPParams.standard().save(isp_path)
    enh_path = tmp_path / "enh.pt"
    save_enhancer(UNet(UNetConfig(base_channels=4, depth=2)), enh_path)
    protector = build_protector(f"campro-enhanced:params={isp_path},enhancer={enh_path}")
    x = torch.rand(2, 3, 24, 24)
    out = protector(x)
    assert out.shape == x.shape and protector.differentiable
    out.mean().backward()
    assert protector.isp.lut.grad is not None and float(protector.isp.lut.grad.abs().sum()) > 0
    rebuilt = build_protector(protector.spec())
    assert rebuilt.fingerprint() == protector.fingerprint()
    save_enhancer(UNet(UNetConfig(base_channels=4, depth=2)), enh_path)  # other random weights
    assert build_protector(protector.spec()).fingerprint() != protector.fingerprint()


def test_enhanced_protector_needs_its_parts() -> None:
    with pytest.raises(CamproError, match="needs preset=NAME or both"):
        build_protector("campro-enhanced")
    with pytest.raises(CamproError, match="preset 'nope'"):
        build_protector("campro-enhanced:preset=nope")
    with pytest.raises(CamproError, match="no enhancer preset 'standard'"):
        build_protector("campro-enhanced:preset=standard")  # an ISP preset without an enhancer
