"""Readers of the user's data (.npz, .csv/.tsv, image folders) and what they share: a memory budget, a content hash."""
from __future__ import annotations

import csv
import errno
import hashlib
import itertools
import os
import shlex
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
from numpy.lib import format as npy_format

from engine.errors import DataError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

FILE_FORMATS = {".npz": "npz", ".csv": "csv", ".tsv": "tsv"}
# what to do with a file of another kind that is often a table: a spreadsheet, or text (UCI's .data)
SPREADSHEET_SUFFIXES = frozenset({".xlsx", ".xls", ".ods"})
TEXT_TABLE_SUFFIXES = frozenset({".txt", ".data", ".dat"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
# what an image folder's other files are told: the suffixes read; and the files a system writes beside images, not
# counted among them
IMAGE_SUFFIXES_TEXT = ".png, .jpg and .jpeg"
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "F"})
# a 16-bit grey PNG's modes, read as 0..65535 scaled to 0..255 (levels beyond clipped): Pillow's convert to L or RGB
# clips every value above 255 to 255 (1000, 30000 and 65535 all white)
DEEP_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B"})
MEMORY_FRACTION = 0.5  # refuse data whose arrays would take more than this share of the available memory
CSV_CHUNK_ROWS = 10_000
# cells that spreadsheets, R and pandas write for a missing value, in any column (pandas' na_values, and the '?' of
# UCI's files)
MISSING_CELLS = frozenset({"na", "n/a", "#n/a", "#na", "<na>", "?"})
# a missing value in a column of numbers only (NumPy's savetxt and str() write nan): in a column of text they are
# words, a category (a discount of None)
MISSING_NUMBERS = frozenset({"none", "null", "nan"})
HASH_CHUNK = 1 << 20
MAX_CATEGORIES = 100  # a column of text with more values than this is refused, not one-hot encoded
CORRUPT_NPZ = "corrupt or truncated .npz"  # what a data .npz that cannot be read is called
FLOAT32_EXACT = 2**24  # float32, the dtype trained on, holds every integer up to this in magnitude, not all beyond


# ---------------------------------------------------------------------------------------------
# memory budget


def available_memory() -> int:
    """Bytes available now: MemAvailable (page cache counts as free), capped by a cgroup limit; sysconf otherwise."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # unknown: never refuse on this ground
    try:  # a container's memory limit (cgroup v2)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return available


def format_bytes(n: float) -> str:
    """``n`` bytes in a readable unit, e.g. '28.6 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(nbytes: int, source: str, what: str) -> None:
    """DataError naming ``source`` when ``nbytes`` exceed MEMORY_FRACTION of the memory available now."""
    available = available_memory()
    budget = int(available * MEMORY_FRACTION)
    if nbytes > budget:
        raise DataError(
            f"{source}: {what} would need {format_bytes(nbytes)} of memory, more than "
            f"{MEMORY_FRACTION:.0%} of the {format_bytes(available)} available"
        )


def one_line(exc: BaseException) -> str:
    """'Type: message' of an exception on one line, at most 300 characters (library messages may span lines)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def cannot_read(path: Path, exc: OSError) -> DataError:
    """DataError 'cannot read PATH: Permission denied' (the system's reason) for an OSError not about the format."""
    return DataError(f"cannot read {path}: {exc.strerror or one_line(exc)}")


def read_error(path: Path, exc: Exception, problem: str, member: str | None = None) -> DataError:
    """cannot_read when the system refused (an OSError with an errno; EINVAL is a seek to an offset a corrupt file
    gave), else DataError 'PATH: problem (Type: message)' for what a reader found wrong in the content, naming the
    ``member`` of an archive that cannot be read."""
    if isinstance(exc, OSError) and exc.errno not in (None, errno.EINVAL):
        return cannot_read(path, exc)
    where = f"its member {member!r} cannot be read: " if member is not None else ""
    return DataError(f"{path}: {problem} ({where}{one_line(exc)})")


def merged_values_warning(X: np.ndarray, X32: np.ndarray, named: Callable[[int], str]) -> str | None:
    """The warning that features of X (N, D) with values beyond ``FLOAT32_EXACT`` lost distinct values as float32 X32
    (2**60 and 2**60 + 1 are one number), naming the first by ``named(index)``, or None. Values are counted (sorted)
    only in the columns that reach beyond it: in the others the cost is a min and a max."""
    if not len(X) or X.dtype.kind not in "iuf":
        return None
    return _merged_text([(j, X[:, j], X32[:, j]) for j in _wide_columns(X)], named)


def _wide_columns(X: np.ndarray) -> np.ndarray:
    """The columns of X (N, D) holding a value beyond ``FLOAT32_EXACT`` in magnitude."""
    with warnings.catch_warnings():  # a column of missing cells alone (NaN) has no max
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.flatnonzero((np.nanmax(X, axis=0) > FLOAT32_EXACT) | (np.nanmin(X, axis=0) < -FLOAT32_EXACT))


def _merged_text(columns: list[tuple[int, np.ndarray, np.ndarray]], named: Callable[[int], str]) -> str | None:
    """``merged_values_warning``'s text for ``columns`` (index, its values as read, the same as float32), or None
    where float32 keeps every one of them distinct."""
    merged = [(j, raw, before, after) for j, raw, X32 in columns
              for before, after in [(len(np.unique(raw)), len(np.unique(X32)))] if after < before]
    if not merged:
        return None
    j, column, before, after = merged[0]
    column = column[~np.isnan(column)] if column.dtype.kind == "f" else column
    largest = max(abs(column.max().item()), abs(column.min().item()))  # Python numbers: abs of int64's least
    others = f" (and {len(merged) - 1} other feature{'s' if len(merged) > 2 else ''})" if len(merged) > 1 else ""
    shown = largest if isinstance(largest, int) else f"{largest:.17g}"
    return (f"{named(j)}{others}: values up to {shown} are beyond the integers float32 holds exactly (2^24 = "
            f"{FLOAT32_EXACT}), the dtype trained on: its {before} distinct values become {after}; subtract an offset "
            f"or rescale them before saving")


# ---------------------------------------------------------------------------------------------
# format and content hash


def detect_format(path: Path) -> str:
    """'npz', 'csv', 'tsv', 'image_folder' or 'cifar10' for ``path``; DataError when missing or unsupported."""
    from engine.cifar import is_cifar_folder

    try:
        if path.is_dir():
            return "cifar10" if is_cifar_folder(path) else "image_folder"
        if not path.exists():
            raise DataError(f"data not found: {path}")
    except OSError as exc:
        raise cannot_read(path, exc) from exc
    if not path.is_file():  # a FIFO or a device would block or never end
        raise DataError(f"{path} is not a regular file or folder")
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unsupported data file; {unsupported_text(path)}")
    return fmt


def unsupported_text(path: Path) -> str:
    """What a data file of another kind is told: the kinds read, and how to make a table of another kind readable."""
    suffix, hint = path.suffix.lower(), ""
    if suffix in SPREADSHEET_SUFFIXES:
        hint = "; save the sheet as CSV (.csv) from the spreadsheet program"
    elif suffix in TEXT_TABLE_SUFFIXES:
        hint = "; a table as text is read by its name: rename it .csv if comma-separated, .tsv if tab-separated"
    return f"expected .npz, .csv or .tsv, an image folder or a CIFAR-10 folder{hint}"


def sha256_files(root: Path, files: list[Path]) -> str:
    """sha256 of one file's bytes (root is that file), or of a folder's files: sorted relative paths, sizes and
    bytes."""
    digest = hashlib.sha256()
    try:
        if root.is_file():
            _hash_into(digest, root)
            return digest.hexdigest()
        for rel in sorted(f.relative_to(root).as_posix() for f in files):
            path = root / rel
            digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            digest.update(path.stat().st_size.to_bytes(8, "little"))
            _hash_into(digest, path)
    except OSError as exc:
        raise DataError(f"cannot read {root} to hash it: {one_line(exc)}") from exc
    return digest.hexdigest()


def _hash_into(digest: Any, path: Path) -> None:
    """Feed the bytes of ``path`` into ``digest`` in 1 MiB chunks."""
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)


