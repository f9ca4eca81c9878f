"""Tests of the system metrics domain."""
