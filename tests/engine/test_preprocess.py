"""Preprocessing: fitted on train only, the right statistics, the right shapes."""
from __future__ import annotations

import numpy as np
import pytest

from engine.data import DataSpec, Dataset, load_dataset
from engine.errors import ConfigError, DataError
from engine.init import InitSpec
from engine.preprocess import FITTED, PREPROCESSORS, PreprocessSpec, fit_preprocessor, preprocess_dataset


def _correlated(n: int, d: int, seed: int) -> np.ndarray:
    """(n, d) float32 with a full-rank, far-from-diagonal covariance and a nonzero mean."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) + np.eye(d) * 2.0
    return (rng.standard_normal((n, d)) @ mixing + 5.0).astype(np.float32)


def _cifar_shaped(n: int, seed: int) -> np.ndarray:
    """(n, 3072) pixel-range data whose three channels have clearly different means."""
    rng = np.random.default_rng(seed)
    channel_offsets = np.repeat([40.0, 120.0, 200.0], 1024)
    return (rng.uniform(0, 50, (n, 3072)) + channel_offsets).astype(np.float32)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(DataSpec(seed=0))


def test_spec_rejects_unknown_name_and_lists_known() -> None:
    with pytest.raises(ConfigError) as err:
        PreprocessSpec(name="zca")
    assert "'zca'" in str(err.value)
    for name in PREPROCESSORS:
        assert name in str(err.value)


def test_spec_rejects_bad_components() -> None:
    with pytest.raises(ConfigError) as err:
        PreprocessSpec(name="pca", components=0)
    assert str(err.value) == "components must be an integer >= 1, got 0"
    with pytest.raises(ConfigError) as err:
        PreprocessSpec(name="standardize", components=10)
    assert str(err.value) == "components (--pca-components) applies only to pca and whiten, not 'standardize' (got 10)"


def test_spec_errors_show_numpy_scalars_as_plain_numbers() -> None:
    with pytest.raises(ConfigError, match=r"got 0$"):
        PreprocessSpec(name="pca", components=np.int64(0))
    with pytest.raises(ConfigError, match=r"\(got 3\)$"):
        PreprocessSpec(name="standardize", components=np.int64(3))
    with pytest.raises(ConfigError, match=r"got -1.0$"):
        InitSpec("normal", np.float64(-1.0))


def test_none_only_casts_to_float32(digits: Dataset) -> None:
    pre = fit_preprocessor(PreprocessSpec("none"), digits.X_train, digits.image_shape)
    out = pre.transform(digits.X_val.astype(np.float64))
    assert out.dtype == np.float32 and np.array_equal(out, digits.X_val)


def test_mean_image_uses_training_statistics_only(digits: Dataset) -> None:
    pre = fit_preprocessor(PreprocessSpec("mean_image"), digits.X_train, digits.image_shape)
    train = pre.transform(digits.X_train)
    val = pre.transform(digits.X_val)
    assert train.dtype == np.float32 and val.dtype == np.float32
    assert np.abs(train.mean(axis=0, dtype=np.float64)).max() < 1e-5
    train_mean = digits.X_train.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(val, digits.X_val - train_mean, atol=1e-5)
    # the val split is not re-centred on its own mean
    assert np.abs(val.mean(axis=0, dtype=np.float64)).max() > 0.05 / 16  # pixels are scaled to [0, 1]


def test_per_channel_mean_subtracts_exactly_three_numbers() -> None:
    X_train, X_val = _cifar_shaped(200, 1), _cifar_shaped(50, 2)
    pre = fit_preprocessor(PreprocessSpec("per_channel_mean"), X_train, (3, 32, 32))
    assert np.unique(pre.mean).size == 3
    expected = X_train.astype(np.float64).reshape(200, 3, 1024).mean(axis=(0, 2))
    np.testing.assert_allclose(pre.mean.reshape(3, 1024)[:, 0], expected, rtol=1e-6)
    subtracted = X_val.astype(np.float64) - pre.transform(X_val)
    np.testing.assert_allclose(subtracted, np.repeat(expected, 1024)[None, :].repeat(50, axis=0), atol=1e-3)


def test_per_channel_mean_without_image_shape_is_one_global_mean() -> None:
    X = _correlated(300, 5, 0)
    pre = fit_preprocessor(PreprocessSpec("per_channel_mean"), X, None)
    assert np.unique(pre.mean).size == 1
    assert abs(float(pre.transform(X).mean(dtype=np.float64))) < 1e-4


def test_standardize_gives_unit_std_and_survives_constant_pixels(digits: Dataset) -> None:
    pre = fit_preprocessor(PreprocessSpec("standardize"), digits.X_train, digits.image_shape)
    train = pre.transform(digits.X_train)
    std = train.std(axis=0, dtype=np.float64)
    varying = digits.X_train.std(axis=0) > 0
    assert (~varying).any()  # digits has pixels that are always 0 in training
    assert (pre.scale[~varying] == 1.0).all() and (pre.scale > 0).all()  # left unscaled: a saved model loads
    np.testing.assert_allclose(std[varying], 1.0, atol=1e-4)
    assert np.abs(train.mean(axis=0, dtype=np.float64)).max() < 1e-5
    assert np.isfinite(pre.transform(digits.X_val)).all() and np.isfinite(pre.transform(digits.X_test)).all()


def test_pca_has_k_columns_and_diagonal_covariance() -> None:
    X = _correlated(2000, 20, 3)
    pre = fit_preprocessor(PreprocessSpec("pca", components=5), X, None)
    Z = pre.transform(X).astype(np.float64)
    assert Z.shape == (2000, 5)
    cov = np.cov(Z, rowvar=False, bias=True)
    off_diagonal = cov - np.diag(np.diag(cov))
    assert np.abs(off_diagonal).max() < 1e-3 * np.diag(cov).max()
    assert np.all(np.diff(np.diag(cov)) <= 0)  # components sorted by variance
    # the top 5 eigenvalues of the training covariance
    top = np.sort(np.linalg.eigvalsh(np.cov(X.astype(np.float64), rowvar=False, bias=True)))[::-1][:5]
    np.testing.assert_allclose(np.diag(cov), top, rtol=1e-4)


def test_pca_default_components_is_min_of_d_and_100(digits: Dataset) -> None:
    assert fit_preprocessor(PreprocessSpec("pca"), digits.X_train, None).output_dim == 64
    X = _correlated(300, 150, 0)
    assert fit_preprocessor(PreprocessSpec("pca"), X, None).transform(X).shape == (300, 100)


def test_pca_components_beyond_dimension_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        fit_preprocessor(PreprocessSpec("pca", components=30), _correlated(100, 20, 0), None)
    assert str(err.value) == "components 30 (--pca-components) exceeds the input dimension 20"


def test_whiten_gives_identity_covariance_on_train() -> None:
    X = _correlated(2000, 20, 4)
    pre = fit_preprocessor(PreprocessSpec("whiten"), X, None)
    Z = pre.transform(X).astype(np.float64)
    assert Z.shape == (2000, 20)
    np.testing.assert_allclose(np.cov(Z, rowvar=False, bias=True), np.eye(20), atol=1e-2)
    assert np.abs(Z.mean(axis=0)).max() < 1e-3


def test_whiten_leaves_a_direction_constant_in_training_unscaled() -> None:
    # divided by sqrt(0 + 1e-5), a predict value 1 away from the training constant became 316 away
    X = _correlated(500, 6, 5)
    X[:, 2] = 7.0
    pre = fit_preprocessor(PreprocessSpec("whiten"), X, None)
    Z = pre.transform(X).astype(np.float64)
    np.testing.assert_allclose(np.cov(Z, rowvar=False, bias=True)[:5, :5], np.eye(5), atol=1e-2)
    assert np.abs(Z[:, 5]).max() < 1e-5  # the constant's direction: nothing in training
    moved = X[:3].copy()
    moved[:, 2] += 1.0
    shift = pre.transform(moved).astype(np.float64) - pre.transform(X[:3])
    np.testing.assert_allclose(np.linalg.norm(shift, axis=1), 1.0, rtol=1e-5)


def test_transform_rejects_wrong_width(digits: Dataset) -> None:
    pre = fit_preprocessor(PreprocessSpec("mean_image"), digits.X_train, None)
    with pytest.raises(DataError) as err:
        pre.transform(np.zeros((3, 10), dtype=np.float32))
    assert str(err.value) == "mean_image preprocessor was fitted on 64 features, got shape (3, 10)"


def test_image_shape_must_match_features(digits: Dataset) -> None:
    with pytest.raises(DataError) as err:
        fit_preprocessor(PreprocessSpec("per_channel_mean"), digits.X_train, (3, 32, 32))
    assert str(err.value) == "image_shape (3, 32, 32) does not match 64 features"


def test_preprocess_dataset_returns_a_new_dataset(digits: Dataset) -> None:
    out = preprocess_dataset(digits, PreprocessSpec("pca", components=10))
    assert out is not digits and out.image_shape is None and out.input_dim == 10
    assert out.X_train.shape == (1257, 10) and out.X_val.shape == (270, 10) and out.X_test.shape == (270, 10)
    assert np.array_equal(out.y_train, digits.y_train) and out.num_classes == 10
    assert digits.X_train.shape == (1257, 64)  # the input is untouched
    kept = preprocess_dataset(digits, PreprocessSpec("standardize"))
    assert kept.image_shape == (1, 8, 8) and kept.X_val.dtype == np.float32


def test_transform_takes_a_list_of_rows_and_refuses_text(digits: Dataset) -> None:
    # a list was AttributeError ('list' object has no attribute 'ndim'); text was numpy's ValueError
    pre = fit_preprocessor(PreprocessSpec("standardize"), digits.X_train, None)
    np.testing.assert_array_equal(pre.transform(digits.X_val[:2].tolist()), pre.transform(digits.X_val[:2]))
    with pytest.raises(DataError) as raised:
        pre.transform(np.array([["a"] * 64]))
    assert str(raised.value) == "standardize preprocessor takes numbers, got an array of <U1"


def test_each_preprocessing_fits_the_statistics_a_saved_model_keeps_for_it() -> None:
    X = np.random.default_rng(0).normal(size=(20, 3))
    fitted = {name: tuple(k for k in ("mean", "scale", "projection")
                          if getattr(fit_preprocessor(PreprocessSpec(name), X, None), k) is not None)
              for name in PREPROCESSORS}
    assert fitted == FITTED == {"none": (), "mean_image": ("mean",), "per_channel_mean": ("mean",),
                                "standardize": ("mean", "scale"), "pca": ("mean", "projection"),
                                "whiten": ("mean", "projection")}
