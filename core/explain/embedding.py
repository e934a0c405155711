"""3D maps of the fusion-layer features: t-SNE (openTSNE) and UMAP (umap-learn).

Computed once per run and feature set and cached on disk (core.runs.feature_cache). New slices are
placed by inverse-distance weighting of their nearest neighbours' 3D positions in feature space:
no fitted model object needs to be pickled and loaded (loading pickles is refused project-wide).
"""
from __future__ import annotations

import warnings

import numpy as np

METHODS = ("tsne", "umap")
PCA_DIMS = 50


def embed_3d(x: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 3) coordinates."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) < 5:
        raise ValueError(f"need at least 5 points for a 3D map, got {len(x)}")
    if x.shape[1] > PCA_DIMS and len(x) > PCA_DIMS:
        # PCA first, as is usual before t-SNE/UMAP: neighbourhoods survive, the cost drops tenfold.
        from sklearn.decomposition import PCA

        x = PCA(PCA_DIMS, random_state=seed).fit_transform(x).astype(np.float32)
    if method == "tsne":
        from openTSNE import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) / 3)))
        # Barnes-Hut: openTSNE's FFT gradients support 1-2 dimensions only.
        emb = TSNE(n_components=3, perplexity=perplexity, negative_gradient_method="bh", random_state=seed,
                   n_jobs=1, verbose=False).fit(x)
        return np.asarray(emb, dtype=np.float32)
    if method == "umap":
        import umap

        k = int(min(15, len(x) - 1))
        reducer = umap.UMAP(n_components=3, n_neighbors=k, random_state=seed, n_jobs=1,
                            precomputed_knn=exact_knn(x, k))
        with warnings.catch_warnings():  # no search index: this map never places new points through UMAP
            warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
            return reducer.fit_transform(x).astype(np.float32)
    raise ValueError(f"unknown embedding {method!r}; choose one of {', '.join(METHODS)}")


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, Euclidean distances) of each row's k nearest rows, itself first: the exact neighbours UMAP
    finds itself below 4096 points, through scikit-learn instead of kernels numba compiles in every new process
    (about 7 s on a 2-core CPU)."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors(x)
    return idx.astype(np.int32), dist.astype(np.float32)


def nearest(features: np.ndarray, query: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of the k nearest rows of `features` to `query` (D,)."""
    d = np.linalg.norm(features - query[None], axis=1)
    idx = np.argsort(d)[:k]
    return idx, d[idx]


def place(features: np.ndarray, coords: np.ndarray, query: np.ndarray, k: int = 8) -> np.ndarray:
    """3D position of a new point: inverse-distance-weighted mean of its k nearest neighbours."""
    idx, d = nearest(features, query, k)
    w = 1.0 / np.maximum(d, 1e-6)
    return (coords[idx] * w[:, None]).sum(0) / w.sum()
