"""The demo city: a registry document of N venues, applied like any registry file.

`examples/demo-city.yaml` is `generate(12, 6)` written out (`python -m gridwatch.demo` writes it
again); `gridwatch up` applies it on first start, the tests' `stack` fixture and the benchmarks
apply a generated one of their own size. The nodes' secrets are issued here and kept in the
credentials file for the simulated fleet (the database keeps only hashes).
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from api.security import hash_password
from casework.tasks import Role
from gateway.messages import DeviceKind
from gridwatch import demo_map
from gridwatch.local.services import write_private
from registry import document, store
from registry.document import Document
from registry.model import Area, Device, Level, Node, Person, Shift, Venue, VenueKind
from registry.secrets import issue_secret

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

DEMO_FILE = Path(__file__).resolve().parents[1] / "examples" / "demo-city.yaml"
DEMO_VENUES = 12
DEMO_DEVICES_PER_VENUE = 6
DEMO_PASSWORD = "gridwatch-demo"
DEMO_ACTOR = "gridwatch-demo"

# The towns of ../shared/DOMAIN.md: ids in pinyin, names in Chinese.
_CITY = ("haicheng", "海城市")
_DISTRICTS = [
    ("dongcheng", "东城区"),
    ("xicheng", "西城区"),
    ("nanhu", "南湖区"),
    ("beishan", "北山区"),
]
_SUBDISTRICTS = [
    ("jiefang", "解放街道"),
    ("renmin", "人民街道"),
    ("heping", "和平街道"),
    ("xinhua", "新华街道"),
]
_COMMUNITIES = [
    ("qingyuan", "清源社区"),
    ("taoyuan", "桃园社区"),
    ("fenghuang", "凤凰社区"),
    ("jinxiu", "锦绣社区"),
    ("yongan", "永安社区"),
]
_GRID_NAMES = ["第一网格", "第二网格", "第三网格", "第四网格"]
_ROADS = ["解放路", "人民路", "和平路", "新华路", "滨海大道", "桃园街", "凤凰路", "锦绣路"]
_ESTATES = ["锦绣花园", "海景苑", "桃源新村", "阳光小区", "翠竹园"]
_KINDS = [
    VenueKind.COMMUNITY_CENTRE,
    VenueKind.GRID_STATION,
    VenueKind.SELF_SERVICE_STATION,
    VenueKind.ESTATE,
    VenueKind.SHELTER,
    VenueKind.BUILDING_CORNER,
    VenueKind.CLUSTER_CENTRE,
]
_CAPACITY = {
    VenueKind.CITY_CENTRE: 800,
    VenueKind.CLUSTER_CENTRE: 400,
    VenueKind.COMMUNITY_CENTRE: 200,
    VenueKind.GRID_STATION: 60,
    VenueKind.BUILDING_CORNER: 20,
    VenueKind.SELF_SERVICE_STATION: 15,
    VenueKind.SHELTER: 300,
    VenueKind.ESTATE: 2000,
}
_DAYTIME = {day: [("08:30", "20:30")] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
_DEVICE_NAMES = {
    DeviceKind.DOOR: "门禁",
    DeviceKind.COUNTER: "客流计数器",
    DeviceKind.CAMERA: "摄像机",
    DeviceKind.SPEAKER: "广播音柱",
}


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """What an edge node (or a simulated one) needs to log in and report."""

    site: str
    node: str
    secret: str
    devices: list[tuple[str, str]]
    kind: str = VenueKind.COMMUNITY_CENTRE.value
    capacity: int = 100
    open_24h: bool = False


def territory(grids: int) -> list[Area]:
    """City > districts > subdistricts > communities > grids, `grids` grids in all."""
    areas = [Area(id=_CITY[0], level=Level.CITY, name=_CITY[1])]
    per_community = 4
    communities = max(1, -(-grids // per_community))
    made = 0
    for c in range(communities):
        d_id, d_name = _DISTRICTS[c % len(_DISTRICTS)]
        s_id, s_name = _SUBDISTRICTS[(c // len(_DISTRICTS)) % len(_SUBDISTRICTS)]
        c_id, c_name = _COMMUNITIES[c % len(_COMMUNITIES)]
        subdistrict = f"{d_id}_{s_id}"
        community = f"{subdistrict}_{c_id}{c}"
        areas += [
            Area(id=d_id, level=Level.DISTRICT, name=d_name, parent=_CITY[0]),
            Area(id=subdistrict, level=Level.SUBDISTRICT, name=s_name, parent=d_id),
            Area(
                id=community,
                level=Level.COMMUNITY,
                name=c_name + ("" if c < 5 else str(c)),
                parent=subdistrict,
            ),
        ]
        for g in range(per_community):
            if made == grids:
                break
            areas.append(
                Area(
                    id=f"{community}_g{g + 1}",
                    level=Level.GRID,
                    name=_GRID_NAMES[g],
                    parent=community,
                )
            )
            made += 1
    unique = {a.id: a for a in areas}  # districts and subdistricts repeat across communities
    return list(unique.values())


def devices_for(venue_id: str, per_venue: int) -> list[Device]:
    """A venue's devices: doors, a people counter, cameras and speakers in a fixed mix."""
    mix = itertools.cycle(
        [
            DeviceKind.DOOR,
            DeviceKind.COUNTER,
            DeviceKind.CAMERA,
            DeviceKind.SPEAKER,
            DeviceKind.DOOR,
            DeviceKind.CAMERA,
        ]
    )
    return [
        Device(
            id=f"{venue_id}-{kind.value}{i + 1}",
            node=f"{venue_id}-edge",
            kind=kind,
            name=f"{_DEVICE_NAMES[kind]}{i + 1}",
            zone="main",
        )
        for i, kind in zip(range(per_venue), mix, strict=False)
    ]


