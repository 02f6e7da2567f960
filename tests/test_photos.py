"""Photo evidence of a task over the real API and PostgreSQL: who uploads and who sees, the size
cap, pictures that are not pictures, the location stripped from real EXIF, and the feedback."""

from __future__ import annotations

import re
import struct
import zlib

import cv2
import numpy as np
import psycopg
from fastapi.testclient import TestClient

from api import images, messages
from api.routes.photos import MAX_PHOTO_BYTES
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from tests.support import rows, scalar
from tests.test_api import _second_grid, client, people_of, raise_incident, sign_in

__all__ = ["client"]  # the fixture, used by name

# Where the pictures were "taken": 39°54'27" N, 116°23'29" E, as EXIF rationals.
LATITUDE = ((39, 1), (54, 1), (2700, 100))
LONGITUDE = ((116, 1), (23, 1), (2900, 100))
MAKE = b"gridwatch-test-camera\x00"


def _rationals(values: tuple[tuple[int, int], ...], e: str = "<") -> bytes:
    return b"".join(struct.pack(e + "II", n, d) for n, d in values)


def exif_with_gps(e: str = "<") -> bytes:
    """A TIFF block as a phone writes it (little-endian "II", or big-endian "MM" with e=">"):
    IFD0 with Make, Orientation (6: turned 90°) and a GPS IFD pointer; the GPS IFD with
    latitude and longitude and their references."""
    ifd0 = 8
    ifd0_size = 2 + 3 * 12 + 4
    make_at = ifd0 + ifd0_size
    gps = make_at + len(MAKE)
    gps_size = 2 + 4 * 12 + 4
    lat_at = gps + gps_size
    lon_at = lat_at + 24
    entry = lambda tag, kind, count, value: struct.pack(e + "HHI", tag, kind, count) + value  # noqa: E731
    out = (b"II*\x00" if e == "<" else b"MM\x00*") + struct.pack(e + "I", ifd0)
    out += struct.pack(e + "H", 3)
    out += entry(0x010F, 2, len(MAKE), struct.pack(e + "I", make_at))  # Make, out of line
    out += entry(0x0112, 3, 1, struct.pack(e + "HH", 6, 0))  # Orientation
    out += entry(0x8825, 4, 1, struct.pack(e + "I", gps))  # GPSInfo
    out += struct.pack(e + "I", 0)
    out += MAKE
    out += struct.pack(e + "H", 4)
    out += entry(1, 2, 2, b"N\x00\x00\x00")
    out += entry(2, 5, 3, struct.pack(e + "I", lat_at))
    out += entry(3, 2, 2, b"E\x00\x00\x00")
    out += entry(4, 5, 3, struct.pack(e + "I", lon_at))
    out += struct.pack(e + "I", 0)
    out += _rationals(LATITUDE, e) + _rationals(LONGITUDE, e)
    return out


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_gps(width: int = 64, height: int = 32) -> bytes:
    """A real JPEG (encoded by OpenCV) carrying an Exif APP1 segment with a GPS position."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    data = encoded.tobytes()
    return data[:2] + _app1(b"Exif\x00\x00" + exif_with_gps()) + data[2:]


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


def _take_in_hand(client: TestClient, task_id: int, headers: dict[str, str]) -> None:
    """The assignee accepts the task and starts on it: photos may be taken from now on."""
    for action in ("accept", "start"):
        r = client.post(f"/api/tasks/{task_id}/actions", json={"action": action}, headers=headers)
        assert r.status_code == 200, r.text


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
    _take_in_hand(client, task_id, me)
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
    _take_in_hand(client, task_id, me)
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
    # Huge in pixels though small in bytes: refused from its header, before decoding it.
    for huge, kind in ((png_sized(10_000, 10_000), "image/png"),
                       (jpeg_sized(9_000, 6_000), "image/jpeg")):  # fmt: skip
        r = upload(huge, kind)
        assert r.status_code == 422, r.text
        assert "more than 50 megapixels" in r.json()["detail"]
    r = client.post(url, content=png_sized(10_000, 10_000),
                    headers=me | {"Content-Type": "image/png", "Accept-Language": "zh-CN"})  # fmt: skip
    assert r.json()["message"] == messages.render(
        "photo.too_many_pixels", {"width": 10_000, "height": 10_000, "megapixels": 50}, "zh-CN"
    )
    # The Chinese messages are Chinese throughout: no English sentence inside them, only the
    # formats' names.
    zh = me | {"Accept-Language": "zh-CN"}
    said = [client.post(url, content=data, headers=zh | {"Content-Type": kind}).json()["message"]
            for data, kind in ((b"hello", "image/jpeg"), (png_with_gps(), "image/jpeg"),
                               (jpeg[:200], "image/jpeg"), (jpeg, "text/plain"), (jpeg, ""),
                               (png_sized(10_000, 10_000), "image/png"))]  # fmt: skip
    names = r"image/jpeg|image/png|text/plain|JPEG|PNG|Content-Type"
    for message in said:
        assert "图片" in message or "照片" in message, message
        assert re.search("[A-Za-z]{2,}", re.sub(names, "", message)) is None, message
    assert len(set(said)) == len(said)
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
    """Least privilege: the API reads, adds and removes photos (its uploader's) and cannot change one;
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
    assert not refused("api", "DELETE FROM task_photos WHERE false")  # its uploader's removal
    for role in ("ingest", "cli"):
        assert refused(role, "SELECT id FROM task_photos"), role


def png_sized(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims another size (its CRC right, so only the size is wrong)."""
    data = bytearray(png_with_gps())
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_sized(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims another size."""
    data = bytearray(jpeg_with_gps())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def plain_jpeg() -> bytes:
    """A real JPEG (encoded by OpenCV) with no metadata of its own."""
    ok, encoded = cv2.imencode(".jpg", np.full((24, 40, 3), 90, np.uint8))
    assert ok
    return bytes(encoded.tobytes())


def _decodes(data: bytes) -> bool:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image is not None and image.size > 0


def _xmp(prefix: bytes) -> bytes:
    packet = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description exif:GPSLatitude="39,54.45N"'
              b' exif:GPSLongitude="116,23.48E"/></x:xmpmeta>')  # fmt: skip
    if prefix.startswith(b"http://ns.adobe.com/xmp/extension/"):
        # Extended XMP: a GUID of the full packet, its length and this part's offset.
        return _app1(prefix + b"0" * 32 + struct.pack(">II", len(packet), 0) + packet)
    return _app1(prefix + packet)


XMP = b"http://ns.adobe.com/xap/1.0/\x00"
EXTENDED_XMP = b"http://ns.adobe.com/xmp/extension/\x00"


def test_a_big_endian_exif_loses_its_position_and_keeps_the_rest() -> None:
    plain = plain_jpeg()
    data = plain[:2] + _app1(b"Exif\x00\x00" + exif_with_gps(">")) + plain[2:]
    assert _rationals(LATITUDE, ">") in data
    stripped = images.strip_location(data)
    assert _rationals(LATITUDE, ">") not in stripped
    assert _rationals(LONGITUDE, ">") not in stripped
    assert MAKE in stripped and b"MM\x00*" in stripped  # the segment kept, only the GPS gone
    assert _decodes(stripped)


def test_every_app1_but_a_clean_exif_goes_xmp_and_extended_xmp_included() -> None:
    plain = plain_jpeg()
    exif = _app1(b"Exif\x00\x00" + exif_with_gps())
    other = _app1(b"SomeVendor\x00" + _rationals(LATITUDE))  # an APP1 nobody can read
    data = plain[:2] + exif + _xmp(XMP) + _xmp(EXTENDED_XMP) + exif + other + plain[2:]
    assert data.count(b"GPSLatitude") == 2
    stripped = images.strip_location(data)
    assert b"GPSLatitude" not in stripped and b"GPSLongitude" not in stripped
    assert XMP not in stripped and EXTENDED_XMP not in stripped and b"SomeVendor" not in stripped
    assert _rationals(LATITUDE) not in stripped and _rationals(LONGITUDE) not in stripped
    assert stripped.count(b"Exif\x00\x00") == 2 and MAKE in stripped  # the Exif segments stay
    assert _decodes(stripped)


def test_an_exif_that_cannot_be_read_is_dropped_whole() -> None:
    plain = plain_jpeg()
    tiff = bytearray(exif_with_gps())
    gps = 8 + 2 + 3 * 12 + 4 + len(MAKE)
    struct.pack_into("<H", tiff, gps, 200)  # the GPS IFD says 200 entries; the block holds 4
    truncated_ifd = plain[:2] + _app1(b"Exif\x00\x00" + bytes(tiff)) + plain[2:]
    # A block cut short inside IFD0, with the position's figures after it in the segment.
    cut = _app1(b"Exif\x00\x00" + exif_with_gps()[:30]) + _app1(b"Exif\x00\x00" + b"MM")
    truncated_block = plain[:2] + cut + plain[2:]
    # IFD0's next-IFD offset pointing past the block (so IFD1 cannot be read).
    bad_next = bytearray(exif_with_gps())
    struct.pack_into("<I", bad_next, 8 + 2 + 3 * 12, 60_000)
    truncated_next = plain[:2] + _app1(b"Exif\x00\x00" + bytes(bad_next)) + plain[2:]
    for data in (truncated_ifd, truncated_block, truncated_next):
        stripped = images.strip_location(data)
        assert b"Exif\x00\x00" not in stripped
        assert _rationals(LATITUDE) not in stripped and _rationals(LONGITUDE) not in stripped
        assert _decodes(stripped)
    assert _rationals(LATITUDE) in truncated_ifd  # (the test's picture did carry it)


def test_an_iptc_record_with_the_place_goes_too() -> None:
    plain = plain_jpeg()
    # APP13: Photoshop 3.0's image resource 0x0404 holding IPTC 2:90 (city) and 2:92 (sublocation).
    iptc = b"\x1c\x02\x5a\x00\x06Haicheng" + b"\x1c\x02\x5c\x00\x0cQingyuan Road"
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    body = b"Photoshop 3.0\x00" + resource
    data = plain[:2] + b"\xff\xed" + struct.pack(">H", len(body) + 2) + body + plain[2:]
    assert _decodes(data) and b"Qingyuan" in data
    stripped = images.strip_location(data)
    assert b"Photoshop 3.0" not in stripped and b"Qingyuan" not in stripped
    assert _decodes(stripped)


def test_stray_bytes_between_segments_are_skipped_not_copied() -> None:
    plain = plain_jpeg()
    exif = _app1(b"Exif\x00\x00" + exif_with_gps())
    (app0,) = struct.unpack_from(">H", plain, 4)
    after_app0 = 4 + app0
    data = (plain[:after_app0] + b"\x00\x12junk" + _xmp(XMP) + b"\x07" + exif
            + plain[after_app0:])  # fmt: skip
    assert _decodes(data)  # (a decoder skips them too, with a warning)
    stripped = images.strip_location(data)
    assert b"GPSLatitude" not in stripped and b"junk" not in stripped
    assert _rationals(LATITUDE) not in stripped
    assert _decodes(stripped)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_png_raw_profiles_xmp_and_what_follows_iend_go() -> None:
    ok, encoded = cv2.imencode(".png", np.full((20, 30, 3), 200, np.uint8))
    assert ok
    plain = encoded.tobytes()
    tiff = b"Exif\x00\x00" + exif_with_gps()
    # As ImageMagick writes them: a newline, the kind, the length, then the bytes in hex.
    raw = b"\nexif\n" + str(len(tiff)).encode().rjust(8) + b"\n" + tiff.hex().encode() + b"\n"
    chunks = (
        _png_chunk(b"tEXt", b"Raw profile type exif\x00" + raw)
        + _png_chunk(b"zTXt", b"Raw profile type APP1\x00\x00" + zlib.compress(raw))
        + _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + _xmp(XMP)[4:])
        + _png_chunk(b"tEXt", b"Comment\x00the back door")
    )
    data = plain[:33] + chunks + plain[33:] + _xmp(XMP) + tiff  # and after IEND
    assert _decodes(data)
    stripped = images.strip_location(data)
    assert b"Raw profile" not in stripped and b"GPSLatitude" not in stripped
    assert tiff.hex().encode() not in stripped and _rationals(LATITUDE) not in stripped
    assert b"the back door" in stripped  # other text stays
    assert stripped.endswith(b"IEND\xaeB`\x82")
    assert _decodes(stripped)


