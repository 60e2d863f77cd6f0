"""What a run costs before and while it runs: memory, time and the C heap of its processes.

- ``memory_model``: the predicted peak memory of every stage from a config alone; the offload choice; GPU fit
- ``memory_meter``: the measured peak of a stretch of code (and the byte units MIB, GIB)
- ``estimate``: trainable counts and run time before a run (meta-device model, no weights)
- ``heap``: the glibc heap tunables the tool's processes start with
"""
