"""autonomic: a self-healing operations engine (monitor, analyze, plan, execute, knowledge)."""

__version__ = "0.1.0"
