"""Bridges into other frameworks (Dassl)."""
