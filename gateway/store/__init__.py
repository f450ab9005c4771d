"""Redis: key layout, client, Lua scripts and the embedded server."""
