"""CIFAR-10 python batches read without running code: an opcode scan bounds nesting, a restricted unpickler bounds arrays."""
from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DataError
from engine.formats import check_memory, one_line

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_META = "batches.meta"
CIFAR_FILES = (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH, CIFAR_META)
CIFAR_DIM = 3 * 32 * 32
CIFAR_CLASSES = 10

MAX_PICKLE_NESTING = 64
MAX_ARRAY_DIMS = 32
ARRAY_DTYPES = frozenset({"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1", "<u2", "<i2", "<u4", "<i4",
                          "<u8", "<i8", "<f4", "<f8", "|u1", "|i1", "|b1"})

# opcodes a CIFAR-10 batch may hold, by what they do to the unpickler's stack
_PUSH_SCALAR = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT", "NONE", "NEWTRUE", "NEWFALSE",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "GLOBAL",
})
_PUSH_EMPTY = frozenset({"EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"})
_FROM_MARK = frozenset({"TUPLE", "LIST", "DICT", "FROZENSET"})
_INTO_TOP_FROM_MARK = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_NO_STACK = frozenset({"PROTO", "FRAME", "STOP"})


def scan_pickle(raw: bytes, path: Path) -> None:
    """DataError unless ``raw`` holds only plain-data opcodes, nested at most MAX_PICKLE_NESTING deep, no bigger than itself.

    Simulates the unpickler's stack with each item's nesting depth and expanded size, so a structure nested a million
    deep (segfault, RecursionError) or a shared-reference tree of 2**60 nodes (endless hashing) is refused before
    anything is built.
    """
    stack: list[tuple[int, int]] = []  # (nesting depth, nodes when expanded) of each item on the unpickler's stack
    marks: list[int] = []  # stack length at each open MARK
    memo: dict[Any, tuple[int, int]] = {}

    def pop_mark() -> list[tuple[int, int]]:
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def holding(items: list[tuple[int, int]], container: tuple[int, int] = (0, 1)) -> tuple[int, int]:
        """``container`` after taking in ``items``: one level deeper than its deepest item, their sizes added."""
        depth = max([container[0]] + [1 + d for d, _ in items])
        return depth, container[1] + sum(n for _, n in items)

    try:
        for op, arg, pos in pickletools.genops(raw):
            name = op.name
            if name in _PUSH_SCALAR:
                stack.append((0, 1))
            elif name in _PUSH_EMPTY:
                stack.append((1, 1))
            elif name == "MARK":
                marks.append(len(stack))
            elif name in _FROM_MARK:
                stack.append(holding(pop_mark(), (1, 1)))
            elif name in _TUPLE_N:
                n = _TUPLE_N[name]
                if len(stack) < n:
                    raise IndexError("stack underflow")
                items = stack[-n:]
                del stack[-n:]
                stack.append(holding(items, (1, 1)))
            elif name == "APPEND":
                item = stack.pop()
                stack[-1] = holding([item], stack[-1])
            elif name in _INTO_TOP_FROM_MARK:
                items = pop_mark()
                stack[-1] = holding(items, stack[-1])
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                stack[-1] = holding([key, value], stack[-1])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "STACK_GLOBAL":
                del stack[-2:]
                stack.append((0, 1))
            elif name == "REDUCE":
                args = stack.pop()
                stack[-1] = holding([args])
            elif name == "BUILD":
                state = stack.pop()
                stack[-1] = holding([state], stack[-1])
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1])
            elif name not in _NO_STACK:
                raise DataError(f"refused CIFAR-10 batch {path_text(path)}: pickle opcode {name} at byte {pos} "
                                "is not plain data")
            if len(marks) > MAX_PICKLE_NESTING or (stack and stack[-1][0] > MAX_PICKLE_NESTING):
                raise DataError(f"refused CIFAR-10 batch {path_text(path)}: data nested deeper than "
                                f"{MAX_PICKLE_NESTING} at byte {pos}")
            if stack and stack[-1][1] > len(raw):
                raise DataError(f"refused CIFAR-10 batch {path_text(path)}: shared references at byte {pos} expand "
                                f"to more items ({stack[-1][1]}) than the file has bytes ({len(raw)})")
    except (ValueError, IndexError, KeyError) as exc:  # genops on truncated bytes, or an inconsistent stack
        raise DataError(f"corrupt CIFAR-10 batch {path_text(path)}: {one_line(exc)}") from exc


