"""The data node: a Flight server in a Spark task that caches slices as Arrow IPC files
and serves them memory-mapped."""
