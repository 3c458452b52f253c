"""Operations logic without I/O: lag and snapshot shapes, Burrow-like status rules, dead-letter records.

The adapters that read a real cluster live in ``streams.ops``; the CLI (``sharewise monitor``,
``topics``, ``dlq``, ``status``) in ``engine.cli.ops_cmd``.
"""