class _Refused(Exception):
    """Raised inside unpickling hooks; read_cifar_pickle turns it into a DataError naming the file."""


class _NdarrayToken:
    """Stands for numpy.ndarray inside a pickle: only _reconstruct accepts it; calling it is refused."""

    def __call__(self, *args: Any) -> None:
        """Refuse numpy.ndarray(shape, dtype, buffer, offset, strides): a stride-0 view of a few bytes."""
        raise _Refused("numpy.ndarray may only be rebuilt through _reconstruct, never called (a view of foreign bytes)")


_NDARRAY = _NdarrayToken()


class _PendingArray(np.ndarray):
    """The empty array _reconstruct makes; its state must carry exactly prod(shape) * itemsize raw bytes."""

    def __setstate__(self, state: Any) -> None:
        """Check (version, shape, dtype, fortran, raw bytes) before numpy fills the array from them."""
        if not (isinstance(state, tuple) and len(state) == 5):
            raise _Refused(f"array state must be (version, shape, dtype, fortran, bytes), got {type(state).__name__}")
        _, shape, dtype, _, raw = state
        if not (isinstance(shape, tuple) and len(shape) <= MAX_ARRAY_DIMS
                and all(type(n) is int and n >= 0 for n in shape)):
            raise _Refused(f"array shape must be a tuple of at most {MAX_ARRAY_DIMS} ints >= 0, got {shape!r:.80}")
        if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biuf":
            raise _Refused(f"array dtype must be numeric, got {dtype!r:.80}")
        if not isinstance(raw, (bytes, bytearray)):
            raise _Refused(f"array data must be bytes, got {type(raw).__name__}")
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if declared != len(raw):
            raise _Refused(f"array declares shape {shape} of {dtype} ({declared} bytes) but holds {len(raw)} bytes")
        super().__setstate__(state)


def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    """numpy's _reconstruct limited to what pickling an array writes: (ndarray, (0,), 'b')."""
    if cls is not _NDARRAY or shape != (0,) or dtype_code not in (b"b", "b"):
        raise _Refused(f"_reconstruct accepts only (ndarray, (0,), 'b'), got shape {shape!r:.80}")
    return np.ndarray.__new__(_PendingArray, (0,), np.int8)


