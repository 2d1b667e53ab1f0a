"""Speaker embeddings -> speakers: spectral clustering, the count from the eigengap."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-10)


def cluster(embeddings: np.ndarray, low: int, high: int, keep_fraction: float = 0.5) -> np.ndarray:
    """Spectral clustering of L2-normalised embeddings; k from the eigengap within [low, high]."""
    from sklearn.cluster import KMeans

    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    high = min(high, n)
    low = min(low, high)
    if high <= 1:
        return np.zeros(n, dtype=int)
    x = unit_rows(embeddings)
    affinity = _pruned_affinity(x @ x.T, keep_fraction)
    degree = affinity.sum(axis=1)
    inv_sqrt = 1.0 / np.sqrt(np.maximum(degree, 1e-10))
    normalized = affinity * inv_sqrt[:, None] * inv_sqrt[None, :]
    eigenvalues, eigenvectors = np.linalg.eigh(normalized)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    if low == high:
        k = low
    else:
        # The gap after the k-th eigenvalue needs a (k+1)-th: estimate k <= n - 1 (never one
        # speaker per window), else the slices differ in length when there are <= high windows.
        top = min(high, n - 1)
        gaps = eigenvalues[low - 1 : top] - eigenvalues[low : top + 1]
        k = low + int(np.argmax(gaps))
    k = max(k, 2) if low >= 2 else k
    if k == 1:
        return np.zeros(n, dtype=int)
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(unit_rows(eigenvectors[:, :k]))
    return by_first_appearance(labels)


def _pruned_affinity(similarity: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Keep each row's strongest links (p-pruning), symmetrise: sharper cluster structure.
    At least 10 links a row, so short files do not fall apart into disconnected pieces."""
    n = len(similarity)
    keep = min(n, max(10, int(np.ceil(keep_fraction * n))))
    affinity = np.zeros_like(similarity)
    top = np.argsort(-similarity, axis=1)[:, :keep]
    rows = np.arange(n)[:, None]
    affinity[rows, top] = np.clip(similarity[rows, top], 0.0, None)
    return (affinity + affinity.T) / 2


def by_first_appearance(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... in the order they first occur."""
    order: dict[int, int] = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in labels], dtype=int)
