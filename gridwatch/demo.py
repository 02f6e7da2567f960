"""A demo territory with venues, edge nodes and devices, for `gridwatch up` and benchmarks."""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from api.security import hash_password
from gateway.messages import DeviceKind
from gridwatch.services import write_private
from ingest import provision
from ingest.provision import Device, Level, Person, TerritoryNode, Venue, VenueKind
from ingest.tasks import Role

log = logging.getLogger(__name__)

# Names in the style of the towns in ../shared/DOMAIN.md.
_DISTRICTS = ["dongcheng", "xicheng", "nanhu", "beishan"]
_SUBDISTRICTS = ["jiefang", "renmin", "heping", "xinhua"]
_COMMUNITIES = ["qingyuan", "taoyuan", "fenghuang", "jinxiu", "yongan"]
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


def territory(grids: int) -> list[TerritoryNode]:
    """City > districts > subdistricts > communities > grids, `grids` grids in all."""
    nodes = [TerritoryNode(id="haicheng", level=Level.CITY, name="Haicheng City")]
    per_community = 4
    communities = max(1, -(-grids // per_community))
    made_grids = 0
    for c in range(communities):
        d = c % len(_DISTRICTS)
        s = (c // len(_DISTRICTS)) % len(_SUBDISTRICTS)
        district = f"{_DISTRICTS[d]}"
        subdistrict = f"{district}_{_SUBDISTRICTS[s]}"
        community = f"{subdistrict}_{_COMMUNITIES[c % len(_COMMUNITIES)]}{c}"
        nodes.append(
            TerritoryNode(
                id=district,
                level=Level.DISTRICT,
                name=f"{district.title()} District",
                parent_id="haicheng",
            )
        )
        nodes.append(
            TerritoryNode(
                id=subdistrict,
                level=Level.SUBDISTRICT,
                name=f"{_SUBDISTRICTS[s].title()} Subdistrict",
                parent_id=district,
            )
        )
        nodes.append(
            TerritoryNode(
                id=community,
                level=Level.COMMUNITY,
                name=f"{_COMMUNITIES[c % len(_COMMUNITIES)].title()} Community {c}",
                parent_id=subdistrict,
            )
        )
        for g in range(per_community):
            if made_grids == grids:
                break
            nodes.append(
                TerritoryNode(
                    id=f"{community}_g{g + 1}",
                    level=Level.GRID,
                    name=f"Grid {g + 1}",
                    parent_id=community,
                )
            )
            made_grids += 1
    unique = {n.id: n for n in nodes}  # districts and subdistricts repeat across communities
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
            kind=kind,
            name=f"{kind.value} {i + 1}",
            zone="main",
        )
        for i, kind in zip(range(per_venue), mix, strict=False)
    ]


def seed(
    conn: psycopg.Connection[tuple[object, ...]],
    *,
    venues: int,
    devices_per_venue: int,
    secrets: dict[str, str] | None = None,
) -> list[NodeCredentials]:
    """Create (idempotently) the demo territory; reuse node secrets from `secrets` when given.

    A node already registered keeps its secret: a re-seed never replaces one (a node whose
    secret is not in `secrets` is left out of the credentials returned, with a warning).
    """
    secrets = dict(secrets or {})
    registered = {str(r[0]) for r in conn.execute("SELECT id FROM edge_nodes").fetchall()}
    grids = territory(max(1, venues // 2))
    for t in grids:
        provision.add_territory(conn, t)
    grid_ids = [t.id for t in grids if t.level is Level.GRID]
    creds: list[NodeCredentials] = []
    for i in range(venues):
        kind = _KINDS[i % len(_KINDS)]
        venue = Venue(
            id=f"v{i + 1:04d}",
            grid_id=grid_ids[i % len(grid_ids)],
            name=f"{kind.value.replace('_', ' ').title()} {i + 1}",
            kind=kind,
            capacity=_CAPACITY[kind],
            is_shelter=kind in (VenueKind.SHELTER, VenueKind.COMMUNITY_CENTRE),
            open_24h=kind is VenueKind.SELF_SERVICE_STATION,
            opening_hours={} if kind is VenueKind.SELF_SERVICE_STATION else _DAYTIME,
        )
        provision.add_venue(conn, venue)
        node = f"{venue.id}-edge"
        devs = devices_for(venue.id, devices_per_venue)
        known = secrets.get(node)
        if node not in registered:
            known = provision.add_node(conn, node, venue.id, known)
        provision.add_devices(conn, node, devs)
        if known is None:
            log.warning("node %s keeps the secret it was given, which is not in the saved "
                        "credentials: the simulated fleet leaves it out", node)  # fmt: skip
            continue
        secret = known
        creds.append(
            NodeCredentials(
                venue.id, node, secret, [(d.id, d.kind.value) for d in devs],
                kind=kind.value, capacity=_CAPACITY[kind], open_24h=venue.open_24h,
            )
        )  # fmt: skip
    _seed_people(conn, grids)
    log.info("demo territory seeded venues=%d devices=%d", venues, venues * devices_per_venue)
    return creds


DEMO_PASSWORD = "gridwatch-demo"


def _seed_people(conn: psycopg.Connection[tuple[object, ...]], nodes: list[TerritoryNode]) -> None:
    """An admin and an operator for the city, a dispatcher per community, a worker per grid on
    duty around the clock for a year, all with the password DEMO_PASSWORD (once: later runs keep
    whatever was changed)."""
    if conn.execute("SELECT 1 FROM people LIMIT 1").fetchone() is not None:
        return
    city = next(n for n in nodes if n.level is Level.CITY)
    people = [
        Person(id="admin", name="Administrator", role=Role.ADMIN, scope_id=city.id),
        Person(id="operator", name="Command centre", role=Role.OPERATOR, scope_id=city.id),
    ]
    workers = []
    for n in nodes:
        if n.level is Level.COMMUNITY:
            people.append(Person(id=f"disp-{n.id}"[:64], name=f"Dispatcher, {n.name}",
                                 role=Role.DISPATCHER, scope_id=n.id))  # fmt: skip
        elif n.level is Level.GRID:
            worker = Person(id=f"worker-{n.id}"[:64], name=f"Grid worker, {n.name}",
                            role=Role.GRID_WORKER, scope_id=n.id)  # fmt: skip
            people.append(worker)
            workers.append(worker)
    for person in people:
        provision.add_person(conn, person)
    now = datetime.now(UTC)
    for worker in workers:
        provision.add_duty(conn, worker.scope_id, worker.id, now - timedelta(days=1),
                           now + timedelta(days=365))  # fmt: skip
    # One hash for everyone: argon2 is slow on purpose, and these are demo accounts.
    conn.execute("UPDATE people SET password_hash = %s", (hash_password(DEMO_PASSWORD),))


def people_of_venue(conn: psycopg.Connection[tuple[object, ...]], venue_id: str) -> list[str]:
    """The demo worker of a venue's grid and the dispatcher of its community, as sign-in ids."""
    row = conn.execute(
        "SELECT g.id, g.parent_id FROM venues v JOIN territory g ON g.id = v.grid_id WHERE v.id = %s",
        (venue_id,),
    ).fetchone()
    if row is None:
        return []
    wanted = [f"worker-{row[0]}"[:64], f"disp-{row[1]}"[:64]]
    found = {str(r[0]) for r in conn.execute(
        "SELECT id FROM people WHERE id = ANY(%s) AND active", (wanted,)
    ).fetchall()}  # fmt: skip
    return [p for p in wanted if p in found]


def seed_and_save(
    conn: psycopg.Connection[tuple[object, ...]], path: Path, venues: int, devices_per_venue: int
) -> list[NodeCredentials]:
    """Seed the demo (once: later runs keep it) and keep its node secrets in `path`, reusing
    the secrets already there."""
    saved = read_credentials(path)
    known = {c.node: c.secret for c in saved}
    creds = seed(conn, venues=venues, devices_per_venue=devices_per_venue, secrets=known)
    # Nodes seeded before and not now (a smaller --venues) keep their saved credentials.
    seeded = {c.node for c in creds}
    write_credentials(path, creds + [c for c in saved if c.node not in seeded])
    return creds


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
