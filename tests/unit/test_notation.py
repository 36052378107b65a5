"""Values as people read them, and text from the wire that must stay text in every output."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from icsguard.output import tables
from icsguard.output.notation import details, endpoint, json_cell, s7_address
from icsguard.output.report import markdown_text
from icsguard.output.tables import Column

pytestmark = pytest.mark.unit


def test_step7_addresses_and_endpoints():
    assert s7_address({"area": "DB", "db": 1, "byte": 0, "transport_size": "BYTE", "length": 16}) == "DB1.DBB0[16]"
    assert s7_address({"area": "DB", "db": 3, "byte": 2, "bit": 5, "transport_size": "BIT", "length": 1}) == "DB3.DBX2.5"
    assert s7_address({"area": "M", "byte": 10, "transport_size": "WORD", "length": 1}) == "MW10"
    assert s7_address({"area": "I", "byte": 0, "bit": 1, "transport_size": "BIT", "length": 1}) == "I0.1"
    assert s7_address({"area": "T", "byte": 5, "transport_size": "TIMER", "length": 2}) == "T5[2]"
    assert endpoint("fe80::1", 547) == "[fe80::1]:547" and endpoint("10.0.0.1", 502) == "10.0.0.1:502"
    assert details({"security_policy": "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
                    "values": [1, 0], "flag": True, "transaction_id": 7}) == \
        "security_policy=Basic256Sha256 values=[1, 0] flag=true"


def test_wire_text_stays_text_in_markdown_csv_and_tables():
    text = markdown_text("<b>[x](http://evil.example)</b> | www.evil.example `code`")
    assert "<" not in text and "\\[x\\](" in text and "|" not in text.replace("\\|", "")
    assert "http://" not in text and "www." not in text and "`" not in text.replace("\\`", "")
    assert json_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")" and json_cell(-3) == "-3"
    out = Console(file=io.StringIO(), width=200)
    tables.show(out, "[bold]title", [Column("value")], [["[red]wire text, wider than the title"]], caption="[/]caption")
    shown = out.file.getvalue()
    assert "[bold]title" in shown and "[red]wire" in shown and "[/]caption" in shown