# ---------------------------------------------------------------------------------------------
# .npz


def read_npz_headers(path: Path, problem: str = CORRUPT_NPZ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an .npz, read from the .npy headers without loading any data; DataError
    'PATH: problem (...)' naming the member that cannot be read."""
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    name = None  # the member being read
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename
                with zf.open(info) as member:
                    version = npy_format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = npy_format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = npy_format.read_array_header_2_0(member)
                headers[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
            name = None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, SyntaxError, tokenize.TokenError,
            NotImplementedError, OSError) as exc:  # a garbled .npy header fails in numpy's parser
        raise read_error(path, exc, problem, name) from exc
    return headers


def load_npz(path: Path, problem: str = CORRUPT_NPZ) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path`` by name, without unpickling (callers check its headers first, as
    ``read_npz`` does); DataError 'PATH: problem (...)' naming the member whose data cannot be read."""
    name = None  # the member being read
    try:
        with np.load(path, allow_pickle=False) as npz:
            members = {member.removesuffix(".npy"): member for member in npz.zip.namelist()}
            arrays = {}
            for key in npz.files:
                name = members.get(key, key)
                arrays[key] = npz[key]
            return arrays
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise read_error(path, exc, problem, name) from exc


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz by name; object arrays refused before loading (nothing is unpickled), size checked."""
    headers = read_npz_headers(path)
    for key, (_, dtype) in headers.items():
        if dtype.hasobject:
            raise DataError(f"{path}: array {key!r} holds Python objects (dtype {dtype}); refused, as loading it "
                            "would unpickle code: save plain numeric or string arrays")
    n_bytes = sum(int(np.prod(shape, dtype=object)) * max(dtype.itemsize, 4) for shape, dtype in headers.values())
    check_memory(2 * n_bytes, str(path), "its arrays")  # the arrays as stored plus their float32 copies
    return load_npz(path)


# ---------------------------------------------------------------------------------------------
# .csv / .tsv


@dataclass
class TableText:
    """What reading a table finds beyond numbers. A column of text holds each cell's code, the index of its value in
    ``values[column]``, as a float; a missing cell is NaN when ``missing_ok``, else refused. ``discover``: a column
    whose cells are all text is read as text (training); otherwise only the columns ``values`` names are."""

    discover: bool = False
    missing_ok: bool = False
    values: dict[int, dict[str, int]] = field(default_factory=dict)
    first: dict[int, tuple[str, str]] = field(default_factory=dict)  # column -> its first text cell and where
    numeric: set[int] = field(default_factory=set)  # columns that held a number
    mixed: dict[int, tuple[str, str]] = field(default_factory=dict)  # discover: column -> its first text among numbers
    merged: str | None = None  # the warning that values of a column merged as float32 (merged_values_warning)
    # column -> (first row, rows, distinct values as read) of each read of rows in which it passes FLOAT32_EXACT:
    # merged is judged over the whole file, the rows read at once (CSV_CHUNK_ROWS) being gone
    wide: dict[int, list[tuple[int, int, np.ndarray]]] = field(default_factory=dict)

    def misses(self, cells: list[str]) -> bool:
        """Whether a row's feature ``cells`` miss a value (None is a word in a column of text, missing in others)."""
        return any(_is_missing(cell, c in self.values) for c, cell in enumerate(cells))


def read_table(path: Path, delimiter: str, label_column: str | None, ignore: tuple[str, ...] = (),
               missing_ok: bool = False) -> tuple[np.ndarray, list[str], tuple[str, ...], str, TableText]:
    """A header-row CSV/TSV as features float32 (N, D), the label cell of each row (N,), the feature names (D,), the
    label column's name and its columns of text (their cells as codes, see ``TableText``); the ``ignore`` columns
    are neither. ``missing_ok``: a missing feature cell is NaN and a missing label ''."""
    found: list[tuple[tuple[str, ...], str]] = []

    def columns(header: list[str]) -> tuple[list[int] | None, int, tuple[str, ...]]:
        take, label_index = _columns_read(path, header, label_column, ignore)
        names = tuple(header[i] for k, i in enumerate(take) if k != label_index)
        if not names:
            raise DataError(f"{path}: no feature columns besides the label column {header[take[label_index]]!r}")
        if _looks_like_data(names):
            raise _sample_for_a_header(path, names)
        _check_unique(path, [h.strip() for h in header], {n.strip() for n in names})
        found.append((names, header[take[label_index]].strip()))
        return (take if len(take) < len(header) else None), label_index, names  # None: every column, uncut

    text = TableText(discover=True, missing_ok=missing_ok)
    X, labels = _read_rows(path, delimiter, columns, text, empty_label="" if missing_ok else None)
    if missing_ok:  # a label None or null among numbers is missing too, as in a feature column
        missing = missing_words(labels)
        labels = ["" if label.lower() in missing else label for label in labels]
    names, label_name = found[0]
    pandas = [*names, label_name] == [str(i) for i in range(len(names) + 1)]  # pandas' names of unnamed columns
    if label_column is None and _looks_like_data(names, rising_too=True) and label_name in set(labels) and not pandas:
        # rising numbers, as a header of wavelengths is, but its label cell is one of the labels: the first row
        # (0.13,0.85,a), read as the header, was left out, and its numbers named the columns; 0,1,2,3 of 3 features
        # and labels 0-4 is what pandas writes for a frame of unnamed columns
        raise _sample_for_a_header(path, names, f"; its label cell {label_name!r} is one of the labels")
    _refuse_text_columns(path, X, names, text)
    return X, labels, *found[0], text


def _refuse_text_columns(path: Path, X: np.ndarray, names: tuple[str, ...], text: TableText) -> None:
    """DataError naming every column of text ``read_table`` found that cannot be trained on, all at once: numbers
    written with a comma, numbers mixed with text, or too many different values (an id, a note)."""
    refused: dict[int, tuple[str, str]] = {}  # column -> (the error of it alone, its reason among several)
    for c, values in list(text.values.items()):
        numbers = sum(map(is_number_text, values))
        if all(is_number_text(value.replace(",", "")) for value in values):  # 3,5 or 1,023 (quoted in a CSV)
            example, where = text.first.pop(c)
            refused[c] = (f"column {names[c]!r} holds numbers written with a comma ({example[:40]!r} in {where}, ...), "
                          f"a decimal comma or a thousands separator; save them with a decimal point and no "
                          f"separator (3.5, 1023)",
                          f"{names[c]!r} holds numbers written with a comma ({example[:40]!r} in {where})")
            del text.values[c]
        elif numbers > len(values) - numbers:  # more of its values are numbers than text: a typo, or codes
            text.mixed[c] = text.first.pop(c)
            del text.values[c]
    for c, (example, where) in text.mixed.items():
        refused[c] = (f"{where} column {names[c]!r}: {example[:40]!r} is not a number; other rows hold numbers: "
                      f"correct it, or leave the column out with {ignore_option(names[c])}",
                      f"{names[c]!r} mixes numbers and text ({example[:40]!r} in {where})")
    for c, values in text.values.items():
        cells = int(np.count_nonzero(~np.isnan(X[:, c])))
        example, where = text.first[c]
        if len(values) > 2 and len(values) > cells / 2:
            refused[c] = (f"column {names[c]!r} holds text, not numbers, with {len(values)} different values in "
                          f"{cells} rows ({example[:40]!r} in {where}, ...): an id or a note, not categories; leave "
                          f"it out with {ignore_option(names[c])}, or name it with --label-column if it "
                          f"holds the labels",
                          f"{names[c]!r} holds text with {len(values)} different values in {cells} rows (an id or a "
                          f"note)")
        elif len(values) > MAX_CATEGORIES:
            refused[c] = (f"column {names[c]!r} holds text with {len(values)} different values ({example[:40]!r} in "
                          f"{where}, ...), more than the {MAX_CATEGORIES} categories a column is one-hot encoded "
                          f"into; leave it out with {ignore_option(names[c])}, or merge its values into fewer",
                          f"{names[c]!r} holds text with {len(values)} different values (more than {MAX_CATEGORIES} "
                          f"categories)")
    if len(refused) == 1:
        raise DataError(f"{path}: {next(iter(refused.values()))[0]}")
    if refused:  # all named at once (Titanic's Name, Ticket and Cabin), not one a run
        order = sorted(refused)
        raise DataError(f"{path}: {len(order)} columns cannot be trained on: "
                        f"{'; '.join(refused[c][1] for c in order)}; leave them out with "
                        f"{' '.join(ignore_option(names[c]) for c in order)}")


def table_columns(path: Path, delimiter: str, label_column: str | None, ignore: tuple[str, ...] = ()
                  ) -> tuple[tuple[str, ...], str]:
    """The feature column names of a header-row CSV/TSV, in order (without the ``ignore`` columns), and the name of
    its label column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = _header(csv.reader(f, delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise read_error(path, exc, "not a readable table") from exc
    if header is None:
        raise _empty_table(path)
    _check_separator(path, header, delimiter)
    take, label_index = _columns_read(path, header, label_column, ignore)
    names = [header[i].strip() for i in take]
    return tuple(n for k, n in enumerate(names) if k != label_index), names[label_index]


def read_columns(
    path: Path, delimiter: str, features: tuple[str, ...], label_column: str | None, text: TableText | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """The named ``features`` of a header-row CSV/TSV as float32 (N, D) in that order, whatever the file's column
    order and other columns, and the cells of ``label_column`` when the file has that column (else None); ``text``:
    which of them hold text, and whether a missing cell is read (see ``TableText``)."""
    labelled: list[bool] = []

    def columns(header: list[str]) -> tuple[list[int], int, tuple[str, ...]]:
        stripped = [h.strip() for h in header]
        positions: dict[str, int] = {}  # each name's first column (a feature's is its only one: _check_unique)
        for i, h in enumerate(stripped):
            positions.setdefault(h, i)
        wanted = [name.strip() for name in features]
        missing = [name for name in features if name.strip() not in positions]
        if missing:
            listed = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
            # a header written in other case ('Proline' for 'proline'): columns are matched exactly, so say which
            folded = {h.casefold(): h for h in stripped if h}
            near = [(m, folded[m.strip().casefold()]) for m in missing if m.strip().casefold() in folded]
            hint = "; names are matched exactly, in case too: " + ", ".join(
                f"{found!r} is not {name.strip()!r}" for name, found in near[:3]) if near else ""
            raise DataError(f"{path}: no column {listed}; the model reads {len(features)} columns by name "
                            f"({', '.join(map(repr, features[:5]))}{', ...' if len(features) > 5 else ''}){hint}")
        _check_unique(path, stripped, set(wanted))
        take = [positions[name] for name in wanted]
        labelled.append(label_column is not None and label_column.strip() in stripped)
        if labelled[0]:
            take.append(stripped.index(label_column.strip()))  # type: ignore[union-attr]
        return take, len(features), features

    X, labels = _read_rows(path, delimiter, columns, text or TableText(), empty_label="")
    return X, labels if labelled[0] else None


def read_cells(path: Path, delimiter: str, column: str) -> list[str]:
    """The cells of the column named ``column`` of a header-row CSV/TSV, one per data row (blank lines skipped, as
    ``read_columns`` skips them), as text."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = [h.strip() for h in _header(reader) or []]
            if column.strip() not in header:
                raise DataError(f"{path}: no column {column!r} to name the rows by; the columns are "
                                f"{_shown_columns(header)}")
            index = header.index(column.strip())
            return [row[index] for row in reader if row]
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise read_error(path, exc, "not a readable table") from exc


LONG_READ_BYTES = 10_000_000  # a table this large takes a second or more to read (about 10 MB/s on 2 busy cores)
_long_read_notice: Callable[[Path, int], None] | None = None


def on_long_read(notice: Callable[[Path, int], None] | None) -> None:
    """Have ``notice(path, size in bytes)`` called before a table of ``LONG_READ_BYTES`` or more is read (the CLI
    says so on stderr: engine code never prints); None: nothing is called."""
    global _long_read_notice
    _long_read_notice = notice


def _read_rows(
    path: Path, delimiter: str, columns: Callable[[list[str]], tuple[list[int] | None, int, tuple[str, ...]]],
    text: TableText, empty_label: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The rows of a header-row table as float32 features and label cells. ``columns(header)`` gives the columns
    each row is cut to (None: all of them), the index of the label among those (a row without one gets '-'), and
    the feature names; an empty label cell is an error, or ``empty_label`` when given. ``text``: the columns of text
    found or known, and whether a missing cell is read."""
    end = 0  # the line the row read last ends at (the header's, once read)
    text.wide = {}
    begins = [1]  # the line the header begins at (after Excel's sep=, line)
    try:
        size = path.stat().st_size
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = _header(reader, begins)
            if header is None:
                raise _empty_table(path)
            if any("\n" in h or "\r" in h for h in header):  # a quote left open in the header (after blank lines)
                _check_quotes(path, delimiter, begins[0])
            _check_separator(path, header, delimiter)
            take, label_index, names = columns(header)
            width = _named_width(header)
            unlabelled = take is not None and label_index == len(take)
            check_memory(_table_bytes(path, size, len(names)), str(path), "its table")
            if _long_read_notice is not None and size >= LONG_READ_BYTES:
                _long_read_notice(path, size)
            chunks: list[np.ndarray] = []
            labels: list[str] = []
            rows: list[list[str]] = []
            lines: list[int] = []
            start = end = reader.line_num  # the lines the row read last begins and ends at (blank lines before it)
            try:
                for row in reader:
                    if not row:
                        continue  # blank line
                    start, end = end + 1, reader.line_num
                    if len(row) != len(header):
                        _check_quotes(path, delimiter, start)
                        raise DataError(f"{path}: row {len(labels) + len(rows) + 1} (line {reader.line_num}) has "
                                        f"{len(row)} field{'' if len(row) == 1 else 's'} but the header has "
                                        f"{len(header)}")
                    if text.discover and any(cell.strip() for cell in row[width:]):  # not a trailing comma's
                        raise DataError(f"{path}: row {len(labels) + len(rows) + 1} (line {reader.line_num}) has a "
                                        f"value in column {width + 1}, which the header leaves unnamed; name it in "
                                        f"the header")
                    rows.append(_cut(row, take, unlabelled))
                    lines.append(reader.line_num)
                    if len(rows) == CSV_CHUNK_ROWS:
                        chunks.append(_parse_rows(path, rows, lines, label_index, names, len(labels), labels,
                                                  text, empty_label))
                        rows, lines = [], []
                if end > start:  # the last row spans lines: a quote left open takes the rest of the file into a cell
                    _check_quotes(path, delimiter, start)
                if rows:
                    chunks.append(_parse_rows(path, rows, lines, label_index, names, len(labels), labels,
                                              text, empty_label))
            except _MissingValue as missing:
                # the rows after this read miss values too: all are named (counted) at once, not one read per run
                later = _missing_rows_left(reader, len(header), take, unlabelled, label_index, text,
                                           len(labels) + len(rows))
                raise DataError(missing.head + _more_missing(missing.rows + later, text.discover)) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8 (a spreadsheet's "
                        f"\"CSV UTF-8\")") from exc
    except csv.Error as exc:  # a cell beyond the csv module's limit of 131072 characters: a quote left open?
        _check_quotes(path, delimiter, end + 1 if end else begins[0])
        raise DataError(f"{path}: not a readable {delimiter!r}-separated table: {one_line(exc)}") from exc
    except OSError as exc:
        raise cannot_read(path, exc) from exc
    if not chunks:
        raise DataError(f"{path}: no data rows after the header")
    X = np.concatenate(chunks)
    text.merged = _table_merged(X, text.wide, names)
    return X, labels


def _cut(row: list[str], take: list[int] | None, unlabelled: bool) -> list[str]:
    """A table's ``row`` cut to the columns ``take`` (None: all of them), with a label '-' where it has none."""
    return row if take is None else [row[i] for i in take] + (["-"] if unlabelled else [])


def _missing_rows_left(reader: Any, width: int, take: list[int] | None, unlabelled: bool, label_index: int,
                       text: TableText, number: int) -> list[tuple[int, int]]:
    """(row, line) of each row the csv ``reader`` has left (the first numbered ``number`` + 1) that misses a feature
    value; blank lines, and rows of other than the header's ``width`` (said once the values are filled in), passed."""
    found = []
    for row in reader:
        if not row or len(row) != width:
            continue
        number += 1
        row = _cut(row, take, unlabelled)
        if text.misses(row[:label_index] + row[label_index + 1:]):
            found.append((number, reader.line_num))
    return found


def _table_merged(X32: np.ndarray, wide: dict[int, list[tuple[int, int, np.ndarray]]], names: tuple[str, ...]
                  ) -> str | None:
    """``merged_values_warning`` of a table's float32 features X32, of whose columns ``wide`` keeps the values as read
    in the rows where they pass ``FLOAT32_EXACT`` (``TableText.wide``); in the others float32 holds them as read."""
    columns = []
    for c, reads in sorted(wide.items()):
        exact = np.ones(len(X32), dtype=bool)
        for first, n, _ in reads:
            exact[first:first + n] = False
        raw = np.concatenate([values for _, _, values in reads] + [X32[exact, c].astype(np.float64)])
        columns.append((c, raw, X32[:, c]))
    return _merged_text(columns, lambda c: f"column {names[c]!r}")


def _check_quotes(path: Path, delimiter: str, start: int) -> None:
    """DataError naming the line where a quoted cell opens that no quote closes, in the row that begins at line
    ``start`` (after blank lines): the csv module reads the rest of the file into that cell and names only the end.
    Read as the csv module reads a cell: a quote opens it only as its first character, and in it two quotes are one."""
    opened = None  # the line where the quoted cell being read opened
    # past the csv module's error, bytes that are not UTF-8 may follow: what they are does not matter here
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        for number, line in enumerate(itertools.islice(f, start - 1, None), start):
            if opened is None and not line.strip("\r\n"):
                continue  # a blank line before the row
            at = 0
            while True:
                if opened is not None:  # in a quoted cell, to its closing quote
                    at = line.find('"', at)
                    if at < 0:
                        break  # the cell goes on in the next line
                    if line.startswith('"', at + 1):  # a quote in the cell
                        at += 2
                        continue
                    opened, at = None, at + 1
                elif line.startswith('"', at):
                    opened, at = number, at + 1
                    continue
                at = line.find(delimiter, at) + 1  # the next cell, unquoted up to it
                if not at:
                    return  # the row ends with this line
    if opened is not None:
        raise DataError(f"{path}: line {opened}: a quote (\") opens a cell that no quote closes, so the rest of the "
                        f"file is read into that cell; close it, or write a quote inside a cell as two (\"\")")


def _header(reader: Any, begins: list[int] | None = None) -> list[str] | None:
    """The first row of a csv reader that is not a blank line (blank lines are skipped, before the header too) nor
    the line ``sep=,`` by which Excel names the separator, or None when there is none. ``begins``: the line the header
    begins at (or a blank line before it) is put in it before the header is read, where a quote left open in it is
    looked for, also when the csv module fails in it."""
    begins = [] if begins is None else begins
    rows = (row for row in reader if row)
    begins[:] = [reader.line_num + 1]
    header = next(rows, None)
    line = "".join(header or [])  # sep=, itself: ['sep=', ''] (its comma read as one), sep=; read with commas
    if line.lower().startswith("sep=") and len(line) <= 5 and len(header or []) <= 2:
        begins[:] = [reader.line_num + 1]
        header = next(rows, None)
    return header


def _empty_table(path: Path) -> DataError:
    return DataError(f"{path}: empty file; expected a header row, then one row per sample")


def _check_separator(path: Path, header: list[str], delimiter: str) -> None:
    """DataError when the header is one column holding another common separator: the file was saved with it."""
    if len(header) != 1:
        return
    read_as = "comma" if delimiter == "," else "tab"
    for separator, shown in ((",", "','"), (";", "';'"), ("\t", "tab"), ("|", "'|'")):
        if separator != delimiter and separator in header[0]:
            raise DataError(f"{path}: the header is one column, but it holds {shown}: a {path.suffix.lower()} file is "
                            f"read as {read_as}-separated; save it separated by {read_as}s")


def _looks_like_data(names: tuple[str, ...], rising_too: bool = False) -> bool:
    """Whether header cells are a sample's values: all numbers, and (unless ``rising_too``) not rising (0,1,2,... are
    the names pandas gives unnamed columns; 400.5,401.5,... could be wavelengths)."""
    try:
        values = [float(n) for n in names]
    except ValueError:
        return False
    return rising_too or any(not a < b for a, b in zip(values, values[1:]))


def _sample_for_a_header(path: Path, names: tuple[str, ...], why: str = "") -> DataError:
    return DataError(f"{path}: the first line looks like a sample ({', '.join(names[:3])}, ...), not a header{why}; "
                     f"add a first line naming the columns, e.g. x1,x2,...,label")


def _columns_read(path: Path, header: list[str], label_column: str | None, ignore: tuple[str, ...]
                  ) -> tuple[list[int], int]:
    """The indices of the columns a table is read from (every one but the ``ignore`` ones and those a trailing comma
    adds, unnamed at the header's end) and the label column's position among them; DataError for an ignored column
    the header lacks, or that is the label column. An empty name ignores the columns with no name in the header
    (the index pandas' to_csv writes)."""
    label_index = _label_index(path, header, label_column)
    named = [h.strip() for h in header[:_named_width(header)]]
    for name in ignore:
        if name.strip() not in named:
            if not name.strip() and len(named) < len(header):  # '' names none of the unnamed columns at the end
                raise DataError(f"{path}: no column {name!r} to ignore; the columns are "
                                f"{_shown_columns(header[:len(named)])} (and the unnamed one a comma ending each "
                                f"line adds, which is never read)")
            raise DataError(f"{path}: no column {name!r} to ignore; the columns are {_shown_columns(header)}")
        if named[label_index] == name.strip():
            raise DataError(f"{path}: column {name!r} is the label column; it cannot be ignored")
    skipped = {name.strip() for name in ignore}
    take = [i for i, h in enumerate(named) if h not in skipped]
    return take, take.index(label_index)


def ignore_option(name: str) -> str:
    """The ``--ignore-column`` option that leaves out column ``name``, as a shell takes it: ``--ignore-column ''``
    for a column with no name in the header, ``--ignore-column 'unit price'``."""
    return f"--ignore-column {shlex.quote(name.strip())}"


def _check_unique(path: Path, stripped: list[str], names: set[str]) -> None:
    """DataError naming the feature ``names`` that more than one column of the ``stripped`` header has: a saved model
    reads its columns by name, so two of one name could be swapped in a new file and nothing would tell."""
    positions: dict[str, list[int]] = {}
    for i, h in enumerate(stripped):
        if h in names:
            positions.setdefault(h, []).append(i + 1)
    same = {name: at for name, at in positions.items() if len(at) > 1}
    if not same:
        return
    said = [f"columns {', '.join(map(str, at[:-1]))} and {at[-1]} are each named {name!r}" for name, at in same.items()]
    raise DataError(f"{path}: {'; '.join(said[:3])}{'; ...' if len(said) > 3 else ''}: rename all but one"
                    f"{' of each' if len(same) > 1 else ''} (columns are read by name, and a saved model could not "
                    f"tell them apart)")


def _named_width(header: list[str]) -> int:
    """The number of columns of ``header`` but the unnamed ones at its end (a trailing comma on every line)."""
    stripped = [h.strip() for h in header]
    while len(stripped) > 1 and not stripped[-1]:
        stripped.pop()
    return len(stripped)


def _shown_columns(header: list[str]) -> str:
    return ", ".join(repr(h) for h in header[:20]) + (", ..." if len(header) > 20 else "")


def _label_index(path: Path, header: list[str], label_column: str | None) -> int:
    """Index of the label column in ``header``: the named one, or the last; its name must be no other column's."""
    stripped = [h.strip() for h in header]
    if label_column is not None and label_column.strip() not in stripped:
        raise DataError(f"{path}: no label column {label_column!r}; the columns are {_shown_columns(header)}")
    index = _named_width(header) - 1 if label_column is None else stripped.index(label_column.strip())
    same = [i + 1 for i, h in enumerate(stripped) if h == stripped[index]]
    # which is the label would depend on the order, and a saved model could not tell them apart; a first line of
    # values (0,0,5,0) repeats a number and is no header at all, as read_table then says
    if len(same) > 1 and not _looks_like_data(tuple(stripped)):
        raise DataError(f"{path}: columns {', '.join(map(str, same[:-1]))} and {same[-1]} are each named "
                        f"{stripped[index]!r}, the label column's name; rename all but one (columns are told "
                        f"apart by name)")
    return index


def _table_bytes(path: Path, size: int, n_features: int) -> int:
    """Estimated bytes of the parsed table: rows guessed from the first 64 KiB, times features, float32, twice."""
    with open(path, "rb") as f:
        sample = f.read(1 << 16)
    rows = size * max(sample.count(b"\n"), 1) / max(len(sample), 1)
    return int(2 * rows * n_features * 4)


def _parse_rows(
    path: Path, rows: list[list[str]], lines: list[int], label_index: int, names: tuple[str, ...],
    first_row: int, labels: list[str], text: TableText, empty_label: str | None = None,
) -> np.ndarray:
    """Feature cells of ``rows`` as float32 (len(rows), D) (columns of text as codes, see ``TableText``); appends the
    label cells to ``labels`` (a missing one as ``empty_label`` when ``text.missing_ok``)."""
    cells = [row[:label_index] + row[label_index + 1:] for row in rows]
    X = None
    if not text.values and not any("_" in "".join(row) for row in cells):  # NumPy reads 1_000 as 1000 (3_1 as 31)
        try:
            X = np.array(cells, dtype=np.float64)
            text.numeric.update(range(len(names)))  # text in a later read is among numbers, not a column of text
        except ValueError:
            pass
    if X is None or np.isnan(X).any():  # a nan cell is a missing value: read cell by cell, which names it
        X = _parse_cells(path, cells, lines, names, first_row, text)
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf, reported below
        X32 = X.astype(np.float32)
    for c in _wide_columns(X):  # judged once the file is read (_table_merged)
        text.wide.setdefault(int(c), []).append((first_row, len(X), np.unique(X[:, c])))
    for r, c in np.argwhere(~np.isfinite(X32)):
        if not _is_missing(cells[r][c]):
            raise DataError(f"{path}: row {first_row + r + 1} (line {lines[r]}) column {names[c]!r}: "
                            f"{cells[r][c][:40]!r} is NaN or infinite in float32")
    for r, row in enumerate(rows):
        label = row[label_index].strip()
        if not label or (text.missing_ok and _is_missing(label, text=True)):
            if empty_label is None:
                raise DataError(f"{path}: row {first_row + r + 1} (line {lines[r]}) has an empty label: fill it in or "
                                f"delete the row, or train with --missing mean or --missing drop, which drop the rows "
                                f"without a label")
            label = empty_label
        labels.append(label)
    return X32


def _parse_cells(path: Path, cells: list[list[str]], lines: list[int], names: tuple[str, ...], first_row: int,
                 text: TableText) -> np.ndarray:
    """Feature cells as float64 (N, D) one by one: numbers, codes of the columns of text (a column all text is one when
    ``text.discover``), NaN for a missing cell when ``text.missing_ok``; else DataError naming the cell."""
    X = np.full((len(cells), len(names)), np.nan)

    def where(r: int) -> str:
        return f"row {first_row + r + 1} (line {lines[r]})"

    for c, name in enumerate(names):
        if c in text.mixed:  # refused once the whole file is read
            X[:, c] = 0.0
            continue
        column = [row[c] for row in cells]
        if c not in text.values and not any("_" in cell for cell in column):
            try:  # a column of numbers alone, read at once
                X[:, c] = np.array(column, dtype=np.float64)
                text.numeric.add(c)
                continue
            except ValueError:
                pass
        if c not in text.values:
            numbers = [is_number_text(cell) for cell in column]
            words = [r for r, cell in enumerate(column) if not numbers[r] and not _is_missing(cell)]
            if not words:
                for r in np.flatnonzero(numbers):
                    X[r, c] = float(column[r])
                text.numeric.update([c] if any(numbers) else [])
                continue
            if not text.discover:
                raise DataError(f"{path}: {where(words[0])} column {name!r}: {column[words[0]][:40]!r} is not a number")
            if c in text.numeric:
                # text after rows of numbers alone: a typo, or a column of codes such as Titanic's tickets (113803,
                # A/5 21171), refused in read_table with the other columns that cannot be trained on; numbers among
                # text (red, blue, 1) are its categories, until read_table counts them
                text.mixed[c], X[:, c] = (column[words[0]], where(words[0])), 0.0
                continue
            text.values[c], text.first[c] = {}, (column[words[0]].strip(), where(words[0]))
        codes, read = text.values[c], dict[str, float]()  # read: each cell's code, found once per distinct cell
        for r, cell in enumerate(column):
            if cell not in read:
                read[cell] = np.nan if _is_missing(cell, text=True) else codes.setdefault(cell.strip(), len(codes))
            X[r, c] = read[cell]
    if not text.missing_ok and np.isnan(X).any():
        for r, row in enumerate(cells):
            for c, cell in enumerate(row):
                if _is_missing(cell, c in text.values):
                    what = "empty" if not cell.strip() else repr(cell.strip())
                    raise _MissingValue(f"{path}: {where(r)} column {names[c]!r} is {what} (a missing value)",
                                        _missing_rows(cells[r + 1:], lines[r + 1:], first_row + r + 1, text),
                                        text.discover)
    return X


def _is_missing(cell: str, text: bool = False) -> bool:
    """Whether a CSV cell stands for a missing value: empty, or as spreadsheets, R and pandas write one (NA, ?); in a
    column of numbers (not ``text``) None, null and NaN too."""
    word = cell.strip().lower()
    return not word or word in MISSING_CELLS or (not text and word in MISSING_NUMBERS)


def missing_words(cells: Iterable[str]) -> frozenset[str]:
    """The cells (lower case) that stand for a missing value in a column of ``cells`` (a label column, class names):
    MISSING_CELLS, and MISSING_NUMBERS too when its other cells are numbers."""
    others = {cell.strip().lower() for cell in cells} - MISSING_CELLS - MISSING_NUMBERS - {""}
    return MISSING_CELLS | MISSING_NUMBERS if all(map(is_number_text, others)) else MISSING_CELLS


class _MissingValue(DataError):
    """A missing value in a table's rows read so far: ``head`` names the first, ``rows`` (row, line) the others
    after it among those rows; ``_read_rows`` adds the rest of the file's before it is raised as a DataError."""

    def __init__(self, head: str, rows: list[tuple[int, int]], training: bool) -> None:
        super().__init__(head + _more_missing(rows, training))
        self.head, self.rows = head, rows


def _missing_rows(cells: list[list[str]], lines: list[int], first_row: int, text: TableText
                  ) -> list[tuple[int, int]]:
    """(row, line) of each row of ``cells`` (the first numbered ``first_row`` + 1) with a missing value."""
    return [(first_row + r + 1, lines[r]) for r, row in enumerate(cells) if text.misses(row)]


def _more_missing(rows: list[tuple[int, int]], training: bool, shown: int = 5) -> str:
    """The end of the error for a missing value: the other ``rows`` (row, line) that miss one too, so that all are
    mended at once, and what to do (``training``: what --missing does too)."""
    option = ", or train with --missing mean (fill in the training split's mean) or --missing drop" if training else ""
    if not rows:
        return f": fill it in or delete the row{option}"
    listed = ", ".join(f"{row} (line {line})" for row, line in rows[:shown])
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    have = f"rows {listed}{more} have" if len(rows) > 1 else f"row {listed} has"
    return f"; {have} one too: fill them in or delete those rows{option}"


def is_number_text(cell: str) -> bool:
    """Whether text (a CSV cell, a bound of a search range) is a number as a table means it: Python's digit
    separators (1_000) are not."""
    if "_" in cell:
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# image folders


def list_image_folder(path: Path, unlabelled: bool = False) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Class names (sorted subfolder names) and (image file, class index) pairs of an image folder. With
    ``unlabelled``, a folder of images without subfolders (new images to score) gives no classes and index -1."""
    try:
        classes = tuple(sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")))
    except OSError as exc:
        raise cannot_read(path, exc) from exc
    found = _image_files(path)
    images = len(found)
    if classes and images:  # no class names them: they would be neither trained on nor scored
        raise DataError(f"{path}: {images} image{'s' if images > 1 else ''} beside the class subfolders "
                        f"({found[0].name}{', ...' if images > 1 else ''}), which no class names; move each into its "
                        f"class's subfolder, or out of the folder")
    if not classes:
        if images and unlabelled:
            return (), [(image, -1) for image in found]
        if images:
            raise DataError(f"{path}: {images} image{'s' if images > 1 else ''} but no class subfolders; expected one "
                            "subfolder per class holding PNG or JPEG images (its name is the images' label)")
        try:  # a folder holding the user's table (data/ with data.csv in it) is not empty: name the file to give
            others = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError as exc:
            raise cannot_read(path, exc) from exc
        if not others:
            raise DataError(f"{path}: empty folder; expected one subfolder per class holding PNG or JPEG images")
        tables = [name for name in others if Path(name).suffix.lower() in FILE_FORMATS]
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        hint = f"; to read a table or array, give the file itself (--data {path / tables[0]})" if tables else ""
        files = f"{len(others)} file{'s' if len(others) > 1 else ''}"
        raise DataError(f"{path}: no images or class subfolders, only {files} ({shown}); an image folder holds one "
                        f"subfolder per class of PNG or JPEG images{hint}")
    files: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        _refuse_nested_images(path / name)
        images = _image_files(path / name)
        if not images:
            others = _other_files(path / name)
            kinds = "" if not others else (
                f" ({len(others)} file{'s' if len(others) > 1 else ''} of another kind, e.g. {others[0].name}: only "
                f"{IMAGE_SUFFIXES_TEXT} are read; convert them to PNG)")
            raise DataError(f"{path}: class folder {name!r} holds no PNG or JPEG images{kinds}")
        files.extend((image, index) for image in images)
    return classes, files


def _refuse_nested_images(folder: Path) -> None:
    """DataError naming a subfolder of the class folder ``folder`` that holds images: a class's images are the files
    directly in its folder, so these would be neither trained on nor scored, and nothing said so."""
    try:
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise cannot_read(folder, exc) from exc
    here = folder.resolve()
    for sub in subfolders:
        if sub.resolve() == here or sub.resolve() in here.parents:
            continue  # a link back to the class folder or above it (a loop): its images are read, or are no class's
        count = len(_image_files(sub))
        if count:
            them = "them" if count > 1 else "it"
            raise DataError(f"{sub}: a folder inside class {folder.name!r} holding {count} "
                            f"image{'s' if count > 1 else ''}, which would not be read (a class's images are the files "
                            f"directly in its folder); move {them} up into {folder.name!r}, or out of the image folder")


def _image_files(folder: Path) -> list[Path]:
    """The PNG and JPEG files in ``folder``, sorted; DataError naming one of their names that is neither a file nor a
    folder (a link to nothing, a FIFO): left out, its image was not trained on, and nothing said so."""
    try:
        named = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise cannot_read(folder, exc) from exc
    odd = next((p for p in named if not p.is_file() and not p.is_dir()), None)
    if odd is not None:
        what = (f"a link to {os.readlink(odd)!r}, which does not exist" if odd.is_symlink() and not odd.exists()
                else "not a regular file")
        raise DataError(f"{odd}: {what}; an image folder holds PNG or JPEG files")
    return [p for p in named if p.is_file()]


def _other_files(folder: Path) -> list[Path]:
    """The files in ``folder`` that are no PNG or JPEG by name (a GIF, a BMP, a note), sorted; hidden files and the
    thumbnail databases systems write are not counted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() not in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and p.name.lower() not in SYSTEM_FILES and p.is_file())


def unread_files_warning(path: Path) -> str | None:
    """The warning that the class subfolders of the image folder ``path`` (or, without any, the folder itself) hold
    files that are not read, being no PNG or JPEG by name, or None."""
    try:
        classes = [d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")]
        others = [file for folder in sorted(classes) or [path] for file in _other_files(folder)]
    except OSError:
        return None  # said where the folder is read
    if not others:
        return None
    n = len(others)
    return (f"{n} file{'s' if n > 1 else ''} in {'the class folders' if classes else path.name or path} "
            f"{'are' if n > 1 else 'is'} not read, being no PNG or JPEG image by name (e.g. "
            f"{others[0].relative_to(path).as_posix()}): only {IMAGE_SUFFIXES_TEXT} are read; convert "
            f"{'them' if n > 1 else 'it'} to PNG to have {'them' if n > 1 else 'it'} read")


def read_image_folder(
    path: Path, image_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[int, int, int]]:
    """X float32 (N, C*H*W) in [0, 1], y int64 (N,), class names, image shape (C, H, W) of an image folder of class
    subfolders (see ``read_images``)."""
    classes, files = list_image_folder(path)
    X, y, shape = read_images(path, files, image_size)
    return X, y, classes, shape


def read_images(
    path: Path, files: list[tuple[Path, int]], image_size: tuple[int, int] | None, colour: bool = False
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """X float32 (N, C*H*W) in [0, 1], y int64 (N,) and image shape (C, H, W) of the (image file, class index) pairs
    ``list_image_folder`` gave for folder ``path``; C is 3 if any image has colour or ``colour`` is set (a grey image
    is then three equal channels, as in a folder where others have colour)."""
    from PIL import Image

    sizes: dict[tuple[int, int], Path] = {}
    for file, _ in files:  # headers only: sizes and modes
        with _open_image(file) as image:
            sizes.setdefault(image.size, file)
            colour = colour or image.mode not in GREY_MODES
    if image_size is None and len(sizes) > 1:
        (size_a, file_a), (size_b, file_b) = list(sizes.items())[:2]
        raise DataError(f"{path}: images of different sizes, {size_a[0]}x{size_a[1]} ({file_a.relative_to(path)}) "
                        f"and {size_b[0]}x{size_b[1]} ({file_b.relative_to(path)}); give image_size (--image-size WxH) "
                        f"to resize them")
    width, height = image_size if image_size is not None else next(iter(sizes))
    channels = 3 if colour else 1
    check_memory(len(files) * channels * height * width * 4, str(path), f"{len(files)} images")
    X = np.empty((len(files), channels * height * width), dtype=np.float32)
    for i, (file, _) in enumerate(files):
        with _open_image(file) as image:
            try:
                deep = image.mode in DEEP_GREY_MODES
                image = image.convert("F" if deep else "RGB" if colour else "L")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3) or (H, W)
                if deep:
                    # 65535 is 255; mode I holds 32-bit levels too (a TIFF under a .png name), kept within 16 bits
                    pixels = np.clip(pixels, 0, 65535) / np.float32(257)
                    pixels = np.repeat(pixels[:, :, None], 3, axis=2) if colour else pixels
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise read_error(file, exc, "not a readable image, corrupt or truncated") from exc
        X[i] = (pixels.transpose(2, 0, 1) if colour else pixels).ravel()
    X /= np.float32(255)
    y = np.array([label for _, label in files], dtype=np.int64)
    return X, y, (channels, height, width)


def _open_image(file: Path) -> PILImage:
    """Pillow's lazy open (header only); DataError naming the file when it is not a readable image, or has more pixels
    than Pillow opens without suspecting a decompression bomb (between that and twice it, Pillow itself only prints a
    warning of two lines beside the command's own)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{file}: refused: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise read_error(file, exc, "not a readable image, corrupt or truncated") from exc
