"""Requests awaiting their responses on one connection, and what a response takes over
from its request, so that every value it carries is attributable (a Modbus read answer
names its registers, an S7 acknowledgement its items, an OPC UA ReadResponse its nodes)."""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Mapping

from icsguard.bounded import remember


class Outstanding:
    """Requests by the key their protocol pairs on (Modbus transaction id, S7 PDU reference,
    S7comm-plus sequence number, OPC UA request id), bounded: requests that are never
    answered make room for new ones, oldest first."""
    __slots__ = ("asked", "capacity")

    def __init__(self, capacity: int):
        self.asked: dict[Hashable, Any] = {}
        self.capacity = capacity

    def ask(self, key: Hashable, request: Any) -> None:
        remember(self.asked, key, request, self.capacity)

    def answer(self, key: Hashable) -> Any:
        """The request this key answers, once; None when it was never seen."""
        return self.asked.pop(key, None)


def inherit(response: dict[str, Any], request: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The response's fields with those of ``keys`` that only its request carries."""
    for key in keys:
        if key in request and key not in response:
            response[key] = request[key]
    return response
