"""Preprocessing by name, fitted on the training split only: x (N, D) -> ((x - mean) / scale) @ projection."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.data import Dataset
from engine.errors import ConfigError, DataError, shown

STD_EPS = 1e-8  # a feature whose training std is below this is left unscaled (constant pixels)
WHITEN_EPS = 1e-5  # added to each eigenvalue before dividing (CS231n's whitening)
DEFAULT_COMPONENTS = 100
# preprocessings after which every feature has unit variance: the raw features' scales need no warning
RESCALING = ("standardize", "whiten")
CHUNK_ROWS = 4096  # statistics are accumulated in float64 chunks, never a full float64 copy of X


@dataclass(frozen=True, eq=False)
class Preprocessor:
    """A fitted preprocessing: subtract ``mean`` (D,), divide by ``scale`` (D,), multiply by ``projection`` (D, K)."""

    name: str
    input_dim: int
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    projection: np.ndarray | None = None

    @property
    def output_dim(self) -> int:
        """K, the number of features after transform."""
        return self.input_dim if self.projection is None else int(self.projection.shape[1])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(N, D) -> float32 (N, K), using the statistics of the training data it was fitted on."""
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise DataError(f"{self.name} preprocessor takes numbers, got an array of {X.dtype}")
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise DataError(f"{self.name} preprocessor was fitted on {self.input_dim} features, got shape {X.shape}")
        if self.mean is None and self.scale is None and self.projection is None:
            return np.asarray(X, dtype=np.float32)
        out = np.array(X, dtype=np.float32)
        if self.mean is not None:
            out -= self.mean
        if self.scale is not None:
            out /= self.scale
        if self.projection is not None:
            out = out @ self.projection
        return out

    def input_magnitudes(self, X: np.ndarray) -> np.ndarray:
        """(N, D) float64: how large each input comes out of ``transform``, |x - mean| / scale times the length of its
        projection row (each component mixes every input), never overflowing: which inputs make a row's preprocessed
        values large, where the largest raw value may be in a column standardize divides by a large std."""
        out = np.abs(np.asarray(X, dtype=np.float64) - (0.0 if self.mean is None else self.mean))
        if self.scale is not None:
            out /= self.scale
        if self.projection is not None:
            out *= np.linalg.norm(self.projection.astype(np.float64), axis=1)
        return out


@dataclass(frozen=True)
class PreprocessSpec:
    """A preprocessing by name; ``components`` is the number of PCA directions kept by pca and whiten."""

    name: str = "standardize"
    components: int | None = None

    def __post_init__(self) -> None:
        check_preprocess_name(self.name)
        if self.components is not None:
            if self.name not in ("pca", "whiten"):
                raise ConfigError(f"components (--pca-components) applies only to pca and whiten, not {self.name!r} "
                                  f"(got {shown(self.components)})")
            if isinstance(self.components, bool) or not isinstance(self.components, (int, np.integer)) or self.components < 1:
                raise ConfigError(f"components must be an integer >= 1, got {shown(self.components)}")


def check_preprocess_name(name: str) -> None:
    """Raise ConfigError listing the known preprocessings when ``name`` is not one of them."""
    if name not in PREPROCESSORS:
        raise ConfigError(f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSORS)}")


# ---------------------------------------------------------------------------------------------
# statistics


def _feature_mean(X: np.ndarray) -> np.ndarray:
    """Per-feature mean (D,) in float64."""
    return X.mean(axis=0, dtype=np.float64)


def _feature_var(X: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per-feature (biased) variance (D,) in float64."""
    total = np.zeros(X.shape[1])
    for lo in range(0, len(X), CHUNK_ROWS):
        centred = X[lo : lo + CHUNK_ROWS].astype(np.float64) - mean
        total += np.einsum("ij,ij->j", centred, centred)
    return total / len(X)


def _principal_axes(X: np.ndarray, mean: np.ndarray, components: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenvalues (k,) and eigenvectors (D, k) of the training covariance, largest first."""
    D = X.shape[1]
    k = min(D, DEFAULT_COMPONENTS) if components is None else components
    if k > D:
        raise ConfigError(f"components {k} (--pca-components) exceeds the input dimension {D}")
    cov = np.zeros((D, D))
    for lo in range(0, len(X), CHUNK_ROWS):
        centred = X[lo : lo + CHUNK_ROWS].astype(np.float64) - mean
        cov += centred.T @ centred
    cov /= len(X)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:k]
    return np.clip(eigvals[order], 0.0, None), eigvecs[:, order]


# ---------------------------------------------------------------------------------------------
# fitters: (X_train (N, D), image_shape, components) -> Preprocessor

Fitter = Callable[[np.ndarray, tuple[int, int, int] | None, int | None], Preprocessor]


def fit_none(X: np.ndarray, image_shape: tuple[int, int, int] | None, components: int | None) -> Preprocessor:
    """Identity (float32 cast only)."""
    return Preprocessor("none", X.shape[1])


