"""Update rules against their textbook formulas."""
from __future__ import annotations

import builtins
import errno
from pathlib import Path

import numpy as np
import pytest

from engine.optim import Adam, Momentum, make_optimizer


def test_in_place_adam_is_the_textbook_update():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((50, 20))
    expected, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    rule = Adam()
    for t in range(1, 8):
        g = rng.standard_normal(w.shape)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected -= 1e-2 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-8)
        rule.step({"w": w}, {"w": g.copy()}, 1e-2)
    assert np.max(np.abs(w - expected)) < 1e-12


def test_adam_is_algorithm_1_with_eps_over_the_root_of_the_second_bias_correction():
    rng = np.random.default_rng(1)
    w = rng.standard_normal(40) * 1e-3
    expected, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    rule = Adam()
    for t in range(1, 6):
        g = rng.standard_normal(w.shape) * 1e-6  # eps matters: a step 23 % shorter than Algorithm 1 at t = 1
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
        expected -= 1e-3 * m_hat / (np.sqrt(v_hat) + 1e-8 / np.sqrt(1 - 0.999**t))
        rule.step({"w": w}, {"w": g.copy()}, 1e-3)
    assert np.max(np.abs(w - expected)) < 1e-15


def test_momentum_and_nesterov_at_a_constant_lr_are_the_velocity_free_textbook_steps():
    """v = mu v - lr g is lr times the buffer b = mu b + g: w -= lr b (momentum), w -= lr (g + mu b) (Nesterov)."""
    rng = np.random.default_rng(2)
    for name in ("momentum", "nesterov"):
        w = rng.standard_normal(30)
        expected, buffer = w.copy(), np.zeros_like(w)
        rule = make_optimizer(name, momentum=0.8)
        for _ in range(6):
            g = rng.standard_normal(w.shape)
            buffer = 0.8 * buffer + g
            expected -= 0.05 * (buffer if name == "momentum" else g + 0.8 * buffer)
            rule.step({"w": w}, {"w": g}, 0.05)
        assert np.max(np.abs(w - expected)) < 1e-13, name


def test_a_decayed_lr_scales_only_the_new_gradients_of_momentum():
    rule = make_optimizer("momentum", momentum=0.5)
    w = np.zeros(1)
    rule.step({"w": w}, {"w": np.ones(1)}, 0.1)  # v = -0.1
    rule.step({"w": w}, {"w": np.ones(1)}, 0.01)  # v = 0.5 * -0.1 - 0.01 = -0.06 (torch's rule: 0.01 * -1.5)
    assert w[0] == pytest.approx(-0.1 - 0.06, abs=1e-15)


def test_momentum_takes_its_mu_from_the_config():
    rule = make_optimizer("nesterov", momentum=0.5)
    assert isinstance(rule, Momentum) and rule.mu == 0.5
    w = np.ones(3)
    momentum = make_optimizer("momentum", momentum=0.5)
    for _ in range(2):
        momentum.step({"w": w}, {"w": np.ones(3)}, 0.1)
    assert np.allclose(w, 1 - 0.1 - (0.5 * 0.1 + 0.1))  # v1 = -0.1, v2 = 0.5 v1 - 0.1


def _steps(rule_name: str, dtype: type, decay: float, fused: bool, monkeypatch, shape=(600, 500)) -> dict:
    """Five steps of one rule on a large matrix and a small bias, with or without the one-pass loops."""
    from engine import kernels
    from engine.optim import SGD

    monkeypatch.setattr(kernels, "MIN_SIZE", 1 << 18 if fused else 1 << 62)
    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal(shape).astype(dtype), "b": rng.standard_normal(shape[1]).astype(dtype)}
    params["W"][0, :3] = [0.0, -0.0, 1e-30]
    rule = (Adam if rule_name == "adam" else SGD)(weight_decay=decay, decayed=frozenset({"W"}))
    for t in range(5):
        grads = {k: rng.standard_normal(p.shape).astype(dtype) * (t + 1) for k, p in params.items()}
        grads["W"][1, :2] = [0.0, -0.0]
        rule.step(params, grads, 3e-3)
    return params


def _bits(a: np.ndarray) -> np.ndarray:
    """The bit patterns of a float array: equal where the numbers, their signs of zero and their NaNs are equal."""
    return a.view(f"u{a.itemsize}")


