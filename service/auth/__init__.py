"""Who is asking: JWT bearer tokens, browser sessions in Redis, service tokens, and the permission guards."""
