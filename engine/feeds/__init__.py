"""Tick sources in the pure core: the synthetic NSE feed and file readers. Producing to Kafka is streams/feed.py."""
