"""The traders' websocket feed: protocol core, history, fanout, server and live page.

Start one with :func:`sinks.feed.server.serve_feed` (or ``sharewise feed-server``);
the protocol is documented in the README ("The websocket signal feed").
"""
