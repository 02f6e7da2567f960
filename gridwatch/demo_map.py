"""The demo city's map: boundary polygons for every area and each venue's place inside its grid.

The city's extent is cut into its districts, each district into its subdistricts and so on down
to the grids (a treemap: halves of about equal weight, cut across the longer side), so every
area nests inside its parent. The straight cuts are then bent by one smooth displacement field
applied to every vertex, after each ring has been given every vertex lying on its edges: shared
edges stay shared, children stay inside their parents, and the map looks like streets and rivers
drew it rather than a ruler. Venues sit in the middle part of their grid, bent the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from registry.model import Area, Location

Box = tuple[float, float, float, float]  # west, south, east, north (degrees)
Point = tuple[float, float]  # lon, lat

EXTENT: Box = (120.33, 36.03, 120.47, 36.13)  # a coastal city's centre, about 12 km by 11 km
_STEP = 0.003  # vertices along every edge at least this close, so the bend shows
_BEND = 0.0012  # how far the bend moves a point at most (about 120 m)
_LAT_SCALE = math.cos(math.radians(36.08))  # a degree of longitude is this many of latitude


def _bend(p: Point) -> Point:
    x, y = p
    dx = math.sin(x * 310 + y * 170 + 0.7) + 0.5 * math.sin(y * 520 - x * 90 + 2.1)
    dy = math.sin(y * 290 - x * 210 + 1.3) + 0.5 * math.sin(x * 480 + y * 60 + 0.4)
    return (x + _BEND * dx / 1.5, y + _BEND * dy / 1.5)


def _split(items: Sequence[tuple[str, int]], box: Box, out: dict[str, Box]) -> None:
    """Cut `box` among `items` (id, weight): two halves of about equal weight, recursively."""
    if len(items) == 1:
        out[items[0][0]] = box
        return
    total = sum(w for _, w in items)
    run, cut = 0, 1
    for i, (_, w) in enumerate(items[:-1], start=1):
        run += w
        cut = i
        if run * 2 >= total:
            break
    share = sum(w for _, w in items[:cut]) / total
    west, south, east, north = box
    if (east - west) * _LAT_SCALE >= north - south:
        mid = west + (east - west) * share
        _split(items[:cut], (west, south, mid, north), out)
        _split(items[cut:], (mid, south, east, north), out)
    else:
        mid = north - (north - south) * share
        _split(items[:cut], (west, mid, east, north), out)
        _split(items[cut:], (west, south, east, mid), out)


def tile(areas: Sequence[Area], extent: Box = EXTENT) -> dict[str, Box]:
    """Every area's box: the city gets the extent, each area's children cut its box."""
    children: dict[str | None, list[Area]] = {}
    for a in areas:
        children.setdefault(a.parent, []).append(a)

    def weight(a: Area) -> int:
        kids = children.get(a.id, [])
        return sum(weight(k) for k in kids) if kids else 1

    boxes: dict[str, Box] = {}

    def cut(a: Area, box: Box) -> None:
        boxes[a.id] = box
        kids = children.get(a.id, [])
        if kids:
            parts: dict[str, Box] = {}
            _split([(k.id, weight(k)) for k in kids], box, parts)
            for k in kids:
                cut(k, parts[k.id])

    for root in children.get(None, []):
        cut(root, extent)
    return boxes


def _key(p: Point) -> Point:
    return (round(p[0], 9), round(p[1], 9))


def _ring(box: Box, corners: Sequence[Point]) -> list[Point]:
    """The box's outline counter-clockwise, through every corner of any box on its edges and
    through the points of one lattice (multiples of _STEP), so that two rings along the same
    line have the same vertices there."""
    west, south, east, north = box
    sides = [((west, south), (east, south)), ((east, south), (east, north)),
             ((east, north), (west, north)), ((west, north), (west, south))]  # fmt: skip
    ring: list[Point] = []
    for (x0, y0), (x1, y1) in sides:
        along = 0 if y0 == y1 else 1  # the sides are level or upright
        a0, a1 = (x0, x1) if along == 0 else (y0, y1)
        fixed = y0 if along == 0 else x0
        lo, hi = min(a0, a1), max(a0, a1)
        stops = {a0}
        stops.update(k * _STEP for k in range(math.floor(lo / _STEP) + 1, math.ceil(hi / _STEP))
                     if lo + 1e-9 < k * _STEP < hi - 1e-9)  # fmt: skip
        for c in corners:  # a neighbour's corner on this side (a T-junction)
            if abs(c[1 - along] - fixed) < 1e-9 and lo + 1e-9 < c[along] < hi - 1e-9:
                stops.add(c[along])
        for a in sorted(stops, reverse=a1 < a0):
            ring.append((a, fixed) if along == 0 else (fixed, a))
    return ring + ring[:1]


def boundaries(areas: Sequence[Area], extent: Box = EXTENT) -> dict[str, dict[str, Any]]:
    """A GeoJSON Polygon per area, children inside their parents, neighbours sharing edges.
    Corners of the cells are where the lattice meets: the shared vertices make it exact."""
    boxes = tile(areas, extent)
    corners = sorted({_key((x, y)) for w, s, e, n in boxes.values()
                      for x, y in ((w, s), (e, s), (e, n), (w, n))})  # fmt: skip
    out = {}
    for area_id, box in boxes.items():
        ring = [_bend(p) for p in _ring(box, corners)]
        out[area_id] = {
            "type": "Polygon",
            "coordinates": [[[round(x, 5), round(y, 5)] for x, y in ring]],
        }
    return out


def place(box: Box, index: int, count: int) -> Location:
    """Where the index-th of `count` venues of a grid stands: spread over the middle half of the
    grid's box, bent like the boundaries (so it stays inside)."""
    west, south, east, north = box
    cols = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / cols))
    col, row = index % cols, index // cols
    x = west + (east - west) * (0.25 + 0.5 * (col + 0.5) / cols)
    y = south + (north - south) * (0.25 + 0.5 * (row + 0.5) / rows)
    bx, by = _bend((x, y))
    return Location(lat=round(by, 6), lon=round(bx, 6))
