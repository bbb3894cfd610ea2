"""Writing CIFAR-10 batches in the original Python 2 pickle format, for tests: valid folders and broken batches."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from engine.cifar import CIFAR_CLASSES, CIFAR_DIM, CIFAR_FOLDER, CIFAR_META, CIFAR_TEST_BATCH, CIFAR_TRAIN_BATCHES

CIFAR_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def py2_pickle(obj: Any) -> bytes:
    """Protocol-2 pickle as Python 2's cPickle wrote CIFAR-10: bytes as BINSTRING, arrays via numpy.core globals."""
    out: list[bytes] = [b"\x80\x02"]

    def emit(x: Any) -> None:
        if x is None:
            out.append(b"N")
        elif isinstance(x, bool):
            out.append(b"\x88" if x else b"\x89")
        elif isinstance(x, (int, np.integer)):
            x = int(x)
            if 0 <= x < 256:
                out.append(b"K" + bytes([x]))
            elif 0 <= x < 65536:
                out.append(b"M" + struct.pack("<H", x))
            elif -(2**31) <= x < 2**31:
                out.append(b"J" + struct.pack("<i", x))
            else:
                raise ValueError(f"integer {x} does not fit the CIFAR-10 pickle format")
        elif isinstance(x, bytes):
            if len(x) < 256:
                out.append(b"U" + bytes([len(x)]) + x)
            else:
                out.append(b"T" + struct.pack("<i", len(x)) + x)
        elif isinstance(x, str):
            raw = x.encode("utf-8")
            out.append(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(x, tuple):
            out.append(b"(")
            for item in x:
                emit(item)
            out.append(b"t")
        elif isinstance(x, list):
            out.append(b"](")
            for item in x:
                emit(item)
            out.append(b"e")
        elif isinstance(x, dict):
            out.append(b"}(")
            for key, value in x.items():
                emit(key)
                emit(value)
            out.append(b"u")
        elif isinstance(x, np.ndarray):
            if x.dtype.kind not in "uifb":
                raise ValueError(f"cannot write a {x.dtype} array in the CIFAR-10 pickle format")
            x = np.ascontiguousarray(x)
            # _reconstruct(ndarray, (0,), 'b') then BUILD with (version, shape, dtype, fortran, raw bytes)
            out.append(b"cnumpy.core.multiarray\n_reconstruct\n")
            out.append(b"(cnumpy\nndarray\n")
            emit((0,))
            emit(b"b")
            out.append(b"tR")
            dtype_cls, dtype_args, dtype_state = x.dtype.__reduce__()
            out.append(b"(")
            emit(1)
            emit(tuple(x.shape))
            out.append(b"cnumpy\ndtype\n")
            emit(tuple(a.encode() if isinstance(a, str) else a for a in dtype_args))
            out.append(b"R")
            emit(tuple(s.encode() if isinstance(s, str) else s for s in dtype_state))
            out.append(b"b")
            emit(False)
            emit(x.tobytes())
            out.append(b"tb")
        else:
            raise ValueError(f"cannot write a {type(x).__name__} in the CIFAR-10 pickle format")

    emit(obj)
    out.append(b".")
    return b"".join(out)


def write_cifar_batch(
    path: str | Path, data: np.ndarray, labels: list[int], key_type: type = bytes, batch_label: str | None = None
) -> Path:
    """Write one batch in the CIFAR-10 python format: {data: uint8 (N, 3072), labels, batch_label, filenames}.

    Nothing is checked, so tests can write broken batches; ``key_type=str`` writes str keys instead of bytes.
    """
    path = Path(path)
    data = np.asarray(data)

    def key(name: str) -> bytes | str:
        return name.encode() if key_type is bytes else name

    label = batch_label if batch_label is not None else path.name.replace("_", " ")
    batch = {
        key("batch_label"): label.encode(),
        key("labels"): [int(v) for v in labels],
        key("data"): data,
        key("filenames"): [f"synthetic_{i:05d}.png".encode() for i in range(len(data))],
    }
    path.write_bytes(py2_pickle(batch))
    return path


def write_cifar_folder(folder: str | Path, n_per_batch: int, seed: int) -> Path:
    """Build ``folder``/cifar-10-batches-py with 5 train batches and a test batch of ``n_per_batch`` learnable images."""
    root = Path(folder) / CIFAR_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    class_means = rng.uniform(60.0, 196.0, (CIFAR_CLASSES, CIFAR_DIM))
    batch_labels = [f"training batch {i} of 5" for i in range(1, 6)] + ["testing batch 1 of 1"]
    for name, batch_label in zip((*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH), batch_labels):
        labels = rng.integers(0, CIFAR_CLASSES, n_per_batch)
        pixels = class_means[labels] + rng.standard_normal((n_per_batch, CIFAR_DIM)) * 40.0
        data = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        write_cifar_batch(root / name, data, labels.tolist(), batch_label=batch_label)
    meta = {
        b"label_names": [n.encode() for n in CIFAR_LABEL_NAMES],
        b"num_cases_per_batch": n_per_batch,
        b"num_vis": CIFAR_DIM,
    }
    (root / CIFAR_META).write_bytes(py2_pickle(meta))
    return root