@pytest.mark.parametrize("rule_name", ["adam", "sgd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay", [0.0, 1e-3])
def test_one_pass_update_of_a_large_matrix_gives_numpys_numbers_to_the_bit(rule_name, dtype, decay, monkeypatch):
    from engine import kernels

    monkeypatch.setattr(kernels, "_compiled", {})
    fused = _steps(rule_name, dtype, decay, True, monkeypatch)
    assert kernels._compiled.get((rule_name, np.dtype(dtype).name)) is not None  # the compiled loop ran
    passes = _steps(rule_name, dtype, decay, False, monkeypatch)
    assert fused["W"].dtype == dtype
    for name in ("W", "b"):
        assert np.array_equal(fused[name], passes[name]), name
        assert np.array_equal(np.signbit(fused[name]), np.signbit(passes[name])), name
    assert np.abs(passes["W"]).max() > 0 and not np.array_equal(passes["W"], _steps(rule_name, dtype, decay + 1e-2,
                                                                                       False, monkeypatch)["W"])


def test_a_non_contiguous_or_small_array_is_updated_by_numpys_passes():
    from engine import kernels

    big = np.zeros((1024, 512), dtype=np.float32)
    assert kernels.usable(big, big.copy())
    assert not kernels.usable(big[:, ::2], big[:, ::2].copy())  # a strided view: reshape(-1) would copy
    assert not kernels.usable(big.T, big.T.copy())
    assert not kernels.usable(big[:10], big[:10].copy())
    assert not kernels.usable(big, big.astype(np.float64))
    read_only = big.copy()
    read_only.flags.writeable = False
    assert not kernels.usable(big, read_only)  # the loops are compiled for writable arrays only
    w = np.asfortranarray(np.ones((1024, 512), dtype=np.float32))
    Adam().step({"w": w}, {"w": np.asfortranarray(np.full((1024, 512), 2.0, dtype=np.float32))}, 0.1)
    assert np.allclose(w, 1 - 0.1)  # first Adam step moves every weight by lr against the gradient's sign


@pytest.mark.parametrize("error", [ImportError, OSError])  # OSError: llvmlite finds no shared library to load
def test_without_a_loadable_numba_numpys_passes_update_the_large_matrix(error, monkeypatch):
    from engine import kernels

    real_import = builtins.__import__

    def import_without_numba(name, *args, **kwargs):
        if name.partition(".")[0] in ("numba", "llvmlite"):
            raise error(f"cannot load {name}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(kernels, "_compiled", {})
    monkeypatch.setattr(builtins, "__import__", import_without_numba)
    without = _steps("adam", np.float32, 1e-3, True, monkeypatch)
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert kernels._compiled and not any(kernels._compiled.values())  # tried once, then NumPy's passes
    passes = _steps("adam", np.float32, 1e-3, False, monkeypatch)
    for name in ("W", "b"):
        assert np.array_equal(_bits(without[name]), _bits(passes[name])), name


def _swap_data_files(cache: Path) -> None:
    """The end of two processes compiling float32 and float64 at once: each data file holds the other's loop."""
    first, second = sorted(cache.rglob("*.nbc"))
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)


CACHE_DAMAGE = {
    "an empty index (a write cut short)": lambda cache: [f.write_bytes(b"") for f in cache.rglob("*.nbi")],
    "a truncated data file": lambda cache: [f.write_bytes(f.read_bytes()[:100]) for f in cache.rglob("*.nbc")],
    "data files of the other dtype": _swap_data_files,
}


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGE))
def test_a_damaged_numba_cache_is_compiled_anew_with_numpys_numbers(damage, tmp_path, monkeypatch):
    numba = pytest.importorskip("numba")
    from engine import kernels

    monkeypatch.setattr(numba.core.config, "CACHE_DIR", str(tmp_path))
    for dtype in (np.float32, np.float64):  # compiled, and cached in tmp_path
        monkeypatch.setattr(kernels, "_compiled", {})
        _steps("sgd", dtype, 1e-3, True, monkeypatch)
    assert len(list(tmp_path.rglob("*.nbc"))) == 2
    CACHE_DAMAGE[damage](tmp_path)
    monkeypatch.setattr(kernels, "_compiled", {})  # as a new process: the loop is read from the cache
    fused = _steps("sgd", np.float32, 1e-3, True, monkeypatch)
    assert any(kernels._compiled.values())  # the compiled loop ran
    passes = _steps("sgd", np.float32, 1e-3, False, monkeypatch)
    for name in ("W", "b"):
        assert np.array_equal(_bits(fused[name]), _bits(passes[name])), name


def test_a_full_disk_under_numbas_cache_is_compiled_around_with_numpys_numbers(tmp_path, monkeypatch):
    numba = pytest.importorskip("numba")
    from engine import kernels

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(numba.core.config, "CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba.core.caching.IndexDataCacheFile, "_open_for_write", full_disk)
    monkeypatch.setattr(kernels, "_compiled", {})
    fused = _steps("adam", np.float32, 1e-3, True, monkeypatch)
    assert any(kernels._compiled.values())
    passes = _steps("adam", np.float32, 1e-3, False, monkeypatch)
    for name in ("W", "b"):
        assert np.array_equal(_bits(fused[name]), _bits(passes[name])), name


def test_a_weight_decay_below_float32s_smallest_number_is_applied_as_numpys_passes_apply_it(monkeypatch):
    """1e-46 is 0 in float32, yet NumPy's passes add w * 0 to the gradient: NaN where w is inf, as Adam's loop."""
    from engine import kernels

    updated = []
    for fused in (True, False):
        monkeypatch.setattr(kernels, "MIN_SIZE", 1 << 18 if fused else 1 << 62)
        w = np.full(1 << 18, 0.5, dtype=np.float32)
        w[:3] = [np.inf, -0.0, 0.0]
        g = np.ones(1 << 18, dtype=np.float32)
        g[:3] = -0.0
        with np.errstate(invalid="ignore"):
            Adam(weight_decay=1e-46, decayed=frozenset({"w"})).step({"w": w}, {"w": g}, 1e-3)
        updated.append(w)
    fused, passes = updated
    assert np.isnan(passes[0]) and passes[3] == np.float32(0.5) - np.float32(1e-3)
    assert np.array_equal(_bits(fused), _bits(passes))
