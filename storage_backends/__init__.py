"""Pluggable storage for Satchel: one interface (``Store``), several backends,
one conformance suite (``satchel.storage_backends.conformance``) they all pass."""

from .base import Store

__all__ = ["Store"]
