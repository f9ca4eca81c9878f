"""Tests of the Prometheus export."""