def _dtype(code: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """numpy.dtype for a plain numeric type code only (a fresh copy, so BUILD never touches numpy's singletons)."""
    text = code.decode("ascii", "replace") if isinstance(code, bytes) else code
    if not isinstance(text, str) or text not in ARRAY_DTYPES:
        raise _Refused(f"dtype must be a plain numeric type code, got {code!r:.80}")
    return np.dtype(text, align=False, copy=True)


# the only globals a CIFAR-10 batch (a pickled dict holding a numpy array) needs, each a checked stand-in
_CIFAR_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy array globals above; any other global is a DataError."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        """The allowed numpy stand-in, or DataError naming the file and the refused global."""
        try:
            return _CIFAR_ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"refused to unpickle global {module}.{name} in {path_text(self.path)}: "
                "a CIFAR-10 batch holds only dicts, lists, bytes, ints and numpy arrays"
            ) from None


def path_text(path: Path) -> str:
    """The path as a one-line string (newlines in file names would break the one-line error)."""
    return str(path).replace("\n", "\\n")


def read_cifar_pickle(path: Path) -> Any:
    """Unpickle one CIFAR-10 file after scanning it; DataError when missing, refused or corrupt. Arrays are plain."""
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 batch file {path_text(path)}")
    try:
        check_memory(3 * path.stat().st_size, path_text(path), "this CIFAR-10 batch")
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 batch {path_text(path)}: {one_line(exc)}") from exc
    scan_pickle(raw, path)
    try:
        return _plain(_CifarUnpickler(io.BytesIO(raw), path).load())
    except DataError:
        raise
    except _Refused as exc:
        raise DataError(f"refused CIFAR-10 batch {path_text(path)}: {exc}") from None
    except Exception as exc:  # truncated or garbled bytes raise many kinds (EOFError, UnpicklingError, ValueError...)
        raise DataError(f"corrupt CIFAR-10 batch {path_text(path)}: {one_line(exc)}") from exc


def _plain(obj: Any) -> Any:
    """``obj`` with the arrays among its top-level values made plain numpy arrays."""
    if isinstance(obj, _PendingArray):
        return obj.view(np.ndarray)
    if isinstance(obj, dict):
        return {key: value.view(np.ndarray) if isinstance(value, _PendingArray) else value
                for key, value in obj.items()}
    return obj


def _entry(batch: dict, key: str, path: Path) -> Any:
    """batch[b"key"] or batch["key"]; DataError when neither is there."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    keys = ", ".join(sorted(f"{k!r:.40}" for k in list(batch)[:8]))
    raise DataError(f"corrupt CIFAR-10 batch {path_text(path)}: no {key!r} entry (keys: {keys})")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as data uint8 (N, 3072) and labels int64 (N,), checked."""
    batch = read_cifar_pickle(path)
    where = f"CIFAR-10 batch {path_text(path)}"
    if not isinstance(batch, dict):
        raise DataError(f"corrupt {where}: expected a dict, got {type(batch).__name__}")
    data = _entry(batch, "data", path)
    labels = _entry(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR_DIM or data.dtype.kind not in "ui":
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"{where}: data must be a uint8 N x {CIFAR_DIM} array, got shape {shape} dtype {dtype}")
    if data.dtype != np.uint8:
        if data.size and (data.min() < 0 or data.max() > 255):
            raise DataError(f"{where}: pixel values must be in 0..255, got {data.min()}..{data.max()}")
        data = data.astype(np.uint8)
    if isinstance(labels, list):
        if not all(type(v) is int for v in labels):
            bad = next(v for v in labels if type(v) is not int)
            raise DataError(f"{where}: labels must be a flat list of ints, found a {type(bad).__name__}")
        if labels and (min(labels) < 0 or max(labels) >= CIFAR_CLASSES):
            raise DataError(f"{where}: labels must be in 0..{CIFAR_CLASSES - 1}, got {min(labels)}..{max(labels)}")
        y = np.array(labels, dtype=np.int64)
    elif isinstance(labels, np.ndarray) and labels.ndim == 1 and (labels.size == 0 or labels.dtype.kind in "ui"):
        if labels.size and (labels.min() < 0 or labels.max() >= CIFAR_CLASSES):
            raise DataError(f"{where}: labels must be in 0..{CIFAR_CLASSES - 1}, got {labels.min()}..{labels.max()}")
        y = labels.astype(np.int64)
    else:
        raise DataError(f"{where}: labels must be a flat list of ints, got {type(labels).__name__}")
    if len(y) != len(data):
        raise DataError(f"{where}: {len(y)} labels for {len(data)} images")
    return data, y


def read_cifar_label_names(path: Path) -> tuple[str, ...] | None:
    """Class names from batches.meta, or None when the file is absent."""
    if not path.is_file():
        return None
    meta = read_cifar_pickle(path)
    names = _entry(meta, "label_names", path) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != CIFAR_CLASSES or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"corrupt CIFAR-10 meta {path_text(path)}: label_names must be a list of {CIFAR_CLASSES} strings")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def find_cifar_folder(data_dir: str | Path | None) -> Path:
    """The cifar-10-batches-py folder: ``data_dir`` itself or its child of that name."""
    if data_dir is None:
        raise DataError(f"cifar10 needs data_dir (--data-dir DIR): the {CIFAR_FOLDER} folder or the folder "
                        "containing it")
    path = Path(data_dir).expanduser()
    if (path / CIFAR_FOLDER).is_dir():
        return path / CIFAR_FOLDER
    if path.is_dir():
        return path
    raise DataError(f"CIFAR-10 folder not found: {path_text(path)}")


def is_cifar_folder(path: Path) -> bool:
    """True when ``path`` is a cifar-10-batches-py folder or holds one."""
    return path.name == CIFAR_FOLDER or (path / CIFAR_FOLDER).is_dir() or (path / CIFAR_TRAIN_BATCHES[0]).is_file()
