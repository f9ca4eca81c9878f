"""Stored reports: the daily generators (periodic tasks) and the read API."""