def _venue_name(kind: VenueKind, i: int, grid: Area, community: Area, subdistrict: Area) -> str:
    return {
        VenueKind.COMMUNITY_CENTRE: f"{community.name}服务中心",
        VenueKind.GRID_STATION: f"{community.name}{grid.name}工作站",
        VenueKind.SELF_SERVICE_STATION: f"{community.name}24小时自助服务站",
        VenueKind.ESTATE: _ESTATES[i % len(_ESTATES)],
        VenueKind.SHELTER: f"{community.name}应急避难场所",
        VenueKind.BUILDING_CORNER: f"{community.name}{i + 1}号楼楼栋微站",
        VenueKind.CLUSTER_CENTRE: f"{subdistrict.name}片区服务中心",
        VenueKind.CITY_CENTRE: "市民服务中心",
    }[kind] + (f" {i + 1}" if i >= len(_KINDS) else "")


def departments(area: Area, by_id: dict[str, Area], n: int) -> list[Person]:
    """The departments an area's grids can call in ("report for duty", 报到), as people with the
    department role whose area holds those grids: a subdistrict's police station (派出所), a
    district's fire and rescue brigade (消防救援大队), a community's property management (物业)."""
    phone = f"+86 139 0000 {n:04d}"
    if area.level is Level.SUBDISTRICT:
        district = by_id[str(area.parent)]
        name = f"{district.name.removesuffix('区')}分局{area.name.removesuffix('街道')}派出所"
        return [Person(id=f"police-{area.id}"[:64], name=name, role=Role.DEPARTMENT,
                       scope=area.id, phone=phone)]  # fmt: skip
    if area.level is Level.DISTRICT:
        return [Person(id=f"fire-{area.id}"[:64], name=f"{area.name}消防救援大队",
                       role=Role.DEPARTMENT, scope=area.id, phone=phone)]  # fmt: skip
    if area.level is Level.COMMUNITY:
        return [Person(id=f"property-{area.id}"[:64], name=f"{area.name}物业服务中心",
                       role=Role.DEPARTMENT, scope=area.id, phone=phone)]  # fmt: skip
    return []


