"""A registry file uploaded by an admin: its plan first (what would be added, changed, disabled,
with the fields), then applied in one transaction, only within the admin's area."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminUser, DbDep, User, audit, client_of
from api.errors import Stale, StaleBody
from api.messages import ApiError
from registry import document, store

router = APIRouter(prefix="/api/v1/admin/registry", tags=["admin"])


class Upload(BaseModel):
    """A registry file as text (YAML; its CSV sections inline), as a browser reads it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "version: 1\nvenues:\n  - id: v-1\n    ...", "filename": "city.yaml"}
            ]
        },
    )

    text: str = Field(max_length=1 << 20, description="the file's contents")
    filename: str = Field(
        default="registry.yaml", min_length=1, max_length=200, pattern=r"^[^/\\\x00-\x1f]+$",
        description="its name, for error messages (file:line: field ...)",
    )  # fmt: skip
    prune: bool = Field(
        default=False,
        description="disable what the file leaves out (within your area); never deletes",
    )
    fingerprint: str | None = Field(
        default=None,
        max_length=64,
        description="for apply: the plan's fingerprint you were shown; if the plan is no longer "
        "the same (the registry changed meanwhile), 409 with the new plan",
    )


class PlanOut(BaseModel):
    summary: dict[str, int] = Field(description="how many records each action touches")
    changes: int
    text: str = Field(description="the plan for people, as `gridwatch registry plan` prints it")
    plan: store.Plan
    fingerprint: str = Field(description="send it with apply to apply exactly this plan")


def _plan(db: DbDep, user: User, body: Upload) -> tuple[store.Plan, PlanOut]:
    try:
        doc = document.load_text(body.text, body.filename)
        plan = store.plan(db, doc, prune=body.prune, scope=user.scope_id)
    except document.RegistryFileError as exc:
        raise ApiError(422, "registry.file", detail=str(exc)) from None
    _check_self(plan, user)
    totals: dict[str, int] = {a.value: 0 for a in store.Action}
    for change in plan.changes:
        totals[change.action.value] += 1
    text = store.format_plan(plan)
    fingerprint = hashlib.sha256(plan.model_dump_json().encode() + text.encode()).hexdigest()
    out = PlanOut(summary=totals, changes=len(plan.changes), text=text, plan=plan,
                  fingerprint=fingerprint)  # fmt: skip
    return plan, out


def _check_self(plan: store.Plan, user: User) -> None:
    """What the single-record routes refuse an admin, an upload refuses too: taking away their
    own access (their role, scope or person disabled; their own area disabled)."""
    for change in plan.changes:
        if (
            change.kind == "people"
            and change.id == user.id
            and (change.action is store.Action.DISABLED or {"role", "scope"} & change.fields.keys())
        ):
            raise ApiError(status.HTTP_409_CONFLICT, "self.file_change")
        if (
            change.kind == "areas"
            and change.id == user.scope_id
            and (change.action is store.Action.DISABLED)
        ):
            raise ApiError(status.HTTP_409_CONFLICT, "self.file_area")


@router.post("/plan", response_model=PlanOut, summary="What a registry file would change")
def plan(body: Upload, user: AdminUser, db: DbDep) -> PlanOut:
    return _plan(db, user, body)[1]


@router.post(
    "/apply",
    response_model=PlanOut,
    responses={409: {"model": StaleBody, "description": "the plan changed since it was shown"}},
    summary="Apply a registry file in one transaction (audited, one row per change)",
)
def apply(body: Upload, user: AdminUser, db: DbDep, request: Request) -> PlanOut:
    with db.transaction():
        # Serialise uploads: two at once would each plan against what the other is changing.
        db.execute("SELECT pg_advisory_xact_lock(hashtext('gridwatch registry apply'))")
        made, out = _plan(db, user, body)
        if body.fingerprint is not None and body.fingerprint != out.fingerprint:
            raise Stale("the registry changed since this plan was shown: here is the plan as it "
                        "is now; check it and apply again", out)  # fmt: skip
        store.apply(db, made, user.id, client=client_of(request))
        audit(db, user, request, "registry.upload", body.filename,
              {"prune": body.prune, "scope": user.scope_id, **out.summary})  # fmt: skip
    return out
