"""The 3D maps of the Map page (core/explain/embedding.py): both methods keep neighbourhoods, UMAP reads the exact
neighbours it would compute itself, and a new slice is placed among its nearest stored ones."""
from __future__ import annotations

import numpy as np
import pytest

from core.explain.embedding import METHODS, embed_3d, exact_knn, place


def _two_clusters(n: int = 60, d: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], n // 2)
    return (rng.normal(size=(n, d)) + 6.0 * labels[:, None]).astype(np.float32), labels


def test_exact_knn_lists_each_row_first_then_its_nearest_in_order():
    x, _ = _two_clusters()
    idx, dist = exact_knn(x, 7)
    full = np.linalg.norm(x[:, None] - x[None], axis=2)
    assert idx.shape == dist.shape == (len(x), 7)
    assert np.array_equal(idx[:, 0], np.arange(len(x))) and np.allclose(dist[:, 0], 0, atol=1e-3)
    assert np.allclose(dist, np.take_along_axis(full, idx, 1), atol=1e-3)  # the distances of the listed rows
    assert np.allclose(dist, np.sort(full, axis=1)[:, :7], atol=1e-3)  # and they are the 7 smallest


@pytest.mark.parametrize("method", METHODS)
def test_each_method_keeps_clusters_apart_and_repeats_with_its_seed(method):
    x, labels = _two_clusters()
    xyz = embed_3d(x, method, seed=0)
    assert xyz.shape == (len(x), 3) and np.isfinite(xyz).all()
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() >= 0.95  # each point's nearest neighbour in 3D is of its cluster
    assert np.array_equal(embed_3d(x, method, seed=0), xyz)


def test_too_few_points_and_unknown_methods_are_refused():
    x, _ = _two_clusters()
    with pytest.raises(ValueError, match="at least 5 points"):
        embed_3d(x[:4])
    with pytest.raises(ValueError, match="unknown embedding 'pca'"):
        embed_3d(x, "pca")


def test_a_new_point_lands_beside_its_nearest_stored_point():
    x, labels = _two_clusters()
    coords = np.random.default_rng(1).normal(size=(len(x), 3)) + 10.0 * labels[:, None]
    assert np.allclose(place(x, coords, x[3]), coords[3], atol=1e-3)  # a stored slice again: its own position
    inside = place(x, coords, x[labels == 1].mean(0))
    assert inside[0] > 5  # among the second cluster's points
