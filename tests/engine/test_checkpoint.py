"""engine.checkpoint from Python: class_probabilities on samples of the wrong shape is one DataError."""
from __future__ import annotations

import numpy as np
import pytest

from engine.checkpoint import class_probabilities
from engine.errors import DataError
from engine.model import FullyConnectedNet, ModelConfig


@pytest.fixture
def model() -> FullyConnectedNet:
    return FullyConnectedNet(ModelConfig(hidden=(5,)), input_dim=4, num_classes=3, rng=np.random.default_rng(0))


def test_probabilities_of_preprocessed_samples_sum_to_one(model) -> None:
    probs = class_probabilities(model, np.ones((6, 4), dtype=np.float32))
    assert probs.shape == (6, 3)
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(6))


@pytest.mark.parametrize("X, shape", [
    (np.ones((6, 3), dtype=np.float32), "(6, 3)"),  # was numpy's matmul error from inside engine/layers.py
    (np.ones(4, dtype=np.float32), "(4,)"),  # was numpy's AxisError
    (np.ones((2, 2, 4), dtype=np.float32), "(2, 2, 4)"),
])
def test_samples_of_the_wrong_shape_are_one_data_error(model, X, shape) -> None:
    with pytest.raises(DataError) as raised:
        class_probabilities(model, X)
    assert str(raised.value) == f"the network takes samples of 4 features (N x 4), got shape {shape}"


def test_a_list_of_rows_is_taken_as_an_array(model) -> None:
    probs = class_probabilities(model, [[1.0, 2.0, 3.0, 4.0]])
    assert probs.shape == (1, 3)
    np.testing.assert_array_equal(probs, class_probabilities(model, np.array([[1.0, 2.0, 3.0, 4.0]])))


def test_an_svm_model_has_no_probabilities() -> None:
    # softmax of an SVM's hinge-loss scores was returned as if it were class probabilities (search predict writes
    # none for such a model)
    svm = FullyConnectedNet(ModelConfig(hidden=(5,), loss="svm"), input_dim=4, num_classes=3,
                            rng=np.random.default_rng(0))
    with pytest.raises(DataError) as raised:
        class_probabilities(svm, np.ones((2, 4), dtype=np.float32))
    assert str(raised.value) == ("an svm model scores classes without probabilities: "
                                 "model.predict(X) gives its classes")


def test_a_model_file_saved_with_a_keep_probability_below_min_keep_is_still_read(model, tmp_path) -> None:
    # --dropout took any keep probability in (0, 1] before its floor of 0.01: such a file was refused as "not a model
    # file saved by `search train --save`", while dropout plays no part in scoring
    import json

    from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from engine.preprocess import Preprocessor

    path = tmp_path / "m.npz"
    save_checkpoint(path, Checkpoint(model, Preprocessor("none", 4), ("a", "b", "c")))
    with np.load(path) as saved:
        arrays = dict(saved)
    meta = json.loads(str(arrays["meta"]))
    meta["model"]["dropout"] = 0.005
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez(path, **arrays)
    loaded = load_checkpoint(path)
    X = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(class_probabilities(loaded.model, X), class_probabilities(model, X))


def test_a_model_file_reading_two_columns_of_one_name_is_named_and_told_to_be_trained_again(model, tmp_path) -> None:
    # such a model was saved before a table's columns of one name were refused; new rows cannot be matched to it, and
    # the line that said so named neither the model file nor any file
    from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from engine.preprocess import Preprocessor

    path = tmp_path / "m.npz"
    save_checkpoint(path, Checkpoint(model, Preprocessor("none", 4), ("x", "y", "z"), features=("a", "b", " a ", "c"),
                                     label_column="label"))
    with pytest.raises(DataError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == (f"{path}: the model reads several columns named 'a', which new rows cannot be "
                                 "matched to by name: train it again on a file whose columns have distinct names")
    save_checkpoint(path, Checkpoint(model, Preprocessor("none", 4), ("x", "y", "z"), features=("a", "b", "d", "c")))
    assert load_checkpoint(path).features == ("a", "b", "d", "c")
