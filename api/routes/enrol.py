"""Enrolment: an edge agent exchanges its one-time code for its site file (no sign-in,
throttled like sign-in); admins make codes and download site files for nodes in their area."""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.database import Database
from api.deps import AdminUser, Conn, CurrentUser, DbDep, audit, client_of
from api.errors import ErrorBody
from api.messages import ApiError
from api.settings import ApiSettings
from casework.tasks import Role
from gateway.topics import ID_PATTERN
from registry import enrol, nodeconfig
from registry.secrets import SealError, issue_secret

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["enrolment"])
NodePath = Annotated[str, Path(pattern=ID_PATTERN, description="an edge node id")]

# The Nth most recent failed redemption from this address ageing out of the window is the wait.
_RETRY_AFTER = """
SELECT extract(epoch FROM a.at + make_interval(secs => %(window)s) - now()) FROM audit_log a
 WHERE a.action = 'node.enrol.failed' AND a.client = %(client)s
   AND a.at > now() - make_interval(secs => %(window)s)
 ORDER BY a.at DESC OFFSET %(limit)s - 1 LIMIT 1
"""


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, description="the one-time enrolment code")


class SiteFileOut(BaseModel):
    node: str
    site_file: dict[str, Any] = Field(
        description="the node's complete site file (YAML-ready), its new secret in broker.password"
    )


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    valid_hours: float = Field(
        default=24, gt=0, le=enrol.MAX_VALID_HOURS, description="how long the code may be used"
    )


class CodeOut(BaseModel):
    node: str
    code: str = Field(description="shown once; give it to the installer")
    valid_hours: float


class NodeConfigOut(BaseModel):
    node: str
    venue: str
    config_wanted: int = Field(description="the configuration version the registry wants")
    config_published: int = Field(description="the last version sent to the node")
    config_running: int | None = Field(description="what the node says it runs (birth, answer)")
    config_error: str | None = Field(description="why it refused the last configuration")
    config_outdated: bool = Field(description="the node does not run the wanted version")


def _retry_after(db: Conn, client: str, settings: ApiSettings) -> int | None:
    row = db.execute(_RETRY_AFTER, {
        "window": settings.api_sign_in_window_s, "client": client,
        "limit": settings.api_sign_in_failures_per_address,
    }).fetchone()  # fmt: skip
    return None if row is None or row[0] is None else max(1, math.ceil(float(row[0])))


@router.post(
    "/enrol",
    response_model=SiteFileOut,
    summary="Exchange a one-time enrolment code for the node's site file (no sign-in)",
    description="The code goes in the body, never the URL. A wrong, used or expired code (or a "
    "disabled node) answers 403 with the same sentence. Failures are audited and throttled per "
    "address like sign-ins (429 with Retry-After).",
    responses={403: {"model": ErrorBody}, 429: {"model": ErrorBody}},
)
def redeem(body: EnrolRequest, request: Request) -> SiteFileOut:
    settings: ApiSettings = request.app.state.settings
    database: Database = request.app.state.db
    client = client_of(request)
    with database.connection() as db:
        wait = _retry_after(db, client, settings)
        if wait is not None:
            log.info("enrolment throttled client=%s retry_after=%s", client, wait)
            raise ApiError(status.HTTP_429_TOO_MANY_REQUESTS, "enrol.throttled",
                           headers={"Retry-After": str(wait)}, seconds=wait)  # fmt: skip
        refused = False
        try:
            with db.transaction():
                try:
                    _, site = enrol.redeem(db, body.code, client)
                except enrol.InvalidCode:
                    refused = True  # committed: the refusal's audit row counts for the throttle
        except (enrol.EnrolmentError, SealError) as exc:  # the platform is not set up for it
            log.error("enrolment failed client=%s: %s", client, exc)
            raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, "enrol.unavailable",
                           detail=str(exc)) from None  # fmt: skip
        if refused:
            raise ApiError(status.HTTP_403_FORBIDDEN, "enrol.invalid")
    log.info("node enrolled node=%s client=%s", site["node"], client)
    return SiteFileOut(node=str(site["node"]), site_file=site)


def _admin_node(db: Conn, user: CurrentUser, node_id: str) -> None:
    """404 for a node outside the admin's area (as if it did not exist), 403 for a non-admin."""
    inside = db.execute(
        """SELECT 1 FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
           JOIN territory t ON t.id = v.grid_id WHERE n.id = %s AND t.path <@ %s::ltree""",
        (node_id, user.scope_path),
    ).fetchone()
    if inside is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "node.missing", node=node_id)
    if user.role is not Role.ADMIN:
        raise ApiError(status.HTTP_403_FORBIDDEN, "role.enrol", role=user.role)


@router.post(
    "/admin/nodes/{node_id}/enrolment-code",
    response_model=CodeOut,
    summary="A one-time enrolment code for a node in your area (admins; audited)",
)
def enrolment_code(
    node_id: NodePath, user: CurrentUser, db: DbDep, request: Request, body: CodeRequest
) -> CodeOut:
    _admin_node(db, user, node_id)
    try:
        with db.transaction():
            code = enrol.create_code(db, node_id, user.id, body.valid_hours,
                                     client=client_of(request))  # fmt: skip
    except enrol.EnrolmentError as exc:
        raise ApiError(status.HTTP_409_CONFLICT, "enrol.refused", detail=str(exc)) from None
    return CodeOut(node=node_id, code=code, valid_hours=body.valid_hours)


@router.post(
    "/admin/nodes/{node_id}/site-file",
    response_model=SiteFileOut,
    summary="The node's complete site file with a NEW secret (admins; the old secret stops"
    " working; audited)",
)
def site_file(node_id: NodePath, user: CurrentUser, db: DbDep, request: Request) -> SiteFileOut:
    _admin_node(db, user, node_id)
    try:
        with db.transaction():
            enrol.enabled_node(db, node_id)
            secret = issue_secret(db, node_id)
            site = enrol.site_file(db, node_id, secret, enrol.EdgeBrokerSettings())
            audit(db, user, request, "node.site_file", node_id,
                  {"config_version": site["config_version"], "new_secret": True})  # fmt: skip
    except enrol.EnrolmentError as exc:
        raise ApiError(status.HTTP_409_CONFLICT, "enrol.refused", detail=str(exc)) from None
    except SealError as exc:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, "enrol.unavailable",
                       detail=str(exc)) from None  # fmt: skip
    return SiteFileOut(node=node_id, site_file=site)


@router.get(
    "/admin/nodes/config",
    response_model=list[NodeConfigOut],
    summary="Each node's configuration: wanted, sent, running, refused (nodes in your area)",
)
def node_configs(user: AdminUser, db: DbDep, outdated: bool = False) -> list[NodeConfigOut]:
    rows = db.execute(
        """SELECT n.id, n.venue_id, n.config_version, n.config_published, p.config_version,
                  p.config_error
           FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
           JOIN territory t ON t.id = v.grid_id LEFT JOIN node_presence p ON p.node_id = n.id
           WHERE t.path <@ %s::ltree AND NOT n.disabled ORDER BY n.id""",
        (user.scope_path,),
    ).fetchall()
    out = []
    for node, venue, wanted, published, running, error in rows:
        state = nodeconfig.ConfigState(int(wanted), int(published), running, error)
        if outdated and not state.outdated:
            continue
        out.append(NodeConfigOut(
            node=node, venue=venue, config_wanted=state.wanted, config_published=state.published,
            config_running=state.running, config_error=state.error,
            config_outdated=state.outdated,
        ))  # fmt: skip
    return out
