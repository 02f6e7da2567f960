"""Photo evidence of a task over the real API and PostgreSQL: who uploads and who sees, the size
cap, pictures that are not pictures, the location stripped from real EXIF, and the feedback."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import psycopg
from fastapi.testclient import TestClient

from api import images
from api.routes.photos import MAX_PHOTO_BYTES
from gridwatch.demo import NodeCredentials
from gridwatch.local import LocalStack
from tests.support import rows, scalar
from tests.test_api import _second_grid, client, people_of, raise_incident, sign_in

__all__ = ["client"]  # the fixture, used by name

# Where the pictures were "taken": 39°54'27" N, 116°23'29" E, as EXIF rationals.
LATITUDE = ((39, 1), (54, 1), (2700, 100))
LONGITUDE = ((116, 1), (23, 1), (2900, 100))
MAKE = b"gridwatch-test-camera\x00"


def _rationals(values: tuple[tuple[int, int], ...]) -> bytes:
    return b"".join(struct.pack("<II", n, d) for n, d in values)


def exif_with_gps() -> bytes:
    """A little-endian TIFF block as a phone writes it: IFD0 with Make, Orientation (6: turned
    90°) and a GPS IFD pointer; the GPS IFD with latitude and longitude and their references."""
    ifd0 = 8
    ifd0_size = 2 + 3 * 12 + 4
    make_at = ifd0 + ifd0_size
    gps = make_at + len(MAKE)
    gps_size = 2 + 4 * 12 + 4
    lat_at = gps + gps_size
    lon_at = lat_at + 24
    entry = lambda tag, kind, count, value: struct.pack("<HHI", tag, kind, count) + value  # noqa: E731
    out = b"II*\x00" + struct.pack("<I", ifd0)
    out += struct.pack("<H", 3)
    out += entry(0x010F, 2, len(MAKE), struct.pack("<I", make_at))  # Make, out of line
    out += entry(0x0112, 3, 1, struct.pack("<HH", 6, 0))  # Orientation
    out += entry(0x8825, 4, 1, struct.pack("<I", gps))  # GPSInfo
    out += struct.pack("<I", 0)
    out += MAKE
    out += struct.pack("<H", 4)
    out += entry(1, 2, 2, b"N\x00\x00\x00")
    out += entry(2, 5, 3, struct.pack("<I", lat_at))
    out += entry(3, 2, 2, b"E\x00\x00\x00")
    out += entry(4, 5, 3, struct.pack("<I", lon_at))
    out += struct.pack("<I", 0)
    out += _rationals(LATITUDE) + _rationals(LONGITUDE)
    return out


def jpeg_with_gps(width: int = 64, height: int = 32) -> bytes:
    """A real JPEG (encoded by OpenCV) carrying an Exif APP1 segment with a GPS position."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    data = encoded.tobytes()
    payload = b"Exif\x00\x00" + exif_with_gps()
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + app1 + data[2:]


def png_with_gps() -> bytes:
    ok, encoded = cv2.imencode(".png", np.full((20, 30, 3), 200, np.uint8))
    assert ok
    data = encoded.tobytes()
    body = exif_with_gps()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + body))
    return data[:33] + chunk + data[33:]  # after the signature and IHDR


def ifd0_tags(jpeg: bytes) -> set[int]:
    """IFD0's tags in a JPEG's Exif segment, read independently of api.images."""
    start = jpeg.index(b"Exif\x00\x00") + 6
    tiff = jpeg[start:]
    (ifd0,) = struct.unpack_from("<I", tiff, 4)
    (count,) = struct.unpack_from("<H", tiff, ifd0)
    return {struct.unpack_from("<H", tiff, ifd0 + 2 + 12 * n)[0] for n in range(count)}


