"""Writes of the routing app, one module per concept (HackSoft-style services)."""
