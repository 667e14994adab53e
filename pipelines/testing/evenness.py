"""How even a fused volume is, against the synthetic phantom: the figures of issue 15.

- `relative_error`: RMS of (fused - truth) / RMS of truth, after one global linear fit
  (a * fused + b) and block means over `bin` voxels per axis, so that the photon noise
  of single voxels (7 % at the phantom's background) does not hide the shading errors
  the corrections remove.
- `seam_contrast`: at each border between two neighbouring tiles (fused with `closest`,
  so a border is a sharp line half way across the overlap), the step of the error (fused,
  after the global fit, minus truth) from just before to just after the border, relative
  to the truth's mean there, averaged over all borders. The phantom's own structure
  cancels (it is in both); shading and gain errors make the steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def block_means(volume: np.ndarray, size: int) -> np.ndarray:
    """Means of `size`^3 blocks (z, y, x; fewer along an axis shorter than `size`)."""
    steps = [min(size, n) for n in volume.shape]
    cut = volume[tuple(slice(0, n - n % s) for n, s in zip(volume.shape, steps))]
    shape = [v for n, s in zip(cut.shape, steps) for v in (n // s, s)]
    return cut.reshape(shape).mean(axis=(1, 3, 5))


def global_fit(fused: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares a * fused + b ~ truth."""
    f, t = np.asarray(fused, dtype=np.float64).ravel(), np.asarray(truth, dtype=np.float64).ravel()
    design = np.stack([f, np.ones_like(f)], axis=1)
    a, b = np.linalg.lstsq(design, t, rcond=None)[0]
    return float(a), float(b)


def relative_error(fused: np.ndarray, truth: np.ndarray, size: int = 4) -> float:
    """Relative RMS error of `fused` against `truth` after the best global a * fused + b."""
    f, t = (block_means(np.asarray(v, dtype=np.float64), size) for v in (fused, truth))
    a, b = global_fit(f, t)
    return float(np.sqrt(np.mean((a * f + b - t) ** 2)) / np.sqrt(np.mean(t ** 2)))


def seam_contrast(fused: np.ndarray, truth: np.ndarray, positions: Sequence[Sequence[int]],
                  size: Sequence[int], width: int = 2) -> float:
    """Mean relative step of the error across the borders between x- and y-neighbours of
    tiles at `positions` (x, y, z voxels in the fused volume) of `size` (x, y, z)."""
    a, b = global_fit(fused, truth)
    error = a * np.asarray(fused, dtype=np.float64) + b - truth
    steps = []
    for axis in (0, 1):   # x, y
        for p in positions:
            for q in positions:
                if _neighbours(p, q, size, axis):
                    steps.append(_step(error, truth, p, q, size, axis, width))
    return float(np.mean(steps)) if steps else 0.0


def _neighbours(a, b, size, axis: int) -> bool:
    """b follows a along `axis` (overlapping), in the same row and slab."""
    other = [k for k in range(3) if k != axis]
    return 0 < b[axis] - a[axis] < size[axis] and all(abs(b[k] - a[k]) < size[k] / 2 for k in other)


def _step(error: np.ndarray, truth: np.ndarray, a, b, size, axis: int, width: int) -> float:
    """The error's step at the border half way across a's and b's overlap, relative to
    the truth's mean there."""
    middle = int((a[axis] + size[axis] + b[axis]) // 2)
    other = 1 - axis
    lo, hi = max(a[other], b[other]), min(a[other], b[other]) + size[other]
    zlo, zhi = max(a[2], b[2]), min(a[2], b[2]) + size[2]
    # (along `axis`, z, along the other axis): x, z, y or y, z, x
    band, level = (np.moveaxis(v[zlo:zhi], 2 - axis, 0)[:, :, lo:hi] for v in (error, truth))
    before = band[middle - width - 1:middle - 1].mean()
    after = band[middle + 1:middle + width + 1].mean()
    return float(abs(after - before) / level[middle - width - 1:middle + width + 1].mean())
