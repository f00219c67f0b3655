"""The contract every streaming detector keeps, and the helpers they share.

A detector watches N series at once (one metric family). :meth:`StreamingDetector.update`
takes one time step, an array of shape ``(N,)``, and returns one score in ``[0, 1]`` per
series for that step. The rules, checked by ``tests/unit/test_detectors_contract.py``:

* Hyperparameters are set only in ``__init__`` (keyword arguments, JSON-friendly values).
* ``NaN`` (or ``inf``) is a missing sample: that series' state is unchanged and its score is 0.
* Finite values are clipped to ``+-VALUE_LIMIT`` so squares cannot overflow.
* A constant series scores 0.
* ``state_dict()`` is JSON-serialisable (NaN is written as ``None``) and
  ``from_state(state_dict())`` continues with identical scores.
* No Python loop over series: a step is one compiled pass per detector over the arrays
  (:func:`kernel`), or a handful of numpy array operations.
* ``protect``: while a series' score is at or above ``protect_level`` its baseline is not
  updated (or only slowly), so an ongoing anomaly does not become the new normal.

The number of series is fixed by the first call to ``update``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

import numba
import numpy as np
from scipy.special import ndtr, ndtri

VALUE_LIMIT = 1e150

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """Compile a per-element loop over a metric family's arrays (numba, cached on disk, IEEE
    semantics: no fast-math; division by zero gives inf or NaN as in numpy, never an exception).

    A detector's step is one such pass over its state instead of dozens of numpy temporaries:
    at 100,000 series a step is bound by memory traffic, and a pass reads and writes each
    state array once."""
    return cast(F, numba.njit(cache=True, error_model="numpy", nogil=True)(fn))


@numba.njit(inline="always")
def ratio(num: float, den: float, ref: float) -> float:
    """Scalar :func:`safe_ratio`, for kernels."""
    mag = abs(num)
    if mag == 0.0:
        return 0.0
    floor = 1e-9 * (abs(ref) + 1e-9)
    return mag / (den if den > floor else floor)


def zeros(shape: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """``np.zeros`` whose memory is written now. Pages that ``np.zeros`` leaves untouched (calloc)
    and a kernel then only reads were measured at ~150 ns per element instead of ~2 on this
    project's VMs, every step, until written; state arrays are therefore filled when allocated."""
    return full(shape, 0, dtype)


def full(shape: int | tuple[int, ...], value: Any, dtype: Any = np.float64) -> np.ndarray:
    """``np.full`` (always writes its memory; see :func:`zeros`)."""
    arr = np.empty(shape, dtype=dtype)
    arr.fill(value)
    return arr


def z_level(level: float) -> float:
    """The z at which ``z_to_score(z)`` reaches ``level``: kernels compare z with it instead of
    computing the normal CDF of every sample (``-inf`` for ``level <= 0``, ``inf`` for ``>= 1``)."""
    if level <= 0.0:
        return -math.inf
    if level >= 1.0:
        return math.inf
    return float(ndtri((1.0 + level) / 2.0))


@kernel
def _prepare(values: np.ndarray, x: np.ndarray, ok: np.ndarray) -> None:
    for i in range(values.shape[0]):
        v = values[i]
        good = math.isfinite(v)
        ok[i] = good
        x[i] = min(max(v, -VALUE_LIMIT), VALUE_LIMIT) if good else 0.0


@kernel
def _finish(s: np.ndarray, ok: np.ndarray, out: np.ndarray) -> None:
    for i in range(s.shape[0]):
        v = s[i]
        out[i] = min(max(v, 0.0), 1.0) if (ok[i] and math.isfinite(v)) else 0.0


def encode_array(arr: np.ndarray) -> dict[str, Any]:
    """An array as JSON-ready data: dtype, shape and a flat list (NaN -> None)."""
    flat = arr.ravel()
    data: list[Any] = flat.tolist()
    if arr.dtype.kind == "f" and bool(np.isnan(flat).any()):
        data = [None if v != v else v for v in data]
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "data": data}


