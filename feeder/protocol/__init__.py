"""The feeder's wire: typed messages, tickets, chunking hints, modes and the epoch order.

Everything here is shared by the coordinator, the data nodes and the consumers,
and imports nothing above it. The wire protocol is documented in ``PROTOCOL.md``.
"""
