"""Training in its own process with the autopilot beside it: launch, the demo, progress lines."""
