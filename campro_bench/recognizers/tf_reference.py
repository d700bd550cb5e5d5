"""Reference runs of a TensorFlow frozen graph, in a subprocess, for checking converters.

The converted torch model must reproduce the original graph. TensorFlow (the dev extra
``tensorflow-cpu``) is never imported by campro-bench itself: :func:`run_reference` starts
``python -m campro_bench.recognizers.tf_reference`` which runs the graph with TensorFlow or, when
TensorFlow is absent, with an OpenCV build whose DNN module loads the graph (OpenCV <= 4.11).

Command line (used by :func:`run_reference`)::

    python -m campro_bench.recognizers.tf_reference RUNNER GRAPH INPUT.npy OUTPUT.npy IN_NAME OUT_NAME
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RUNNERS = ("tensorflow", "opencv")


@dataclass
class ReferenceResult:
    """Output of a reference run, or why there is none."""

    runner: str | None
    output: np.ndarray | None
    detail: str


def available_runners() -> list[str]:
    """Runners whose library is importable in this environment (checked without importing)."""
    found = []
    if importlib.util.find_spec("tensorflow") is not None:
        found.append("tensorflow")
    if importlib.util.find_spec("cv2") is not None:
        found.append("opencv")
    return found


def run_reference(graph: Path, inputs_nhwc: np.ndarray, input_name: str, output_name: str,
                  timeout: float = 600.0) -> ReferenceResult:
    """Run ``graph`` on ``inputs_nhwc`` with the first runner that works, in a subprocess."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="campro-tfref-") as tmp:
        src, dst = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(src, inputs_nhwc.astype(np.float32))
        for runner in available_runners():
            cmd = [sys.executable, "-m", __name__, runner, str(graph), str(src), str(dst), input_name, output_name]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode == 0 and dst.is_file():
                version = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else runner
                return ReferenceResult(version, np.load(dst), "ok")
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            failures.append(f"{runner}: {tail[0][:200]}")
    detail = "; ".join(failures) if failures else "neither tensorflow nor opencv is installed"
    return ReferenceResult(None, None, detail)


def _run_tensorflow(graph: Path, x: np.ndarray, input_name: str, output_name: str) -> tuple[np.ndarray, str]:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            # one image per run: frozen graphs often fix the batch size to 1
            out = [sess.run(output_name, feed_dict={input_name: x[i : i + 1]}) for i in range(len(x))]
    return np.concatenate(out), f"tensorflow {tf.__version__}"


def _run_opencv(graph: Path, x: np.ndarray, input_name: str, output_name: str) -> tuple[np.ndarray, str]:
    import cv2

    net = cv2.dnn.readNetFromTensorflow(str(graph))
    out = []
    for i in range(len(x)):
        net.setInput(np.ascontiguousarray(x[i : i + 1].transpose(0, 3, 1, 2)))
        out.append(np.asarray(net.forward()).reshape(1, -1))
    return np.concatenate(out), f"opencv {cv2.__version__}"


def main(argv: list[str]) -> int:
    runner, graph, src, dst, input_name, output_name = argv
    x = np.load(src)
    fn = _run_tensorflow if runner == "tensorflow" else _run_opencv
    out, version = fn(Path(graph), x, input_name, output_name)
    np.save(dst, out.astype(np.float32))
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
