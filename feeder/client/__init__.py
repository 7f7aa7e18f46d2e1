"""The consumer's side of the wire: :class:`FeederClient` (no pyspark, no pyiceberg)."""

from feeder.client.client import FeederClient

__all__ = ["FeederClient"]