def test_sizes_are_read_from_the_header() -> None:
    assert images.dimensions(png_sized(123, 45), images.PNG) == (123, 45)
    assert images.dimensions(jpeg_sized(640, 480), images.JPEG) == (640, 480)
    assert images.dimensions(jpeg_with_gps(64, 32), images.JPEG) == (64, 32)
    assert images.dimensions(b"\xff\xd8\xff\xd9", images.JPEG) is None


def _department_of_the_community(dsn: str, site: str) -> str:
    """A property management whose area is an estate of the community: called in by the grid,
    yet the grid is not in its area."""
    from api.security import hash_password
    from casework import tasks
    from gridwatch.demo import DEMO_PASSWORD
    from registry import store
    from registry.model import Area, Level, Person

    community = str(scalar(dsn, "SELECT g.parent_id FROM venues v JOIN territory g"
                                " ON g.id = v.grid_id WHERE v.id = %s", (site,)))  # fmt: skip
    with psycopg.connect(dsn) as conn:
        store.put(conn, [
            Area(id="g_estate", level=Level.GRID, name="花园小区", parent=community),
            Person(id="property-estate", name="花园小区物业", role=tasks.Role.DEPARTMENT,
                   scope="g_estate"),
        ], "test", audit=False)  # fmt: skip
        conn.execute("UPDATE people SET password_hash = %s WHERE id = 'property-estate'",
                     (hash_password(DEMO_PASSWORD),))  # fmt: skip
    return "property-estate"


