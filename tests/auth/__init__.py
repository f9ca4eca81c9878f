"""Authentication, sessions, permissions and rate limits."""
