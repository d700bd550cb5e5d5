"""Cost of the utility measurements: person-detector throughput, AP evaluation, fine-tuning.

Usage::

    python bench/utility.py [--data-root DIR] [--threads N] [--device cpu] [--batch 8] [--repeats 5]

One function per measurement, each returning a dict that ``main`` prints:

* :func:`detector_throughput`: images/s of ``detect`` (resize + network + NMS) on 640x480 frames,
  and of the network alone on 300x300 inputs, median of ``repeats`` after a warm-up;
* :func:`ap_evaluation_time`: seconds of the pycocotools AP + F1 evaluation of a dataset's
  predictions (coco128 val by default), and of predicting them;
* :func:`finetune_epoch_cost`: seconds per fine-tuning epoch and per image (forward + loss +
  backward + SGD step at 300x300) on coco128 train images.

The last two need the data root (``--data-root`` or ``CAMPRO_BENCH_DATA``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from campro_bench import paths
from campro_bench.detection import PersonDetector, create_person_detector
from protectors import median_seconds  # bench/protectors.py: same timing rule for every bench script


def detector_throughput(detector: PersonDetector, batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    frames = torch.rand(batch, 3, 480, 640, generator=torch.Generator().manual_seed(0)).to(device)
    net_input = torch.rand(batch, 3, 300, 300, generator=torch.Generator().manual_seed(1)).to(device) * 2 - 1
    detect_s = median_seconds(lambda: detector.detect(frames), repeats, device)
    with torch.inference_mode():
        net_s = median_seconds(lambda: detector.net(net_input), repeats, device)
    return {
        "detect 640x480 (images/s)": batch / detect_s,
        "network 300x300 (images/s)": batch / net_s,
        "batch": batch,
    }


def ap_evaluation_time(detector: PersonDetector, data_root: Path, dataset: str, device: torch.device) -> dict[str, Any]:
    from campro_bench.datasets.coco import load_person_dataset
    from campro_bench.utility.detection_eval import evaluate_person_detections, predict_person_boxes

    ds = load_person_dataset(dataset, data_root, "val")
    start = time.perf_counter()
    predictions = predict_person_boxes(detector, ds, device=device)
    predict_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate_person_detections(ds.coco, predictions)
    eval_s = time.perf_counter() - start
    return {
        "dataset": f"{dataset} val ({len(ds)} images, {len(predictions)} detections)",
        "predict (s)": predict_s,
        "AP + F1 evaluation (s)": eval_s,
        "AP": metrics["AP"],
    }


def finetune_epoch_cost(detector: PersonDetector, data_root: Path, images: int, device: torch.device) -> dict[str, Any]:
    import copy

    from campro_bench.datasets.coco import load_person_dataset
    from campro_bench.detection.finetune import FinetuneConfig, finetune, prepare_training_set

    ds = load_person_dataset("coco128", data_root, "train").subset(images, seed=0)
    start = time.perf_counter()
    x, boxes = prepare_training_set(detector, ds, None, device)
    prepare_s = time.perf_counter() - start
    report = finetune(copy.deepcopy(detector), x, boxes, FinetuneConfig(epochs=2, batch_size=8))
    epoch_s = report.epoch_seconds[-1]  # the second epoch: no first-call overheads
    return {
        "train images": len(ds),
        "prepare (s)": prepare_s,
        "epoch (s)": epoch_s,
        "per image (s)": epoch_s / len(ds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="ssdlite-mobilenetv2-coco")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--dataset", default="coco128")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=0, help="0 = all coco128 train images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    detector = create_person_detector(args.detector, device=device)
    print(f"detector={args.detector} device={device} threads={torch.get_num_threads()}")
    results = {"throughput": detector_throughput(detector, args.batch, args.repeats, device)}
    try:
        root = paths.data_root(args.data_root)
    except Exception as exc:  # the data-dependent measurements are optional
        print(f"(skipping AP evaluation and fine-tuning: {exc})")
    else:
        results["AP evaluation"] = ap_evaluation_time(detector, root, args.dataset, device)
        results["fine-tuning"] = finetune_epoch_cost(detector, root, args.train_images, device)
    for section, values in results.items():
        print(f"[{section}]")
        for key, value in values.items():
            print(f"  {key:32s} {value:.3f}" if isinstance(value, float) else f"  {key:32s} {value}")


if __name__ == "__main__":
    main()
