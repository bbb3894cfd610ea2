"""Everything a run needs except lr and reg: data, preprocessing, model and optimisation settings."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from engine.data import DataSpec, Dataset, load_dataset
from engine.errors import ConfigError
from engine.init import InitSpec
from engine.model import ModelConfig
from engine.preprocess import PreprocessSpec, preprocess_dataset
from engine.trainer import TrainConfig


@dataclass(frozen=True)
class RunSpec:
    """A trial's fixed settings; stored as the study's ``data`` and ``model`` attributes."""

    data: DataSpec = field(default_factory=DataSpec)
    preprocess: PreprocessSpec = field(default_factory=lambda: PreprocessSpec("mean_image"))
    hidden: tuple[int, ...] = (100,)
    activation: str = "relu"
    init: InitSpec = field(default_factory=InitSpec)
    batchnorm: bool = False
    dropout: float = 1.0
    loss: str = "softmax"
    relu_bias: float = 0.0
    optimizer: str = "adam"
    batch_size: int = 50
    epochs: int = 10
    lr_decay: float = 1.0

    def __post_init__(self) -> None:
        # construct the engine configs once so bad values fail here, at the edge
        self.model_config(input_dim=1, num_classes=2)
        self.train_config(lr=1e-3, reg=0.0, seed=0)

    def model_config(self, input_dim: int, num_classes: int) -> ModelConfig:
        """The engine's ModelConfig for data of this shape."""
        return ModelConfig(
            input_dim=input_dim, num_classes=num_classes, hidden=self.hidden, activation=self.activation,
            init=self.init, batchnorm=self.batchnorm, dropout=self.dropout, loss=self.loss,
            relu_bias=self.relu_bias,
        )

    def train_config(self, lr: float, reg: float, seed: int, epochs: int | None = None) -> TrainConfig:
        """The engine's TrainConfig with this trial's lr, reg and seed."""
        return TrainConfig(
            epochs=epochs or self.epochs, batch_size=self.batch_size, optimizer=self.optimizer,
            lr=lr, reg=reg, seed=seed, lr_decay=self.lr_decay,
        )

    def load(self) -> Dataset:
        """The dataset, preprocessed with statistics of its training split; checked against the batch size."""
        dataset = preprocess_dataset(load_dataset(self.data), self.preprocess)
        if self.batch_size > len(dataset.y_train):
            raise ConfigError(
                f"batch size {self.batch_size} (--batch-size) is larger than the training set "
                f"({len(dataset.y_train)} samples)"
            )
        return dataset

    def with_epochs(self, epochs: int) -> RunSpec:
        return replace(self, epochs=epochs)

    # ---- study attributes (JSON-friendly dicts)
    def data_attrs(self) -> dict[str, Any]:
        return {**asdict(self.data), "preprocess": self.preprocess.name, "components": self.preprocess.components}

    def model_attrs(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden), "activation": self.activation, "init": self.init.name,
            "init_std": self.init.std, "batchnorm": self.batchnorm, "dropout": self.dropout, "loss": self.loss,
            "relu_bias": self.relu_bias, "optimizer": self.optimizer, "batch_size": self.batch_size,
            "lr_decay": self.lr_decay,
        }

    @classmethod
    def from_attrs(cls, data: dict[str, Any], model: dict[str, Any], epochs: int) -> RunSpec:
        """Rebuild a RunSpec from a study's ``data``, ``model`` and ``epochs`` attributes."""
        data = dict(data)
        pre = PreprocessSpec(data.pop("preprocess"), data.pop("components"))
        return cls(
            data=DataSpec(**data), preprocess=pre, hidden=tuple(model["hidden"]), activation=model["activation"],
            init=InitSpec(model["init"], model["init_std"]), batchnorm=model["batchnorm"],
            dropout=model["dropout"], loss=model["loss"], relu_bias=model["relu_bias"],
            optimizer=model["optimizer"], batch_size=model["batch_size"], epochs=epochs,
            lr_decay=model["lr_decay"],
        )
