"""The LLM autopilot: the tool loop, the chat client, the tools offered, budget, digest, reply parsing and the stance on untrusted text."""
