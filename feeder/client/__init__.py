"""The consumer's side of the wire: :class:`FeederClient` (no pyspark, no pyiceberg)."""

from feeder.client.client import FeederClient
from feeder.client.request import ReadRequest

__all__ = ["FeederClient", "ReadRequest"]
