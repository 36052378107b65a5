"""Scapy layers for the industrial protocols icsguard decodes, one module per protocol.

Installed as ``icsguard.parsers``; import them from there.
"""
