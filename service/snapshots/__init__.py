"""Daily snapshots of the platform and of each user: the DailyAnalytics and UserAnalytics rows."""
