"""The rules autopilot: what it senses, its configuration, its actions, the finish, observations and alerts."""
