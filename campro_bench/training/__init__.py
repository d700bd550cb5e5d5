"""Training of CamPro's learned parts from scratch (the authors released no training code).

* :mod:`campro_bench.training.isp`: adversarial training of the 41 ISP parameters (paper
  Algorithm 1) against any differentiable face recogniser, with the protector-only ablation
  (its steps, warm-ups, checkpoints and reports in ``isp_steps``, ``isp_warmup``,
  ``isp_checkpoint``, ``isp_report``; the restoration adversary in ``isp_restoration``);
* :mod:`campro_bench.training.data`: face crops split by image, person images at a detector's
  input size, seeded resumable batch samplers (shared by every trainer);
* :mod:`campro_bench.training.checkpoint`: atomic, exactly-resumable training checkpoints;
* :mod:`campro_bench.training.report`: CSV logs, curve plots, image grids, run manifests.

Submodules are imported on use (``from campro_bench.training.isp import train_isp``) so that
importing this package stays cheap.
"""
