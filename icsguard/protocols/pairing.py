"""Requests awaiting their responses on one connection, and what a response takes over
from its request, so that every value it carries is attributable (a Modbus read answer
names its registers, an S7 acknowledgement its items, an OPC UA ReadResponse its nodes)."""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Mapping

from icsguard.bounded import remember
from icsguard.budget import Pool

ENTRY_BYTES = 256          # what a remembered request costs the memory pool, about
_NOT_ASKED = object()


class Outstanding:
    """Requests by the key their protocol pairs on (Modbus transaction id, S7 PDU reference,
    S7comm-plus sequence number, OPC UA request id), bounded: requests that are never
    answered make room for new ones, oldest first; each is charged to the run's pool, and
    one the pool cannot hold is not remembered (its answer goes unpaired)."""
    __slots__ = ("asked", "capacity", "pool")

    def __init__(self, capacity: int, pool: Pool):
        self.asked: dict[Hashable, Any] = {}
        self.capacity = capacity
        self.pool = pool

    def ask(self, key: Hashable, request: Any) -> None:
        if key in self.asked or self.pool.take(ENTRY_BYTES):
            self.pool.give(ENTRY_BYTES * remember(self.asked, key, request, self.capacity))

    def answer(self, key: Hashable) -> Any:
        """The request this key answers, once; None when it was never seen."""
        request = self.asked.pop(key, _NOT_ASKED)
        if request is _NOT_ASKED:
            return None
        self.pool.give(ENTRY_BYTES)
        return request

    def release(self) -> None:
        """The connection is gone: its unanswered requests too."""
        self.pool.give(ENTRY_BYTES * len(self.asked))
        self.asked.clear()


def inherit(response: dict[str, Any], request: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The response's fields with those of ``keys`` that only its request carries."""
    for key in keys:
        if key in request and key not in response:
            response[key] = request[key]
    return response
