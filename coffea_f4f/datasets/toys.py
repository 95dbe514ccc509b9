"""The 2D toy shapes of the flows-for-flows paper (arXiv:2309.06472), plus a few extras.

:func:`toy` draws one of the shapes named in :data:`TOY_NAMES`, seeded and vectorized with numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._checks import _check_n, _unknown_choice

__all__ = ["TOY_NAMES", "toy"]


def _toy_gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, 2))


# mean and Cholesky factor of the shifted gaussian: std 1.0 and 0.5 along axes rotated by 30
# degrees, centred at (1, -0.5) -> correlation ~0.55 between x and y
_SHIFT_MEAN = np.array([1.0, -0.5])
_COS30, _SIN30 = math.cos(math.pi / 6), math.sin(math.pi / 6)
_SHIFT_ROT = np.array([[_COS30, -_SIN30], [_SIN30, _COS30]])
_SHIFT_CHOL = np.linalg.cholesky(_SHIFT_ROT @ np.diag([1.0, 0.25]) @ _SHIFT_ROT.T)


def _toy_shifted_gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    return _SHIFT_MEAN + rng.standard_normal((n, 2)) @ _SHIFT_CHOL.T


_STAR_ARMS = 5
_STAR_LENGTH = 3.2


def _toy_star(rng: np.random.Generator, n: int) -> np.ndarray:
    # five arms from the origin; points uniform along each arm with a transverse width that
    # shrinks towards the tip, so the arms taper into the points of a star
    arm = rng.integers(0, _STAR_ARMS, size=n)
    angle = math.pi / 2 + 2 * math.pi * arm / _STAR_ARMS
    r = _STAR_LENGTH * rng.random(n)
    width = 0.06 + 0.28 * (1.0 - r / _STAR_LENGTH)
    t = width * rng.standard_normal(n)
    c, s = np.cos(angle), np.sin(angle)
    return np.column_stack([r * c - t * s, r * s + t * c])


#: Centres and radius of the four small rings of ``"fourcircles"``.
_FOUR_CENTRES = np.array([[-1.6, -1.6], [-1.6, 1.6], [1.6, -1.6], [1.6, 1.6]])
_FOUR_RADIUS = 0.8


def _toy_fourcircles(rng: np.random.Generator, n: int) -> np.ndarray:
    centre = _FOUR_CENTRES[rng.integers(0, 4, size=n)]
    phi = rng.uniform(0.0, 2 * math.pi, size=n)
    r = _FOUR_RADIUS + 0.06 * rng.standard_normal(n)
    return centre + np.column_stack([r * np.cos(phi), r * np.sin(phi)])


def _toy_checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    # 4x4 board of side-2 squares on [-4, 4]^2; a point lies in square (i, j) only if i + j is
    # even, i.e. the squares of one colour
    i = rng.integers(0, 4, size=n)
    j = 2 * rng.integers(0, 2, size=n) + (i % 2)
    u = rng.random((n, 2))
    return -4.0 + 2.0 * (np.column_stack([i, j]) + u)


#: Radii of the rings of ``"concentricrings"``.
_RING_RADII = np.array([0.75, 1.5, 2.25, 3.0])


def _toy_concentricrings(rng: np.random.Generator, n: int) -> np.ndarray:
    # a ring is chosen with probability proportional to its radius (uniform density along arcs)
    ring = rng.choice(len(_RING_RADII), size=n, p=_RING_RADII / _RING_RADII.sum())
    r = _RING_RADII[ring] + 0.07 * rng.standard_normal(n)
    phi = rng.uniform(0.0, 2 * math.pi, size=n)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi)])


def _toy_moons(rng: np.random.Generator, n: int) -> np.ndarray:
    lower = rng.random(n) < 0.5
    t = rng.uniform(0.0, math.pi, size=n)
    x = np.where(lower, 1.0 - np.cos(t), np.cos(t))
    y = np.where(lower, 0.5 - np.sin(t), np.sin(t))
    out = 2.0 * np.column_stack([x - 0.5, y - 0.25])
    return out + 0.1 * rng.standard_normal((n, 2))


def _toy_eightgaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    angle = 2 * math.pi * rng.integers(0, 8, size=n) / 8
    centre = 2.5 * np.column_stack([np.cos(angle), np.sin(angle)])
    return centre + 0.25 * rng.standard_normal((n, 2))


def _toy_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    # two interleaved arms r = theta / pi, theta up to 3 pi; sqrt spreads points evenly in length
    theta = 3 * math.pi * np.sqrt(rng.random(n))
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    r = sign * theta / math.pi
    out = np.column_stack([r * np.cos(theta), r * np.sin(theta)])
    return out + 0.1 * rng.standard_normal((n, 2))


_TOYS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "star": _toy_star,
    "fourcircles": _toy_fourcircles,
    "checkerboard": _toy_checkerboard,
    "concentricrings": _toy_concentricrings,
    "gaussian": _toy_gaussian,
    "shifted_gaussian": _toy_shifted_gaussian,
    "moons": _toy_moons,
    "eightgaussians": _toy_eightgaussians,
    "spirals": _toy_spirals,
}

#: Valid names for :func:`toy`; the first five are the shapes of the flows-for-flows paper.
TOY_NAMES: tuple[str, ...] = tuple(_TOYS)


def toy(name: str, n: int, *, seed: int = 0) -> np.ndarray:
    """Sample a two-dimensional toy distribution.

    All shapes are roughly standardized: values lie within about [-4, 4] with a spread of order
    one. The shapes are:

    - ``"star"``: points along the five tapering arms of a five-pointed star (arm length 3.2).
    - ``"fourcircles"``: four small rings of radius 0.8 centred at (+-1.6, +-1.6).
    - ``"checkerboard"``: uniform on the squares of one colour of a 4x4 board on [-4, 4]^2.
    - ``"concentricrings"``: four concentric rings of radii 0.75, 1.5, 2.25 and 3 with a small
      radial noise (sigma 0.07), uniform density along the arcs.
    - ``"gaussian"``: the standard normal.
    - ``"shifted_gaussian"``: a correlated normal (axes std 1 and 0.5 rotated by 30 degrees)
      centred at (1, -0.5); a standard easy morphing target for ``"gaussian"``.
    - ``"moons"``: two interleaved half circles.
    - ``"eightgaussians"``: eight narrow normals on a circle of radius 2.5.
    - ``"spirals"``: two interleaved spiral arms.

    Args:
        name: One of :data:`TOY_NAMES` (case-insensitive).
        n: Number of points, a non-negative integer.
        seed: Seed for :func:`numpy.random.default_rng`; the same seed gives identical output.

    Returns:
        A float64 array of shape ``(n, 2)``.

    Raises:
        ValueError: If ``name`` is not a known shape (the message lists the valid names and
            suggests close matches) or ``n`` is not a non-negative integer.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _TOYS:
        raise _unknown_choice("toy name", name, TOY_NAMES)
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    out = _TOYS[key](rng, n)
    return np.ascontiguousarray(out, dtype=np.float64).reshape(n, 2)
