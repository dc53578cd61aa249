"""Spectral clustering of tokens on gradient similarity (quanta discovery)."""

from __future__ import annotations

import numpy as np


def angular_affinity(cosine: np.ndarray) -> np.ndarray:
    """A = 1 - arccos(clip(C, -1, 1)) / pi, in [0, 1] (the reference's affinity)."""
    return 1.0 - np.arccos(np.clip(cosine, -1.0, 1.0)) / np.pi


def spectral_clusters(cosine: np.ndarray, n_clusters: int, n_init: int, seed: int) -> np.ndarray:
    """sklearn SpectralClustering on the precomputed angular affinity, seeded, labels by size.

    Labels are renumbered so cluster 0 is the largest (ties: the cluster whose first token
    comes first), making results comparable across runs.
    """
    from sklearn.cluster import SpectralClustering

    model = SpectralClustering(n_clusters=n_clusters, affinity="precomputed", assign_labels="kmeans",
                               n_init=n_init, random_state=seed)
    raw = model.fit_predict(angular_affinity(cosine))
    return relabel_by_size(raw)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda k: (-counts[k], first[k]))
    mapping = np.empty(ids.max() + 1, dtype=np.int64)
    mapping[ids[order]] = np.arange(len(ids))
    return mapping[labels]
