"""SALICON fixation files: the per-subject free-viewing fixations of one image from its .mat file.

Layout (salicon.net, 2015/2017 releases): `fixations/{train,val}/COCO_{split}2014_%012d.mat`, holding
`gaze`, one struct per subject with `location`, `timestamp` and `fixations`, the last an (N, 2)
array of [x, y] = [column, row] in 1-based pixels; and `resolution` = [height, width] (480x640).
Points are returned as stored; `saliencylab.hsi.labels.fixation_points` makes them 0-based (row,
column) and drops the off-image ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SaliconFixations:
    """One image's fixations: per subject (N_s, 2) float64 [x, y], 1-based; and the stated (H, W) if any."""

    subjects: tuple[np.ndarray, ...]
    resolution: tuple[int, int] | None

    @property
    def xy(self) -> np.ndarray:
        """All subjects' fixations stacked: (N, 2) float64 [x, y], 1-based."""
        return np.concatenate([*self.subjects, np.zeros((0, 2))], axis=0)


def read_fixations_mat(data: bytes, source: str) -> SaliconFixations:
    """Parse a SALICON fixation .mat file (MATLAB v5, as scipy.io.loadmat reads it).

    Raises:
        ValueError: Naming `source`, if the bytes are not a .mat file, hold no `gaze` struct array
            with a `fixations` field, or a subject's fixations are not (N, 2).
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data))
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... for files it cannot read
        raise ValueError(f"{source} is not a readable .mat file ({type(e).__name__}: {e})") from e
    gaze = mat.get("gaze")
    if not isinstance(gaze, np.ndarray) or gaze.dtype.names is None or "fixations" not in gaze.dtype.names:
        raise ValueError(f"{source} has no SALICON `gaze` struct array with a `fixations` field")
    subjects = []
    for i, entry in enumerate(gaze.ravel()):
        points = np.asarray(entry["fixations"], dtype=np.float64)
        if points.size == 0:
            points = points.reshape(0, 2)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"{source}: subject {i} has fixations of shape {points.shape}, expected (N, 2) [x, y]")
        subjects.append(points)
    resolution = mat.get("resolution")
    size = tuple(int(v) for v in np.asarray(resolution).ravel()[:2]) if resolution is not None else None
    return SaliconFixations(tuple(subjects), size)
