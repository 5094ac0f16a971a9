"""The autopilot as an MCP client: the typed tools over an MCP session, and the session's connection thread."""
