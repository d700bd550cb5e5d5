"""The face pipeline: detectors, alignment, the paper / camera pipelines and the caches.

Public entry points (see :mod:`campro_bench.faces.embeddings`)::

    from campro_bench.faces import face_embeddings, aligned_crops

    emb = face_embeddings("lfw", "facenet-casia", "lowres:factor=8", pipeline="paper",
                          min_images_per_identity=2)
"""

from .embeddings import AlignedCrops, FaceEmbeddings, aligned_crops, face_embeddings, weights_identity

__all__ = ["AlignedCrops", "FaceEmbeddings", "aligned_crops", "face_embeddings", "weights_identity"]