def decode_array(d: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array` (bit-exact for finite floats and NaN)."""
    dtype = np.dtype(d["dtype"])
    data = [np.nan if v is None else v for v in d["data"]] if dtype.kind == "f" else d["data"]
    return np.asarray(data, dtype=dtype).reshape(d["shape"])


def z_to_score(z: np.ndarray) -> np.ndarray:
    """A non-negative z-like statistic as a score: the two-sided normal probability
    ``P(|Z| < z)``, so 1 sigma ~ 0.68, 3 sigma ~ 0.997."""
    return 2.0 * ndtr(z) - 1.0


def safe_ratio(num: np.ndarray, den: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|num| / den`` with ``den`` floored at ``1e-9 * (|ref| + 1e-9)``; exactly 0 where
    ``num == 0`` (so a constant series scores 0, and a first change after a flat line is large)."""
    floor = 1e-9 * (np.abs(ref) + 1e-9)
    mag = np.abs(num)
    return np.where(mag == 0.0, 0.0, mag / np.maximum(den, floor))


class StreamingDetector:
    """Base class: input checks, missing samples, clipping, scores in [0, 1], state round-trip.

    Subclasses set ``name`` and ``_arrays`` (names of their per-series state attributes),
    implement ``_allocate(n)`` and ``_step(x, ok) -> scores`` (``x`` finite, clipped, 0 where
    ``ok`` is False; they must leave the state of series with ``ok == False`` unchanged), and
    keep their hyperparameters in ``self._params`` (via :meth:`_set_params`).

    ``last_raw`` and ``last_warm`` may be buffers that the next step overwrites (an ensemble
    binds them to rows of its own arrays): read them before the next ``update``.
    """

    name: ClassVar[str] = "base"
    _arrays: ClassVar[tuple[str, ...]] = ()
    _free_dims: ClassVar[frozenset[tuple[str, int]]] = frozenset()  # (array, dimension) whose size may vary
    # An Ensemble reads only its members' raw statistics and sets this False on them: their
    # scores are then needed only to compare with a protect level (see _score).
    scores_wanted: bool = True

    def _score(self, z: np.ndarray, warm: np.ndarray, level: float) -> np.ndarray:
        """``z_to_score(z)`` where ``warm`` (0 elsewhere). When scores are not wanted, an array
        that compares with ``level`` exactly as the score would (1.0 where the score reaches
        it: ``z >= z_level(level)``), without the normal CDF of every sample."""
        if self.scores_wanted or not 0.0 < level < 1.0:
            return np.where(warm, z_to_score(z), 0.0)
        return (warm & (z >= z_level(level))).astype(np.float64)

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self.n_series: int | None = None
        self.steps = 0  # update() calls so far (the shared clock, e.g. a seasonal phase)
        self.last_raw = np.zeros(0)  # the last step's raw statistic (>= 0); not state
        self.last_warm = np.zeros(0, dtype=bool)  # where last_raw is meaningful; not state
        self.last_reset = np.zeros(0, dtype=bool)  # where the model changed this step; not state
        self._x, self._ok = np.zeros(0), np.zeros(0, dtype=bool)  # the step's cleaned input (buffers)

    def _set_params(self, **params: Any) -> None:
        self._params = dict(params)

    @property
    def params(self) -> dict[str, Any]:
        """The hyperparameters given to ``__init__``."""
        return dict(self._params)

    # -- subclass hooks ---------------------------------------------------------------------
    def _allocate(self, n: int) -> None:
        raise NotImplementedError

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _buffers(self, n: int) -> None:
        """Allocate the per-step outputs kernels write into (not state)."""
        self.last_raw, self.last_warm = zeros(n), full(n, False, bool)

    # -- public API -------------------------------------------------------------------------
    def update(self, values: Any) -> np.ndarray:
        """One time step for every series; returns scores in [0, 1], shape ``(N,)``."""
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"{self.name}: update() takes one value per series, shape (N,), got {x.shape}")
        if self.n_series is None:
            self.n_series = int(x.shape[0])
            self._allocate(self.n_series)
        elif x.shape[0] != self.n_series:
            raise ValueError(f"{self.name}: expected {self.n_series} series, got {x.shape[0]}")
        if self._x.shape != x.shape:  # first step since allocation or a restore
            self._x, self._ok = np.empty(x.shape), np.empty(x.shape, dtype=bool)
            self._buffers(self.n_series)
        _prepare(x, self._x, self._ok)
        with np.errstate(all="ignore"):
            s = self._step(self._x, self._ok)
        self.steps += 1
        out = np.empty(x.shape)
        _finish(np.asarray(s, dtype=np.float64), self._ok, out)
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable: type, hyperparameters, clock and every state array."""
        state = None
        if self.n_series is not None:
            state = {k: encode_array(getattr(self, k)) for k in self._arrays}
        return {"type": self.name, "params": self.params, "n_series": self.n_series,
                "steps": self.steps, "state": state}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> StreamingDetector:
        """Rebuild a detector from :meth:`state_dict` output; it continues exactly."""
        if d.get("type") != cls.name:
            raise ValueError(f"state is for detector {d.get('type')!r}, not {cls.name!r}")
        det = cls(**d["params"])
        det._load(d)
        return det

    def _load(self, d: dict[str, Any]) -> None:
        self.steps = int(d["steps"])
        if d["n_series"] is not None:
            self.n_series = int(d["n_series"])
            template = type(self)(**self.params)  # what _allocate makes for this many series
            template._allocate(self.n_series)
            for k in self._arrays:
                arr, want = decode_array(d["state"][k]), getattr(template, k)
                # kernels index without bounds checks: a state's arrays must be the shape and
                # type this detector allocates (a dimension in _free_dims may differ)
                fixed = [i for i in range(want.ndim) if (k, i) not in self._free_dims]
                if arr.dtype != want.dtype or arr.ndim != want.ndim or any(
                        arr.shape[i] != want.shape[i] for i in fixed):
                    raise ValueError(f"{self.name} state: {k} is {arr.dtype}{list(arr.shape)}, expected "
                                     f"{want.dtype}{list(want.shape)} for {self.n_series} series")
                setattr(self, k, np.ascontiguousarray(arr))

    def bytes_per_series(self) -> float:
        """Memory of the per-series state arrays divided by the number of series."""
        if not self.n_series:
            return 0.0
        return sum(getattr(self, k).nbytes for k in self._arrays) / self.n_series