def generate(venues: int, devices_per_venue: int) -> Document:
    """The demo registry: a city with `venues` venues (one edge node each, `devices_per_venue`
    simulated devices), an admin and an operator, a dispatcher per community, a grid worker
    per grid on duty around the clock, and the departments they call in."""
    doc = Document(filename="the demo")
    areas = territory(max(1, venues // 2))
    # Boundaries for the wall's map (gridwatch/demo_map.py); venues stand inside their grid.
    shapes = demo_map.boundaries(areas)
    boxes = demo_map.tile(areas)
    areas = [a.model_copy(update={"boundary": shapes[a.id]}) for a in areas]
    by_id = {a.id: a for a in areas}
    for a in areas:
        doc.add("areas", a)
    grids = [a for a in areas if a.level is Level.GRID]
    for i in range(venues):
        kind = _KINDS[i % len(_KINDS)]
        grid = grids[i % len(grids)]
        community = by_id[str(grid.parent)]
        subdistrict = by_id[str(community.parent)]
        district = by_id[str(subdistrict.parent)]
        vid = f"v{i + 1:04d}"
        self_service = kind is VenueKind.SELF_SERVICE_STATION
        doc.add(
            "venues",
            Venue(
                id=vid,
                grid=grid.id,
                kind=kind,
                name=_venue_name(kind, i, grid, community, subdistrict),
                address=f"{_CITY[1]}{district.name}{subdistrict.name}{_ROADS[i % len(_ROADS)]}"
                f"{(i * 7) % 180 + 1}号",
                location=demo_map.place(
                    boxes[grid.id], i // len(grids), -(-(venues - i % len(grids)) // len(grids))
                ),
                capacity=_CAPACITY[kind],
                shelter=kind in (VenueKind.SHELTER, VenueKind.COMMUNITY_CENTRE),
                open_24h=self_service,
                unstaffed=self_service,
                opening_hours={} if self_service else _DAYTIME,
            ),
        )
        doc.add("nodes", Node(id=f"{vid}-edge", venue=vid, name="边缘网关"))
        for device in devices_for(vid, devices_per_venue):
            doc.add("devices", device)
    city = areas[0]
    doc.add("people", Person(id="admin", name="系统管理员", role=Role.ADMIN, scope=city.id))
    doc.add(
        "people", Person(id="operator", name="指挥中心值班员", role=Role.OPERATOR, scope=city.id)
    )
    for n, a in enumerate(areas):
        for department in departments(a, by_id, n):
            doc.add("people", department)
        if a.level is Level.COMMUNITY:
            doc.add(
                "people",
                Person(
                    id=f"disp-{a.id}"[:64], name=f"{a.name}调度员", role=Role.DISPATCHER, scope=a.id
                ),
            )
        elif a.level is Level.GRID:
            community = by_id[str(a.parent)]
            worker = f"worker-{a.id}"[:64]
            doc.add(
                "people",
                Person(
                    id=worker,
                    name=f"{community.name}{a.name}网格员",
                    role=Role.GRID_WORKER,
                    scope=a.id,
                    phone=f"+86 138 0000 {n:04d}",
                ),
            )
            # Around the clock: a shift whose end is not after its start runs past midnight.
            doc.add(
                "duty",
                Shift(
                    id=f"duty-{a.id}"[:64], grid=a.id, person=worker, starts="00:00", ends="00:00"
                ),
            )
    return doc


def demo_document(venues: int, devices_per_venue: int) -> Document:
    """The shipped demo file at its own size, else a generated demo of the size asked for."""
    if (venues, devices_per_venue) == (DEMO_VENUES, DEMO_DEVICES_PER_VENUE):
        return document.load(DEMO_FILE)
    return generate(venues, devices_per_venue)


def apply_and_save(
    conn: Conn, doc: Document, path: Path, *, audit: bool = True
) -> list[NodeCredentials]:
    """Apply a demo document (adding to what is registered), issue a secret to each of its
    nodes that has none, and keep the secrets in `path` for the simulated fleet.

    A node that already has a secret keeps it: one whose secret is not in `path` is left out of
    the credentials returned, with a warning. Demo people without a password get DEMO_PASSWORD.
    """
    saved = {c.node: c for c in read_credentials(path)}
    with conn.transaction():
        store.apply(conn, store.plan(conn, doc), DEMO_ACTOR, client="gridwatch up", audit=audit)
        nodes = list(doc.nodes)
        fresh = {
            str(r[0]): issue_secret(conn, str(r[0]))
            for r in conn.execute(
                "SELECT id FROM edge_nodes WHERE id = ANY(%s) AND password_hash IS NULL ORDER BY id",
                (nodes,),
            ).fetchall()
        }
        people = list(doc.people)
        conn.execute(
            "UPDATE people SET password_hash = %s WHERE id = ANY(%s) AND password_hash IS NULL",
            (hash_password(DEMO_PASSWORD), people),  # one hash: argon2 is slow on purpose
        )
        # The demo's people read Chinese and have said so: the demo is zh-CN in any browser.
        conn.execute("UPDATE people SET language_chosen = true WHERE id = ANY(%s)", (people,))
        _cover_duty(conn, doc)
    creds = []
    by_node: dict[str, list[Device]] = {}
    for d in doc.devices.values():
        by_node.setdefault(d.node, []).append(d)
    for node in doc.nodes.values():
        secret = fresh.get(node.id) or (saved[node.id].secret if node.id in saved else None)
        if secret is None:
            log.warning(
                "node %s keeps the secret it was given, which is not in the saved "
                "credentials: the simulated fleet leaves it out",
                node.id,
            )
            continue
        venue = doc.venues[node.venue]
        creds.append(
            NodeCredentials(
                venue.id,
                node.id,
                secret,
                [(d.id, d.kind.value) for d in by_node.get(node.id, [])],
                kind=venue.kind.value,
                capacity=venue.capacity or 100,
                open_24h=venue.open_24h,
            )
        )
    made = {c.node for c in creds}
    write_credentials(path, creds + [c for n, c in saved.items() if n not in made])
    log.info(
        "demo applied venues=%d devices=%d new secrets=%d",
        len(doc.venues),
        len(doc.devices),
        len(fresh),
    )
    return creds


def _cover_duty(conn: Conn, doc: Document) -> None:
    """The demo's workers also get a year of dated duty cover (duty_roster), which today's task
    routing and the people list read; weekly shifts are the registry's record of the same."""
    now = datetime.now(UTC)
    covered = {
        str(r[0])
        for r in conn.execute(
            "SELECT DISTINCT person_id FROM duty_roster WHERE ends > now()"
        ).fetchall()
    }
    rows = [
        (s.grid, s.person, now - timedelta(days=1), now + timedelta(days=365))
        for s in doc.duty.values()
        if s.person not in covered and not s.disabled
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO duty_roster (grid_id, person_id, starts, ends) VALUES (%s, %s, %s, %s)",
            rows,
        )


def registry_is_empty(conn: Conn) -> bool:
    return conn.execute("SELECT 1 FROM territory LIMIT 1").fetchone() is None


def people_of_venue(conn: Conn, venue_id: str) -> list[str]:
    """The demo worker of a venue's grid and the dispatcher of its community, as sign-in ids."""
    row = conn.execute(
        "SELECT g.id, g.parent_id FROM venues v JOIN territory g ON g.id = v.grid_id WHERE v.id = %s",
        (venue_id,),
    ).fetchone()
    if row is None:
        return []
    wanted = [f"worker-{row[0]}"[:64], f"disp-{row[1]}"[:64]]
    found = {
        str(r[0])
        for r in conn.execute(
            "SELECT id FROM people WHERE id = ANY(%s) AND active", (wanted,)
        ).fetchall()
    }
    return [p for p in wanted if p in found]


def write_credentials(path: Path, creds: list[NodeCredentials]) -> None:
    """Keep the demo nodes' secrets (the database keeps only hashes) for the simulated fleet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps([asdict(c) for c in creds], indent=1))


def read_credentials(path: Path) -> list[NodeCredentials]:
    """Credentials written by `write_credentials`; empty if there are none yet."""
    if not path.exists():
        return []
    return [
        NodeCredentials(
            c["site"],
            c["node"],
            c["secret"],
            [(d[0], d[1]) for d in c["devices"]],
            kind=c.get("kind", VenueKind.COMMUNITY_CENTRE.value),
            capacity=c.get("capacity", 100),
            open_24h=c.get("open_24h", False),
        )
        for c in json.loads(path.read_text())
    ]


def demo_file_text() -> str:
    """examples/demo-city.yaml as `generate` makes it, with a header."""
    header = (
        "# The demo city: what `gridwatch up` registers on first start. A registry file like any\n"
        "# other (see docs/registry.md): `gridwatch registry plan examples/demo-city.yaml`.\n"
        "# Written by `python -m gridwatch.demo > examples/demo-city.yaml`.\n"
    )
    return header + document.dump_yaml(document.dump(generate(DEMO_VENUES, DEMO_DEVICES_PER_VENUE)))


if __name__ == "__main__":
    sys.stdout.write(demo_file_text())
