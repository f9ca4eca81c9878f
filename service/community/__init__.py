"""Community analytics: realtime presence, reports, activity patterns and today's overview."""