def test_photos_are_evidence_only_the_assignee_adds_and_supervisors_see(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    site = nodes[0].site
    task_id = raise_incident(stack.dsn, site)
    other_task = raise_incident(stack.dsn, site, "y")
    worker, dispatcher = people_of(stack.dsn, site)
    me, boss = sign_in(client, worker), sign_in(client, dispatcher)
    url = f"/api/tasks/{task_id}/photos"
    jpeg = jpeg_with_gps()

    def upload(headers: dict[str, str], data: bytes, kind: str = "image/jpeg", **params: str):  # type: ignore[no-untyped-def]
        return client.post(url, content=data, params=params,
                           headers=headers | {"Content-Type": kind})  # fmt: skip

    # Not before handling it, and not by the dispatcher.
    assert upload(me, jpeg).status_code == 409
    for action in ("accept", "start"):
        r = client.post(f"/api/tasks/{task_id}/actions", json={"action": action}, headers=me)
        assert r.status_code == 200, r.text
    refused = upload(boss, jpeg)
    assert refused.status_code == 403 and "assignee" in refused.json()["detail"]

    # The worker's picture: stored without its position, with its orientation and camera.
    first = upload(me, jpeg)
    assert first.status_code == 201, first.text
    photo = first.json()
    assert photo["task_id"] == task_id and photo["uploaded_by"] == worker
    assert photo["location_kept"] is False and photo["content_type"] == "image/jpeg"
    assert (photo["width"], photo["height"]) == (32, 64)  # turned by its Orientation tag
    stored = client.get(f"{url}/{photo['id']}", headers=boss)
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "image/jpeg"
    assert stored.headers["cache-control"] == "no-store"
    assert _rationals(LATITUDE) not in stored.content
    assert _rationals(LONGITUDE) not in stored.content
    assert _rationals(LATITUDE) in jpeg  # (the test's picture did carry it)
    assert ifd0_tags(stored.content) == {0x010F, 0x0112}  # Make and Orientation kept
    assert MAKE in stored.content
    assert cv2.imdecode(np.frombuffer(stored.content, np.uint8), cv2.IMREAD_COLOR) is not None

    # Kept on purpose: the position stays.
    kept = upload(me, jpeg, keep_location="true").json()
    assert kept["location_kept"] is True
    kept_bytes = client.get(f"{url}/{kept['id']}", headers=me).content
    assert kept_bytes == jpeg and 0x8825 in ifd0_tags(kept_bytes)

    # A PNG: its eXIf chunk goes.
    png = png_with_gps()
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None
    third = upload(me, png, "image/png")
    assert third.status_code == 201, third.text
    png_stored = client.get(f"{url}/{third.json()['id']}", headers=boss)
    assert png_stored.headers["content-type"] == "image/png"
    assert b"eXIf" not in png_stored.content and _rationals(LATITUDE) not in png_stored.content

    # Thumbnails are small JPEGs; the list is the same for the assignee and the checker.
    thumb = client.get(f"{url}/{photo['id']}", params={"size": "thumb"}, headers=me)
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    listed = client.get(url, headers=boss).json()
    assert [p["id"] for p in listed] == [photo["id"], kept["id"], third.json()["id"]]
    assert client.get(url, headers=me).json() == listed
    assert listed[0]["uploaded_by_name"] != worker  # the person's name, not the id

    # Outside the area: as if there were no task.
    _second_grid(stack.dsn, site)
    stranger = sign_in(client, "worker-g_other")
    assert client.get(url, headers=stranger).status_code == 404
    assert client.get(f"{url}/{photo['id']}", headers=stranger).status_code == 404
    assert upload(stranger, jpeg).status_code == 404
    assert (
        client.get(f"/api/tasks/{other_task}/photos/{photo['id']}", headers=boss).status_code == 404
    )

    # Every upload is in the audit log, with what was stored.
    audited = rows(stack.dsn, "SELECT person_id, target, detail->>'location_kept' FROM audit_log"
                              " WHERE action = 'task.photo' ORDER BY id")  # fmt: skip
    assert audited == [(worker, str(task_id), "false"), (worker, str(task_id), "true"),
                       (worker, str(task_id), "false")]  # fmt: skip

    # The feedback carries them; photos of another task are refused, nothing else changes.
    feedback = {
        "action": "feedback",
        "note": "door closed",
        "photos": [photo["id"], third.json()["id"]],
    }
    wrong = feedback | {"photos": [photo["id"], 999_999]}
    r = client.post(f"/api/tasks/{task_id}/actions", json=wrong, headers=me)
    assert r.status_code == 409 and "999999" in r.json()["detail"]
    assert (
        scalar(stack.dsn, "SELECT state::text FROM tasks WHERE id = %s", (task_id,)) == "handling"
    )
    r = client.post(f"/api/tasks/{task_id}/actions", json=feedback, headers=me)
    assert r.status_code == 200, r.text
    events = client.get(f"/api/tasks/{task_id}/events", headers=boss).json()
    assert events[-1]["action"] == "feedback"
    assert events[-1]["photos"] == sorted([photo["id"], third.json()["id"]])
    assert all(e["photos"] == [] for e in events[:-1])
    # Once the feedback is in, no more uploads; the photos stay readable to the checker.
    assert upload(me, jpeg).status_code == 409
    assert client.get(url, headers=boss).status_code == 200


def test_photo_refusals_say_what_is_wrong(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    site = nodes[0].site
    task_id = raise_incident(stack.dsn, site)
    worker, _ = people_of(stack.dsn, site)
    me = sign_in(client, worker)
    for action in ("accept", "start"):
        client.post(f"/api/tasks/{task_id}/actions", json={"action": action}, headers=me)
    url = f"/api/tasks/{task_id}/photos"
    jpeg = jpeg_with_gps()

    def upload(data: bytes, kind: str = "image/jpeg"):  # type: ignore[no-untyped-def]
        return client.post(url, content=data, headers=me | {"Content-Type": kind})

    too_big = upload(jpeg + bytes(MAX_PHOTO_BYTES))
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "too_large"
    assert "a photo is larger than" in too_big.json()["detail"]
    assert upload(jpeg + bytes(MAX_PHOTO_BYTES - len(jpeg) - 10)).status_code == 201  # under it
    cases = [
        (b"hello, this is text", "image/jpeg", "not a JPEG or PNG"),
        (png_with_gps(), "image/jpeg", "is a image/png picture but was sent as image/jpeg"),
        (jpeg[:200], "image/jpeg", "cannot be decoded"),
        (jpeg, "text/plain", "image/jpeg or image/png, not text/plain"),
    ]
    for data, kind, why in cases:
        r = upload(data, kind)
        assert r.status_code == 422, (kind, r.text)
        assert why in r.json()["detail"]
    assert scalar(stack.dsn, "SELECT count(*) FROM task_photos") == 1


def test_location_stripping_leaves_pictures_without_one_alone() -> None:
    ok, plain = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert ok
    assert images.strip_location(plain.tobytes()) == plain.tobytes()
    with_gps = jpeg_with_gps()
    stripped = images.strip_location(with_gps)
    assert len(stripped) == len(with_gps)  # blanked in place: every other offset still holds
    assert images.strip_location(stripped) == stripped
    # A second picture after the first's end (a multi-picture file) goes with its position.
    assert images.strip_location(with_gps + with_gps) == stripped


def test_photos_are_reachable_by_the_api_only_and_never_changed(stack: LocalStack) -> None:
    """Least privilege: the API reads and adds photos and can neither change nor delete one;
    the ingest and the command line cannot read them at all."""

    def refused(role: str, statement: str) -> bool:
        with psycopg.connect(stack.role_dsn(role)) as conn:
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                return True
        return False

    assert not refused("api", "SELECT id FROM task_photos")
    assert refused("api", "UPDATE task_photos SET image = ''")
    assert refused("api", "DELETE FROM task_photos")
    for role in ("ingest", "cli"):
        assert refused(role, "SELECT id FROM task_photos"), role
