"""Roles guessed from behaviour, one host at a time."""

from __future__ import annotations

import pytest

from icsguard.events import Event
from icsguard.output.inventory import Inventory

pytestmark = pytest.mark.unit


def _pdu(src, sport, dst, dport, direction, proto, function) -> Event:
    return Event(1.0, proto, src, sport, dst, dport, direction, function, None, "1:x", "t.pcap", 1, {})


def _roles(*events: Event) -> dict[str, str]:
    inventory = Inventory()
    for event in events:
        inventory.feed(event)
    return {ip: asset.role for ip, asset in inventory.assets.items()}


def test_an_opcua_server_that_polls_controllers_is_not_a_plc():
    roles = _roles(_pdu("10.0.0.5", 50000, "10.0.0.9", 4840, "request", "opcua", "ReadRequest"),
                   _pdu("10.0.0.9", 4840, "10.0.0.5", 50000, "response", "opcua", "ReadResponse"),
                   _pdu("10.0.0.9", 40000, "10.0.0.2", 502, "request", "modbus", "read_holding_registers"),
                   _pdu("10.0.0.2", 502, "10.0.0.9", 40000, "response", "modbus", "read_holding_registers"))
    assert roles == {"10.0.0.5": "scada", "10.0.0.9": "scada", "10.0.0.2": "plc"}


def test_a_plc_sending_download_jobs_from_port_102_is_the_server():
    roles = _roles(_pdu("10.0.0.7", 49152, "10.0.0.2", 102, "request", "s7comm", "request_download"),
                   _pdu("10.0.0.2", 102, "10.0.0.7", 49152, "response", "s7comm", "request_download"),
                   _pdu("10.0.0.2", 102, "10.0.0.7", 49152, "request", "s7comm", "download_block"),
                   _pdu("10.0.0.7", 49152, "10.0.0.2", 102, "response", "s7comm", "download_block"))
    assert roles == {"10.0.0.7": "ews", "10.0.0.2": "plc"}


def test_a_host_asked_but_never_answering_is_no_controller():
    roles = _roles(_pdu("10.0.0.7", 49152, "10.0.0.3", 502, "request", "modbus", "read_coils"))
    assert roles == {"10.0.0.7": "scada", "10.0.0.3": "unknown"}
