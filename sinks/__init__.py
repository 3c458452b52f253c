"""Adapters that write out: batched PostgreSQL sinks, the websocket fanout server."""
