"""Hostile CIFAR-10 batches (issue 9, items 5 and 6) and data too large for memory (item 11): one-line DataErrors."""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.data import DataSpec, load_dataset, read_cifar_batch
from engine.errors import DataError
from tests.cifar_files import py2_pickle, write_cifar_batch, write_cifar_folder

HEADER = b"\x80\x02"
NDARRAY = b"cnumpy\nndarray\n"
RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\n"
DTYPE_U1 = b"cnumpy\ndtype\n(U\x02u1K\x00K\x01tR"  # numpy.dtype('u1', 0, 1)


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _batch(data_ops: bytes, labels_ops: bytes) -> bytes:
    """A protocol-2 pickle of {b'data': <data_ops>, b'labels': <labels_ops>}."""
    return HEADER + b"}(U\x04data" + data_ops + b"U\x06labels" + labels_ops + b"u."


def _array_ops(array: np.ndarray) -> bytes:
    """The opcodes of one array as the CIFAR-10 writer emits them (without PROTO and STOP)."""
    return py2_pickle(array)[2:-1]


def _refused(path: Path, *fragments: str) -> str:
    with pytest.raises(DataError) as err:
        read_cifar_batch(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


# ---------------------------------------------------------------------------------------------
# item 5: arrays whose bytes are not in the file


def _stride0_batch(rows: int) -> bytes:
    """numpy.ndarray((rows, 3072), uint8, b'\\x07', 0, (0, 0)): one byte of buffer seen as rows x 3072 pixels."""
    data = NDARRAY + b"(" + b"(" + _int(rows) + b"M\x00\x0ct" + DTYPE_U1 + b"U\x01\x07K\x00(K\x00K\x00ttR"
    labels = NDARRAY + b"(" + b"(" + _int(rows) + b"t" + b"cnumpy\ndtype\n(U\x02i1K\x00K\x01tR" + b"U\x01\x00K\x00(K\x00ttR"
    return _batch(data, labels)


@pytest.mark.parametrize("rows", [20_000, 2_000_000])
def test_stride0_array_calling_ndarray_directly_is_refused(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(_stride0_batch(rows))
    assert path.stat().st_size < 160  # the audit's batch was 135 bytes
    assert _refused(path) == (f"refused CIFAR-10 batch {path}: numpy.ndarray may only be rebuilt through _reconstruct, "
                              "never called (a view of foreign bytes)")


def test_reconstruct_with_a_declared_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b"
    # _reconstruct(ndarray, (2_000_000_000,), 'b') would allocate 2 GB before any BUILD
    path.write_bytes(_batch(RECONSTRUCT + b"(" + NDARRAY + b"(" + _int(2_000_000_000) + b"tU\x01btR", b"]"))
    _refused(path, "_reconstruct accepts only")


def test_build_state_declaring_more_bytes_than_given_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b"
    empty = RECONSTRUCT + b"(" + NDARRAY + b"(K\x00tU\x01btR"
    state = b"(K\x01(" + _int(2_000_000) + b"M\x00\x0ct" + DTYPE_U1 + b"\x89U\x01\x07tb"  # (1, shape, u1, False, 1 byte)
    path.write_bytes(_batch(empty + state, b"]"))
    _refused(path, "6144000000 bytes", "holds 1 bytes")


def test_object_dtype_in_an_array_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b"
    empty = RECONSTRUCT + b"(" + NDARRAY + b"(K\x00tU\x01btR"
    object_dtype = b"cnumpy\ndtype\n(U\x02O8K\x00K\x01tR"
    path.write_bytes(_batch(empty + b"(K\x01(K\x01t" + object_dtype + b"\x89]tb", b"]"))
    _refused(path, "dtype must be a plain numeric type code")


def test_a_real_array_still_loads_through_the_checks(tmp_path: Path) -> None:
    data = np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)
    path = tmp_path / "b"
    path.write_bytes(_batch(_array_ops(data), b"](K\x03K\x07e"))
    X, y = read_cifar_batch(path)
    assert type(X) is np.ndarray and np.array_equal(X, data) and y.tolist() == [3, 7]


# ---------------------------------------------------------------------------------------------
# item 6: nesting


def test_dict_key_nested_a_million_tuples_deep_is_refused_without_crashing(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(HEADER + b"}(K\x00" + b"\x85" * 1_000_000 + b"K\x01u.")
    # in a child process, so that a regression shows as a failed test rather than a dead test runner
    code = ("import sys; from pathlib import Path; from engine.data import read_cifar_batch; from engine.errors import DataError\n"
            "try:\n    read_cifar_batch(Path(sys.argv[1]))\nexcept DataError as e:\n    print(e); sys.exit(2)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-500:]
    assert "nested deeper than 64" in result.stdout and str(path) in result.stdout


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_marks_nested_deep_are_refused(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "b"
    path.write_bytes(HEADER + b"}(U\x03key" + b"(" * depth + b"K\x00" + b"t" * depth + b"u.")
    _refused(path, "nested deeper than 64")


def test_labels_as_deeply_nested_lists_are_refused(tmp_path: Path) -> None:
    data = _array_ops(np.zeros((1, 3072), dtype=np.uint8))
    deep = tmp_path / "deep"
    deep.write_bytes(_batch(data, b"]" * 10_000 + b"K\x00" + b"a" * 10_000))
    _refused(deep, "nested deeper than 64")
    shallow = tmp_path / "shallow"  # within the nesting limit: refused by the label check instead
    shallow.write_bytes(_batch(data, b"]" * 30 + b"K\x00" + b"a" * 30))
    _refused(shallow, "labels must be a flat list of ints, found a list")
    looped = tmp_path / "looped"  # labels = [labels]
    looped.write_bytes(_batch(data, b"]q\x00h\x00a"))
    _refused(looped, "labels must be a flat list of ints")


def test_shared_references_expanding_past_the_file_size_are_refused(tmp_path: Path) -> None:
    # T0 = (0,); T(i+1) = (Ti, Ti): 60 levels, 2**60 nodes once expanded; as a dict key, hashing it would never end
    ops = b"K\x00\x85q\x000"
    for i in range(1, 61):
        ops += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i]) + b"0"
    path = tmp_path / "b"
    path.write_bytes(HEADER + b"}(" + ops + b"h" + bytes([60]) + b"K\x00u.")
    _refused(path, "shared references", "more items")


@pytest.mark.parametrize(("opcode", "payload"), [
    ("INST", b"(ios\nsystem\n."),
    ("PERSID", b"Pid\n."),
    ("EXT1", b"\x82\x01."),
])
def test_opcodes_that_are_not_plain_data_are_refused_before_unpickling(tmp_path: Path, opcode: str, payload: bytes) -> None:
    path = tmp_path / "b"
    path.write_bytes(HEADER + payload)
    _refused(path, f"opcode {opcode}", "not plain data")


def test_truncated_pickle_is_corrupt(tmp_path: Path) -> None:
    path = write_cifar_batch(tmp_path / "b", np.zeros((4, 3072), dtype=np.uint8), [0, 1, 2, 3])
    path.write_bytes(path.read_bytes()[:-5000])
    assert _refused(path).startswith(f"corrupt CIFAR-10 batch {path}: ValueError: ")  # then pickle's own words


def test_hostile_batch_inside_a_cifar_folder_fails_the_load_by_name(tmp_path: Path) -> None:
    root = write_cifar_folder(tmp_path, 10, seed=0)
    (root / "data_batch_4").write_bytes(_stride0_batch(20_000))
    for spec in (DataSpec("cifar10", data_dir=str(root)), DataSpec(str(root))):
        with pytest.raises(DataError, match="data_batch_4"):
            load_dataset(spec)


# ---------------------------------------------------------------------------------------------
# item 11 and issue 10: too large for memory, refused before allocating


def test_synthetic_ten_million_samples_is_refused_with_its_size() -> None:
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec("synthetic", train_size=10_000_000))
    message = str(err.value)
    assert message.startswith("synthetic:") and "10000000" in message and "GiB" in message and "available" in message


def test_npz_declaring_a_huge_array_is_refused_from_its_header(tmp_path: Path) -> None:
    import zipfile

    from numpy.lib import format as npy_format

    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("X.npy", "w") as member:
            npy_format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**6)})
            member.write(b"\0" * 64)
        with zf.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(10**7 // 10**6, dtype=np.int64))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path)))
    message = str(err.value)
    assert str(path) in message and "TiB" in message and "available" in message and "\n" not in message
