"""Tracking: identities kept through a crossing, crossings counted once per person, people
walking side by side counted as two (issue 16, cause 4)."""

from __future__ import annotations

import pytest

from edge.vision.motion import Blob
from edge.vision.tracking import Tracker
from tests.vision_support import Figure, counted, footage, line, person

W, H = 320, 180
DOOR = {"name": "door", "purpose": "counting_line", "points": [[0.5, 0.3], [0.5, 1.0]]}


def blob(x: float, y: float, w: int = 12, h: int = 36) -> Blob:
    """A person-sized blob with its foot at (x, y), in frame fractions."""
    px, py = round(x * W - w / 2), round(y * H) - h
    return Blob(px, py, w, h, w * h // 2, ((px + w / 2) / W, (py + h) / H))


def test_two_tracks_passing_through_one_merged_blob_keep_their_identities() -> None:
    """Two people walk towards each other on one row and are one blob while they pass: each
    track comes out on the side its person walked to."""
    tracker = Tracker(max_step=0.12, max_missed=5, width=W, height=H)
    left_to_right = right_to_left = None
    for i in range(30):
        a, b = 0.2 + 0.02 * i, 0.8 - 0.02 * i
        if abs(a - b) < 0.06:  # together: the mask holds one wide blob
            blobs = [Blob(round(min(a, b) * W - 6), 90, round(abs(a - b) * W) + 12, 36, 700,
                          ((a + b) / 2, 126 / H))]  # fmt: skip
        else:
            blobs = [blob(a, 0.7), blob(b, 0.7)]
        tracker.update(blobs)
        if i == 5:
            by_x = sorted(tracker.tracks, key=lambda tr: tr.foot[0])
            left_to_right, right_to_left = by_x[0], by_x[-1]
    assert left_to_right is not None and right_to_left is not None
    assert (
        left_to_right.foot[0] > 0.7 and right_to_left.foot[0] < 0.3
    )  # through the merge, not back


@pytest.mark.parametrize("other_row", [0.7, 0.72])
def test_two_people_crossing_paths_on_a_counting_line_are_counted_once_each(
    other_row: float,
) -> None:
    """They meet right on the line: one crossing each way, not none."""
    figures = [
        Figure(person, line(1, 9, (0.1, 0.7), (0.9, 0.7), 0.2), (40, 40, 160)),
        Figure(person, line(1, 9, (0.9, other_row), (0.1, other_row), 0.2), (150, 60, 30)),
    ]
    _, outputs = footage(figures, 11, {"zones": [DOOR]})
    assert counted(outputs) == (1, 1)


@pytest.mark.parametrize("gap", [0.035, 0.05])
def test_two_people_walking_side_by_side_are_counted_as_two(gap: float) -> None:
    """Walking down the picture side by side, one blob in the mask, across a level line."""
    across = {"name": "door", "purpose": "counting_line", "points": [[0.05, 0.65], [0.95, 0.65]]}
    figures = [
        Figure(person, line(1, 9, (0.3, 0.35), (0.3, 0.95), 0.18), (40, 40, 160)),
        Figure(person, line(1, 9, (0.3 + gap, 0.35), (0.3 + gap, 0.95), 0.18), (150, 60, 30)),
    ]
    _, outputs = footage(figures, 11, {"zones": [across]})
    assert counted(outputs) == (0, 2)
