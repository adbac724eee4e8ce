"""Fence outlines in a local frame (x along the road, y away from it, metres): construction
sites (plain, with a hole, or split in two), landfills, quays and restricted blocks.
"""

from __future__ import annotations

import numpy as np
from shapely import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry


def parcel(rng: np.random.Generator, a: float, b: float, n: int) -> np.ndarray:
    """A land parcel: a rectangle with n-4 extra, slightly jittered vertices on its sides."""
    corners = np.array([(-a, -b), (a, -b), (a, b), (-a, b)]) / 2
    corners += rng.uniform(-0.04, 0.04, (4, 2)) * min(a, b)
    extra = rng.multinomial(max(n - 4, 0), [0.25] * 4)
    ring = []
    for k in range(4):
        p0, p1 = corners[k], corners[(k + 1) % 4]
        ring.append(p0[None])
        t = np.sort(rng.uniform(0.15, 0.85, extra[k]))
        normal = np.array([-(p1 - p0)[1], (p1 - p0)[0]]) / np.hypot(*(p1 - p0))
        off = rng.uniform(-0.07, 0.07, extra[k]) * min(a, b)
        ring.append(p0 + t[:, None] * (p1 - p0) + off[:, None] * normal)
    return np.vstack(ring)


def blob(rng: np.random.Generator, r: float, n: int, aspect: float) -> np.ndarray:
    """An irregular star-shaped outline (always simple: angles strictly increase)."""
    ang = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
    rad = r * rng.uniform(0.72, 1.0, n)
    return np.column_stack([rad * np.cos(ang) * aspect, rad * np.sin(ang)])


def construction_shape(rng: np.random.Generator, style: str) -> BaseGeometry:
    """A 80–300 m site with 5–12 vertices; ``style`` is plain, hole or multi."""
    if style == "multi":
        a1, a2 = rng.uniform(70, 140, 2)
        b1, b2 = rng.uniform(80, 180, 2)
        gap = rng.uniform(20, 45)
        p1 = parcel(rng, a1, b1, int(rng.integers(4, 7))) + np.array([-(a1 + gap) / 2, 0])
        p2 = parcel(rng, a2, b2, int(rng.integers(4, 7))) + np.array([(a2 + gap) / 2, 0])
        return MultiPolygon([Polygon(p1), Polygon(p2)])
    n = int(rng.integers(5, 13))
    if style == "hole" or rng.random() < 0.6:
        a = rng.uniform(110 if style == "hole" else 80, 300)
        b = float(np.clip(a * rng.uniform(0.55, 1.5), 100 if style == "hole" else 80, 300))
        shell = Polygon(parcel(rng, a, b, n))
        if style != "hole":
            return shell
        hw, hh = a * rng.uniform(0.12, 0.2), b * rng.uniform(0.12, 0.2)
        hole = np.array([(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)])
        hole += rng.uniform(-0.05, 0.05, 2) * [a, b]
        return Polygon(shell.exterior.coords, [hole])
    aspect = rng.uniform(1.0, 1.5)
    return Polygon(blob(rng, rng.uniform(45, 150 / aspect), n, aspect))


def disposal_shape(rng: np.random.Generator) -> BaseGeometry:
    """A 300–800 m landfill/quarry outline."""
    aspect = rng.uniform(1.0, 1.6)
    return Polygon(blob(rng, rng.uniform(150, 400 / aspect), int(rng.integers(8, 15)), aspect))


def dock_shape(rng: np.random.Generator) -> BaseGeometry:
    """A quay: long along the shore, shallow inland."""
    a, b = rng.uniform(180, 450), rng.uniform(80, 200)
    return Polygon(parcel(rng, a, b, int(rng.integers(4, 7))))


def zone_shape(rng: np.random.Generator) -> BaseGeometry:
    """A small (150–500 m) school/hospital/residential block."""
    if rng.random() < 0.5:
        a, b = rng.uniform(150, 500), rng.uniform(150, 400)
        return Polygon(parcel(rng, a, b, int(rng.integers(4, 8))))
    return Polygon(blob(rng, rng.uniform(80, 220), int(rng.integers(6, 11)), 1.0))

