"""The driver side: the feeder session, slice planning, the coordinator's Flight service,
node launching and registry, leases and metrics. Needs pyspark and pyiceberg."""
