"""A cap on the live streams one person holds open in this process."""

from __future__ import annotations

import weakref
from collections import defaultdict


class Slot:
    """One open stream's place; its stream gives it back when it ends."""

    __slots__ = ("__weakref__",)


class StreamSlots:
    """At most `per_person` open streams per person. A slot whose stream never started (the
    client went away first) is forgotten with it, so no place leaks."""

    def __init__(self, per_person: int) -> None:
        self.per_person = per_person
        self._open: defaultdict[str, weakref.WeakSet[Slot]] = defaultdict(weakref.WeakSet)

    def take(self, person_id: str) -> Slot | None:
        """A slot for one more stream of this person, or None when they have all theirs open."""
        held = self._open[person_id]
        if len(held) >= self.per_person:
            return None
        slot = Slot()
        held.add(slot)
        return slot

    def give_back(self, person_id: str, slot: Slot) -> None:
        held = self._open.get(person_id)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._open[person_id]

    def open_for(self, person_id: str) -> int:
        held = self._open.get(person_id)
        return len(held) if held is not None else 0
