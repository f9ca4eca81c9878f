"""Tracking ingest: the stream consumer that moves accepted events into the raw tables."""