def test_a_department_called_in_adds_and_sees_its_tasks_photos_and_incident(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    site = nodes[0].site
    task_id = raise_incident(stack.dsn, site)
    incident_id = scalar(stack.dsn, "SELECT incident_id FROM tasks WHERE id = %s", (task_id,))
    worker, dispatcher = people_of(stack.dsn, site)
    department = _department_of_the_community(stack.dsn, site)
    _second_grid(stack.dsn, site)
    dept, boss = sign_in(client, department), sign_in(client, dispatcher)
    stranger = sign_in(client, "worker-g_other")
    url = f"/api/tasks/{task_id}/photos"
    jpeg = jpeg_with_gps()

    def reach(who: dict[str, str]) -> list[int]:
        return [client.get(u, headers=who).status_code for u in (
            url, f"/api/incidents/{incident_id}", f"/api/incidents/{incident_id}/context",
            f"/api/incidents/{incident_id}/events")]  # fmt: skip

    assert reach(dept) == [404] * 4  # not theirs yet: out of sight
    r = client.post(f"/api/tasks/{task_id}/actions", headers=boss,
                    json={"action": "reassign", "assignee": department, "reason": "需物业开门"})  # fmt: skip
    assert r.status_code == 200, r.text
    _take_in_hand(client, task_id, dept)
    up = client.post(url, content=jpeg, headers=dept | {"Content-Type": "image/jpeg"})
    assert up.status_code == 201, up.text
    photo = up.json()["id"]
    assert reach(dept) == [200] * 4
    assert client.get(f"{url}/{photo}", headers=dept).status_code == 200
    context = client.get(f"/api/incidents/{incident_id}/context", headers=dept).json()
    assert context["task"]["assignee"] == department and context["snapshot"] is False
    # Reading is all: an incident of their task outside their area is not theirs to change.
    r = client.post(f"/api/incidents/{incident_id}/acknowledge", json={}, headers=dept)
    assert r.status_code in (403, 404)
    # Their own grid's supervisors see it; nobody else outside the area does.
    assert client.get(f"{url}/{photo}", headers=boss).status_code == 200
    assert reach(stranger) == [404] * 4
    assert client.get(f"{url}/{photo}", headers=stranger).status_code == 404
    # The previous assignee (the grid's worker) sees the task but not its photos.
    assert client.get(url, headers=sign_in(client, worker)).status_code == 403


def test_the_uploader_removes_a_photo_until_a_feedback_carries_it(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    site = nodes[0].site
    task_id = raise_incident(stack.dsn, site)
    worker, dispatcher = people_of(stack.dsn, site)
    me, boss = sign_in(client, worker), sign_in(client, dispatcher)
    _second_grid(stack.dsn, site)
    stranger = sign_in(client, "worker-g_other")
    _take_in_hand(client, task_id, me)
    url = f"/api/tasks/{task_id}/photos"
    sent = [client.post(url, content=jpeg_with_gps(), headers=me | {"Content-Type": "image/jpeg"})
            for _ in range(2)]  # fmt: skip
    mistake, kept = (r.json()["id"] for r in sent)

    assert client.delete(f"{url}/{mistake}", headers=stranger).status_code == 404
    not_theirs = client.delete(f"{url}/{mistake}", headers=boss)
    assert not_theirs.status_code == 403 and "uploaded" in not_theirs.json()["detail"]
    assert client.delete(f"{url}/{mistake}", headers=me).status_code == 204
    assert client.get(f"{url}/{mistake}", headers=boss).status_code == 404
    assert [p["id"] for p in client.get(url, headers=boss).json()] == [kept]
    assert client.delete(f"{url}/{mistake}", headers=me).status_code == 404  # gone already
    audited = rows(stack.dsn, "SELECT person_id, target, (detail->>'photo')::bigint FROM audit_log"
                              " WHERE action = 'task.photo.delete'")  # fmt: skip
    assert audited == [(worker, str(task_id), mistake)]

    r = client.post(f"/api/tasks/{task_id}/actions", headers=me,
                    json={"action": "feedback", "note": "door closed", "photos": [kept]})  # fmt: skip
    assert r.status_code == 200, r.text
    attached = client.delete(f"{url}/{kept}", headers=me)
    assert attached.status_code == 409 and "feedback" in attached.json()["detail"]
    assert [p["id"] for p in client.get(url, headers=boss).json()] == [kept]


def test_an_upload_holds_no_database_connection_while_its_body_comes_in(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    site = nodes[0].site
    task_id = raise_incident(stack.dsn, site)
    worker, _ = people_of(stack.dsn, site)
    me = sign_in(client, worker)
    _take_in_hand(client, task_id, me)
    pool = client.app.state.db.pool  # type: ignore[attr-defined]
    in_use: list[int] = []
    jpeg = jpeg_with_gps()

    def body():  # type: ignore[no-untyped-def]  # chunked: read by the route piece by piece
        for at in range(0, len(jpeg), 256):
            stats = pool.get_stats()
            in_use.append(stats["pool_size"] - stats["pool_available"])
            yield jpeg[at : at + 256]

    r = client.post(f"/api/tasks/{task_id}/photos", content=body(),
                    headers=me | {"Content-Type": "image/jpeg"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert in_use and set(in_use) == {0}, in_use
    # A chunked body over the cap is still refused as it passes it, nothing stored.
    big = (bytes(64 * 1024) for _ in range(MAX_PHOTO_BYTES // (64 * 1024) + 2))
    r = client.post(f"/api/tasks/{task_id}/photos", content=big,
                    headers=me | {"Content-Type": "image/jpeg"})  # fmt: skip
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert scalar(stack.dsn, "SELECT count(*) FROM task_photos") == 1
