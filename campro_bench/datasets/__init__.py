"""Datasets: face identity datasets (LFW, CelebA, identity folders) and COCO person data.

Each dataset is registered in :data:`~campro_bench.registries.DATASETS`, reads from the data root
(``--data-root`` / ``CAMPRO_BENCH_DATA``) and has a :func:`~campro_bench.datasets.fingerprint.fingerprint`
recorded in run manifests.
"""
