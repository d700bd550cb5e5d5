"""campro-bench: an open benchmark harness for camera-level anti-facial recognition.

The data flow is one-way: dataset -> protector -> face detector/aligner -> recogniser ->
embedding cache -> protocol -> table/plot. Each stage is found by name in a registry
(:mod:`campro_bench.registries`) and can be extended by third-party plugins.
"""

__version__ = "0.1.0"
