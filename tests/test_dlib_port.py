"""The PyTorch port of dlib's face ResNet: the reader of dlib's serialization (on bytes written
here), its errors, and equality with dlib itself on random and real LFW chips."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from campro_bench.errors import CamproError, InvalidFileError
from campro_bench.io import uint8_to_tensor
from campro_bench.recognizers.base import contract_of, create_face_recognizer
from campro_bench.recognizers.dlib_dnn import DlibNetModule, Spec, read_dlib_net

TOLERANCE = 1e-4  # max abs difference per component, raw and L2-normalised descriptors


# ----------------------------------------------------------------------------------------
# a writer of dlib's format (serialize.h, float_details.h, dnn/tensor.h, dnn/core.h, layers.h)
# ----------------------------------------------------------------------------------------
def w_int(value: int) -> bytes:
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def w_str(text: str) -> bytes:
    return w_int(len(text)) + text.encode("ascii")


def w_bool(value: bool) -> bytes:
    return b"1" if value else b"0"


def w_float(value: float) -> bytes:
    """float_details of a float32: 24-bit mantissa, low zero bytes shifted off."""
    m, e = math.frexp(float(np.float32(value)))
    mantissa, exponent = int(m * (1 << 24)), e - 24
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return w_int(mantissa) + w_int(exponent)


def w_tensor(array: np.ndarray, version: int = 2) -> bytes:
    shape = (list(array.shape) + [1, 1, 1, 1])[:4] if array.size else [0, 0, 0, 0]
    head = w_int(version) + b"".join(w_int(d) for d in shape)
    flat = np.asarray(array, dtype=np.float32).reshape(-1)
    if version == 2:
        return head + flat.astype("<f4").tobytes()
    return head + b"".join(w_float(v) for v in flat)


def w_alias(*dims: int) -> bytes:
    return w_int(1) + b"".join(w_int(d) for d in (list(dims) + [1, 1, 1])[:4])


def w_layer(kind: str, p: dict, float_version: int) -> bytes:
    multipliers = b"".join(w_float(v) for v in (1.0, 1.0, 1.0, 0.0))
    if kind == "con":
        w, b = p["weight"], p["bias"]
        params = np.concatenate([w.reshape(-1), b])
        return (w_str("con_4") + w_tensor(params, float_version) + w_int(w.shape[0]) + w_int(w.shape[2])
                + w_int(w.shape[3]) + w_int(p["stride"]) + w_int(p["stride"]) + w_int(p["pad"]) + w_int(p["pad"])
                + w_alias(*w.shape) + w_alias(1, w.shape[0]) + multipliers)
    if kind == "affine":
        params = np.concatenate([p["gamma"], p["beta"]])
        k = p["gamma"].size
        return w_str("affine_") + w_tensor(params, float_version) + w_alias(1, k) + w_alias(1, k) + w_int(0)
    if kind in ("max_pool", "avg_pool"):
        return w_str(f"{kind}_2") + b"".join(w_int(v) for v in (p["size"], p["size"], p["stride"], p["stride"], 0, 0))
    if kind == "fc":
        w, b = p["weight"], p["bias"]
        params = np.concatenate([w.reshape(-1), b])
        return (w_str("fc_2") + w_int(w.shape[1]) + w_int(w.shape[0]) + w_tensor(params, float_version)
                + w_alias(*w.shape) + w_alias(1, w.shape[1]) + w_int(0) + multipliers)
    return w_str({"relu": "relu_", "add_prev": "add_prev_"}[kind])


def write_net(spec: Spec, params: list[dict], means: tuple[float, float, float], size: int) -> bytes:
    """dlib's ``serialize(net)`` of a loss_metric network; ``params[n]`` belongs to ``spec[n]``."""
    out = w_int(1) + w_str("loss_metric_2") + w_float(0.04) + w_float(0.6)
    last = len(spec) - 1
    for n, (kind, _) in enumerate(spec):
        out += w_int(1 if kind in ("tag", "skip") else 3 if n == last else 2)
    out += w_str("input_rgb_image_sized") + b"".join(w_float(m) for m in means) + w_int(size) + w_int(size)
    for n in reversed(range(len(spec))):
        kind = spec[n][0]
        if kind in ("tag", "skip"):
            continue
        out += w_layer(kind, params[n], float_version=1 if n % 2 else 2)  # both tensor encodings
        out += w_bool(True) + w_bool(True) + w_bool(False) + w_tensor(np.zeros(0)) + w_tensor(np.zeros(0))
        out += w_tensor(np.zeros(0))  # params_grad, or grad_final on the input
        if n == last:
            out += w_int(1)
    return out


