"""PDUs that contradict themselves: a header cut short, a count that runs past the end.

A decoder raises MalformedPDU with the reason; the protocol stage's one guard turns it, like
any other exception a decoder raises, into a malformed Event, so that no decoder needs a
guard of its own.
"""

from __future__ import annotations


class MalformedPDU(Exception):
    """The reason is the message, worded for an analyst."""


def reason(what: str, error: Exception) -> str:
    """Why a PDU could not be decoded: the decoder's own reason, or the exception's kind."""
    return str(error) if isinstance(error, MalformedPDU) else f"undecodable {what}: {type(error).__name__}"


def require(data: bytes, size: int, what: str) -> None:
    """Scapy fills fields the bytes do not reach with defaults: a header must be whole first."""
    if len(data) < size:
        raise MalformedPDU(f"{what} cut short: {len(data)} of {size} bytes")
