"""A table's columns as the network's features, fitted on the training split: a column of text one-hot over the
categories training holds, a missing cell filled with the training split's mean or most frequent category."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import DataError
from engine.formats import check_memory, ignore_option

MISSING_POLICIES = ("mean", "drop")


@dataclass(frozen=True, eq=False)
class TableEncoding:
    """``categories[c]``: the sorted categories column c is one-hot encoded into (None: a column of numbers, kept as
    it is); ``fill[c]``: what a missing cell of column c becomes (None for all: a missing cell is refused)."""

    columns: tuple[str, ...]
    categories: tuple[tuple[str, ...] | None, ...]
    fill: tuple[float | str, ...] | None = None

    @property
    def output_dim(self) -> int:
        """K, the number of features after encoding."""
        return sum(1 if cats is None else len(cats) for cats in self.categories)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The K features' names: a column's name, or ``column=category`` for each of a text column's categories."""
        return tuple(name for column, cats in zip(self.columns, self.categories)
                     for name in ([column] if cats is None else [f"{column.strip()}={cat}" for cat in cats]))

    def check_memory(self, rows: int, source: str) -> None:
        """DataError naming ``source`` when ``rows`` encoded would not fit in memory (a text column of 100 categories
        takes 100 times its cells' memory)."""
        check_memory(rows * self.output_dim * 4, source, f"its {rows} rows one-hot encoded into {self.output_dim} "
                     "features")

    def transform(self, X: np.ndarray, values: dict[int, dict[str, int]]
                  ) -> tuple[np.ndarray, dict[str, int], dict[str, dict[str, str]]]:
        """Raw table X (N, D) (codes into ``values[c]`` for a text column, NaN missing) as float32 (N, K); per text
        column the cells of a category training never saw (encoded as all zeros), where there are any; and of those
        categories, the ones that differ from a training category only in case or spaces ('Male': 'male')."""
        out = np.zeros((len(X), self.output_dim), dtype=np.float32)  # written in place: no float64 copy of it
        unseen: dict[str, int] = {}
        near: dict[str, dict[str, str]] = {}
        start = 0
        for c, cats in enumerate(self.categories):
            column = X[:, c].astype(np.float64)
            missing = np.isnan(column)
            if cats is None:
                if self.fill is not None:
                    column[missing] = self.fill[c]
                out[:, start] = column
                start += 1
                continue
            index = {cat: k for k, cat in enumerate(cats)}
            lookup = np.full(len(values.get(c, {})) + 1, -1)
            for value, code in values.get(c, {}).items():
                lookup[code] = index.get(value, -1)
            k = np.full(len(column), -1)
            k[~missing] = lookup[column[~missing].astype(np.int64)]
            if self.fill is not None:
                k[missing] = index[str(self.fill[c])]
            if (k[~missing] < 0).any():
                name = self.columns[c].strip()
                unseen[name] = int((k[~missing] < 0).sum())
                texts = {code: value for value, code in values[c].items()}
                folded = {_folded(cat): cat for cat in cats}
                new = (texts[int(code)] for code in np.unique(column[~missing][k[~missing] < 0]))
                like = {value: folded[_folded(value)] for value in new if _folded(value) in folded}
                if like:
                    near[name] = like
            rows = np.flatnonzero(k >= 0)
            out[rows, start + k[rows]] = 1.0
            start += len(cats)
        return out, unseen, near

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: columns, categories and fill values (what a saved model keeps)."""
        return {"columns": list(self.columns), "categories": [None if c is None else list(c) for c in self.categories],
                "fill": None if self.fill is None else list(self.fill)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableEncoding:
        """``as_dict``'s output checked back into an encoding; ValueError saying what is wrong."""
        columns, categories, fill = data["columns"], data["categories"], data["fill"]
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)
                and isinstance(categories, list) and len(categories) == len(columns)):
            raise ValueError("encoding.columns must be names, and encoding.categories one entry per column")
        for cats in categories:
            if cats is not None and not (isinstance(cats, list) and cats and all(isinstance(v, str) for v in cats)
                                         and len(set(cats)) == len(cats)):
                raise ValueError(f"encoding.categories holds {str(cats)[:60]}, not distinct names")
            if cats is not None and cats != sorted(cats):  # fit_encoding sorts them: the network's inputs in order
                raise ValueError(f"encoding.categories holds {str(cats)[:60]}, not in sorted order")
        if fill is not None:
            if not (isinstance(fill, list) and len(fill) == len(columns)):
                raise ValueError("encoding.fill must hold one value per column")
            for value, cats in zip(fill, categories):
                if cats is None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                         and abs(value) <= float(np.finfo(np.float32).max)):  # a feature is float32
                    raise ValueError(f"encoding.fill holds {value!r} for a column of numbers")
                if cats is not None and value not in cats:
                    raise ValueError(f"encoding.fill holds {value!r}, not a category of its column")
        return cls(tuple(columns), tuple(None if c is None else tuple(c) for c in categories),
                   None if fill is None else tuple(fill))


def _folded(category: str) -> str:
    """A category as compared for a near match: in lower case, its runs of spaces one space."""
    return " ".join(category.split()).casefold()


def fit_encoding(source: str, columns: tuple[str, ...], X_train: np.ndarray, values: dict[int, dict[str, int]],
                 fill: bool) -> TableEncoding:
    """The encoding of a raw table (see ``TableEncoding.transform``) fitted on its training rows X_train (N, D):
    categories a text column holds there, and with ``fill`` each column's mean or most frequent category there."""
    categories: list[tuple[str, ...] | None] = []
    fills: list[float | str] = []
    for c, name in enumerate(columns):
        column = X_train[:, c].astype(np.float64)
        present = column[~np.isnan(column)]
        if not len(present):
            raise DataError(f"{source}: column {name!r} has no value in the training split ({len(column)} rows): "
                            f"leave it out with {ignore_option(name)}")
        if c not in values:
            categories.append(None)
            fills.append(float(present.mean()))
            continue
        texts = {code: value for value, code in values[c].items()}
        codes, counts = np.unique(present.astype(np.int64), return_counts=True)
        count = {texts[int(code)]: int(n) for code, n in zip(codes, counts)}
        cats = tuple(sorted(count))
        categories.append(cats)
        fills.append(max(cats, key=lambda cat: count[cat]))  # the first of the most frequent, in sorted order
    return TableEncoding(columns, tuple(categories), tuple(fills) if fill else None)