# outermost first: fc <- avg_pool_everything <- relu <- add_prev1 <- affine <- con(pad 1) <- tag1
#                  <- max_pool 2x2 <- relu <- con(stride 2)          (3 -> 4 -> 6 channels, 5 outputs)
TINY: Spec = [("fc", 0), ("avg_pool", 0), ("relu", 0), ("add_prev", 1), ("affine", 0), ("con", 0), ("tag", 1),
              ("max_pool", 0), ("relu", 0), ("con", 0)]
MEANS = (122.782, 117.001, 104.298)


@pytest.fixture(scope="module")
def tiny() -> tuple[bytes, list[dict]]:
    rng = np.random.default_rng(1)

    def r(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    params: list[dict] = [
        {"weight": r(6, 5), "bias": r(5)},
        {"size": 0, "stride": 1}, {}, {},
        {"gamma": r(6), "beta": r(6)},
        {"weight": r(6, 4, 3, 3), "bias": r(6), "stride": 1, "pad": 1},
        {},
        {"size": 2, "stride": 1}, {},
        {"weight": r(4, 3, 3, 3), "bias": np.zeros(4, np.float32), "stride": 2, "pad": 0},  # zeros: float_details 0
    ]
    return write_net(TINY, params, MEANS, 9), params


def reference_forward(x: torch.Tensor, p: list[dict]) -> torch.Tensor:
    """The tiny network written out by hand."""
    t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    x = (x - torch.tensor(MEANS).view(1, 3, 1, 1)) / 256.0
    x = F.relu(F.conv2d(x, t(p[9]["weight"]), t(p[9]["bias"]), stride=2))
    tag = F.max_pool2d(x, 2, 1)
    y = F.conv2d(tag, t(p[5]["weight"]), t(p[5]["bias"]), padding=1)
    y = y * t(p[4]["gamma"]).view(1, -1, 1, 1) + t(p[4]["beta"]).view(1, -1, 1, 1)
    y = F.relu(y + F.pad(tag, (0, 0, 0, 0, 0, 2)))  # add_prev: the 4-channel tag, zero channels 5 and 6
    return y.mean(dim=(2, 3)) @ t(p[0]["weight"]) + t(p[0]["bias"])


def test_reader_reads_written_network(tmp_path: Path, tiny: tuple[bytes, list[dict]]) -> None:
    data, params = tiny
    path = tmp_path / "tiny.dat"
    path.write_bytes(data)
    net = read_dlib_net(path, TINY)
    assert np.allclose(net.input_means, MEANS, atol=1e-5) and net.input_size == (9, 9)
    assert net.loss == {"version": "loss_metric_2", "margin": pytest.approx(0.04), "distance_threshold": pytest.approx(0.6)}
    assert [(layer.kind, layer.arg) for layer in net.layers] == TINY[::-1]
    con, affine, fc = net.layers[0], net.layers[5], net.layers[9]
    assert con.attrs == {"num_filters": 4, "nr": 3, "nc": 3, "stride": (2, 2), "padding": (0, 0)}
    assert np.array_equal(con.params["weight"], params[9]["weight"]) and np.array_equal(con.params["bias"], params[9]["bias"])
    assert np.array_equal(affine.params["gamma"].reshape(-1), params[4]["gamma"])  # float_details (tensor v1)
    assert np.array_equal(fc.params["weight"], params[0]["weight"]) and np.array_equal(fc.params["bias"], params[0]["bias"])
    assert net.layers[2].attrs == {"nr": 2, "nc": 2, "stride": (1, 1), "padding": (0, 0)}

    x = torch.randint(0, 256, (3, 3, 9, 9)).float()
    with torch.inference_mode():
        ours = DlibNetModule(net).eval()(x)
    assert torch.allclose(ours, reference_forward(x, params), atol=1e-5)


def test_corrupt_file_is_one_clear_error(tmp_path: Path, tiny: tuple[bytes, list[dict]]) -> None:
    data, _ = tiny
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidFileError, match=r"truncated\.dat is not a dlib network .*file ends"):
        read_dlib_net(truncated, TINY)
    wrong = tmp_path / "wrong.dat"
    wrong.write_bytes(data.replace(b"relu_", b"relx_", 1))
    with pytest.raises(CamproError, match=r"wrong\.dat .*relu_ version is 'relx_'"):
        read_dlib_net(wrong, TINY)
    other = tmp_path / "other.dat"
    other.write_bytes(data)
    with pytest.raises(CamproError, match=r"other\.dat is not a dlib network of the expected type"):
        read_dlib_net(other, TINY[2:])  # another network type
    with pytest.raises(CamproError, match="missing.dat does not exist"):
        read_dlib_net(tmp_path / "missing.dat", TINY)