def fit_mean_image(X: np.ndarray, image_shape: tuple[int, int, int] | None, components: int | None) -> Preprocessor:
    """Subtract the mean training image (one number per feature)."""
    return Preprocessor("mean_image", X.shape[1], mean=_feature_mean(X).astype(np.float32))


def fit_per_channel_mean(X: np.ndarray, image_shape: tuple[int, int, int] | None, components: int | None) -> Preprocessor:
    """Subtract one training mean per colour channel (rows laid out channel-major); one global mean without a shape."""
    N, D = X.shape
    if image_shape is None:
        mean = np.full(D, X.mean(dtype=np.float64))
    else:
        channels = image_shape[0]
        channel_means = X.reshape(N, channels, D // channels).mean(axis=(0, 2), dtype=np.float64)
        mean = np.repeat(channel_means, D // channels)
    return Preprocessor("per_channel_mean", D, mean=mean.astype(np.float32))


def fit_standardize(X: np.ndarray, image_shape: tuple[int, int, int] | None, components: int | None) -> Preprocessor:
    """Zero mean and unit std per feature."""
    mean = _feature_mean(X)
    std = np.sqrt(_feature_var(X, mean))
    # flooring at eps would divide val/test values of a pixel constant in training by eps; leave it unscaled instead
    scale = np.where(std > STD_EPS, std, 1.0)
    return Preprocessor("standardize", X.shape[1], mean=mean.astype(np.float32), scale=scale.astype(np.float32))


def fit_pca(X: np.ndarray, image_shape: tuple[int, int, int] | None, components: int | None) -> Preprocessor:
    """Centre, then project onto the top ``components`` principal axes (default min(D, 100))."""
    mean = _feature_mean(X)
    _, axes = _principal_axes(X, mean, components)
    return Preprocessor("pca", X.shape[1], mean=mean.astype(np.float32), projection=axes.astype(np.float32))


def fit_whiten(X: np.ndarray, image_shape: tuple[int, int, int] | None, components: int | None) -> Preprocessor:
    """PCA, then divide each component by sqrt(eigenvalue + eps): identity covariance on the training data.

    A direction with no variance in training (a feature constant there; its eigenvalue is rounding noise, below
    the largest times D times float64's eps) is left unscaled, as standardize leaves a constant feature: dividing
    by sqrt(eps) would multiply a val/test/predict value that differs there by 316.
    """
    mean = _feature_mean(X)
    eigvals, axes = _principal_axes(X, mean, components)
    noise = eigvals.max(initial=0.0) * X.shape[1] * np.finfo(np.float64).eps
    projection = axes / np.where(eigvals > noise, np.sqrt(eigvals + WHITEN_EPS), 1.0)
    return Preprocessor("whiten", X.shape[1], mean=mean.astype(np.float32), projection=projection.astype(np.float32))


# the statistics each preprocessing fits (Preprocessor's fields), which a saved model must hold and no others
FITTED: dict[str, tuple[str, ...]] = {
    "none": (),
    "mean_image": ("mean",),
    "per_channel_mean": ("mean",),
    "standardize": ("mean", "scale"),
    "pca": ("mean", "projection"),
    "whiten": ("mean", "projection"),
}

PREPROCESSORS: dict[str, Fitter] = {
    "none": fit_none,
    "mean_image": fit_mean_image,
    "per_channel_mean": fit_per_channel_mean,
    "standardize": fit_standardize,
    "pca": fit_pca,
    "whiten": fit_whiten,
}


def fit_preprocessor(
    spec: PreprocessSpec, X_train: np.ndarray, image_shape: tuple[int, int, int] | None
) -> Preprocessor:
    """Fit ``spec`` on X_train (N, D) only; image_shape (C, H, W) must have C*H*W == D when given."""
    if X_train.ndim != 2 or len(X_train) == 0:
        raise DataError(f"preprocessing needs a non-empty (N, D) training array, got shape {X_train.shape}")
    if image_shape is not None and int(np.prod(image_shape)) != X_train.shape[1]:
        raise DataError(f"image_shape {tuple(image_shape)} does not match {X_train.shape[1]} features")
    return PREPROCESSORS[spec.name](X_train, image_shape, spec.components)


def preprocess_dataset(ds: Dataset, spec: PreprocessSpec) -> Dataset:
    """A new Dataset with train/val/test transformed by ``spec`` fitted on ds.X_train; no image_shape after pca/whiten."""
    return fit_dataset(ds, spec)[0]


def fit_dataset(ds: Dataset, spec: PreprocessSpec) -> tuple[Dataset, Preprocessor]:
    """``preprocess_dataset``'s Dataset and the Preprocessor it fitted (which a saved model keeps)."""
    pre = fit_preprocessor(spec, ds.X_train, ds.image_shape)
    return dataclasses.replace(
        ds,
        X_train=pre.transform(ds.X_train),
        X_val=pre.transform(ds.X_val),
        X_test=pre.transform(ds.X_test),
        image_shape=None if pre.projection is not None else ds.image_shape,
    ), pre
