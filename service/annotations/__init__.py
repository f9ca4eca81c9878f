"""Annotations: marks on the dashboards' time axis (`/api/annotations/`, and those the service writes)."""
