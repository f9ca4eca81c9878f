"""Geo-restriction analytics: effectiveness, location breakdown and trends."""
