"""Video privacy: action recognition under a camera-side video encoder (BDQ) with actor identification
as the privacy attack. See docs/video.md.

* :mod:`.data` — the ``video-clips`` dataset kind (frame folders with ``clips.csv``, AVI/MP4 files with
  KTH or Weizmann naming), seeded splits and clip sampling;
* :mod:`.protectors` — video protectors (raw, low resolution, blur, difference, BDQ) in
  :data:`~campro_bench.registries.VIDEO_PROTECTORS`;
* :mod:`.models` — the small 3D CNN used for both the action and the actor classifier;
* :mod:`.training` — ``campro-bench train bdq`` (the two alternating adversarial steps);
* :mod:`.attacks` — actor classifiers re-trained from scratch on encoded clips, and their ensemble;
* :mod:`.restore` — the restoration attack: a 3D U-Net trained on (encoded, raw) pairs, then actor
  identification of the restored clips;
* :mod:`.synthetic` — synthetic clips written as video files or frame folders (tests, benchmarks).
"""
