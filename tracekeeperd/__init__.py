"""tracekeeperd: the user daemon that links commits to the agent sessions that produced them."""

__version__ = "0.1.0"
