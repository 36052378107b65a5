"""icsguard: passive security monitoring for industrial networks."""

__version__ = "0.1.0"
