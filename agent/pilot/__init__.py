"""The autopilot's driver: one run's loop (rules, then the LLM above them) and a root of runs."""
