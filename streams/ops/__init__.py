"""Read-side operations on a Kafka-protocol cluster: snapshots of offsets and lag, the dead-letter topic.

Works on any cluster and any consumer group, not only the engine's (``engine.ops`` holds the
pure rules these feed).
"""