# ----------------------------------------------------------------------------------------
# the real network against dlib
# ----------------------------------------------------------------------------------------
def _models() -> tuple:
    dlib = pytest.importorskip("dlib", reason="dlib (dlib-bin) is not installed")
    from campro_bench.recognizers import dlib_resnet

    try:
        dlib_resnet.WEIGHTS.path()
    except CamproError as exc:
        pytest.skip(f"the dlib ResNet weights are not installed: {exc}")
    assert dlib is not None
    return create_face_recognizer("dlib-resnet"), create_face_recognizer("dlib-resnet-native")


def _max_differences(faces: torch.Tensor) -> tuple[float, float]:
    port, native = _models()
    raw = (port.descriptors(faces) - native.descriptors(faces)).abs().max().item()
    unit = (port(faces) - native(faces)).abs().max().item()
    return raw, unit


def test_port_matches_dlib_on_random_chips() -> None:
    chips = np.random.default_rng(0).integers(0, 256, (6, 150, 150, 3), dtype=np.uint8)
    raw, unit = _max_differences(uint8_to_tensor(chips))
    assert raw < TOLERANCE and unit < TOLERANCE


@pytest.mark.realdata
def test_port_matches_dlib_on_lfw_chips(cache_dir: Path) -> None:
    root = os.environ.get("CAMPRO_BENCH_DATA")
    if not root or not (Path(root) / "lfw" / "images").is_dir():
        pytest.skip("needs the LFW images under CAMPRO_BENCH_DATA (the shared datasets)")
    from campro_bench.datasets.faces import load_face_dataset
    from campro_bench.faces import aligned_crops

    _models()
    ds = load_face_dataset("lfw", root)
    ids = [it.image_id for it in ds.items()[:32]]
    crops = aligned_crops(ds, "dlib-150", image_ids=ids, data_root=root, cache_dir=cache_dir)
    assert crops.found.sum() >= 30
    raw, unit = _max_differences(uint8_to_tensor(crops.crops[crops.found]))
    assert raw < TOLERANCE and unit < TOLERANCE


def test_port_is_registered_like_native() -> None:
    assert contract_of("dlib-resnet") == contract_of("dlib-resnet-native")
    port, native = _models()
    assert port.weights_hash == native.weights_hash and not port.differentiable
    out = port(torch.rand(2, 3, 150, 150))
    assert out.shape == (2, 128) and not out.is_inference()  # usable outside inference mode
    assert torch.allclose(out.norm(dim=1), torch.ones(2))
