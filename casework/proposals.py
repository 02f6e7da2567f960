"""Emergencies a rule proposed: a person confirms one (and it starts) or dismisses it; either
way its red incident is resolved and the decision is recorded with who made it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from casework import emergency, incidents
from casework.refused import Refused
from casework.rules import Rule, key
from casework.tasks import DeadlinePolicy

Conn = psycopg.Connection[tuple[object, ...]]


class ProposalError(Refused):
    """A proposal that cannot be decided; the message says why."""


@dataclass(frozen=True, slots=True)
class Proposal:
    id: int
    territory_id: str
    path: str
    reason: str
    rule: str
    proposed_at: datetime


def _take(conn: Conn, proposal_id: int) -> Proposal:
    row = conn.execute(
        """SELECT p.id, p.territory_id, t.path::text, p.reason, p.rule, p.proposed_at, p.decided_at
           FROM emergency_proposals p JOIN territory t ON t.id = p.territory_id
           WHERE p.id = %s FOR UPDATE OF p""",
        (proposal_id,),
    ).fetchone()
    if row is None:
        raise ProposalError(f"no emergency proposal {proposal_id}", "proposal.missing",
                            id=proposal_id)  # fmt: skip
    if row[6] is not None:
        raise ProposalError(f"emergency proposal {proposal_id} was already decided",
                            "proposal.decided", id=proposal_id)  # fmt: skip
    pid, area, path, reason, rule, at, _ = row
    assert isinstance(at, datetime)
    return Proposal(int(str(pid)), str(area), str(path), str(reason), str(rule), at)


def decide(
    conn: Conn, proposal_id: int, *, confirm: bool, actor: str, policy: DeadlinePolicy
) -> tuple[Proposal, int | None]:
    """Confirm (the emergency starts, started by `actor`) or dismiss a proposal, in the caller's
    transaction; the proposal and the emergency's id."""
    proposal = _take(conn, proposal_id)
    eid = None
    if confirm:
        eid = emergency.start(conn, proposal.territory_id, actor=actor, reason=proposal.reason,
                              policy=policy)  # fmt: skip
    conn.execute(
        """UPDATE emergency_proposals SET decided_at = now(), decided_by = %s, confirmed = %s,
               emergency_id = %s WHERE id = %s""",
        (actor, confirm, eid, proposal_id),
    )
    verdict = "confirmed" if confirm else "dismissed"
    incidents.resolve(conn, key(Rule.EMERGENCY_PROPOSED, proposal.territory_id),
                      f"emergency {verdict} by {actor}", actor=actor)  # fmt: skip
    return proposal, eid


def open_proposals(conn: Conn, scope_path: str) -> list[Proposal]:
    """Undecided proposals for areas in `scope_path` (those a person there may decide)."""
    rows = conn.execute(
        """SELECT p.id, p.territory_id, t.path::text, p.reason, p.rule, p.proposed_at
           FROM emergency_proposals p JOIN territory t ON t.id = p.territory_id
           WHERE p.decided_at IS NULL AND t.path <@ %s::ltree
           ORDER BY p.id""",
        (scope_path,),
    ).fetchall()
    out = []
    for pid, area, path, reason, rule, at in rows:
        assert isinstance(at, datetime)
        out.append(Proposal(int(str(pid)), str(area), str(path), str(reason), str(rule), at))
    return out
