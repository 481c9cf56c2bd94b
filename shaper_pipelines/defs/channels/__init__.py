"""Channels: shaper's predictions and plans, opened to the tools users already run (Prometheus)."""
