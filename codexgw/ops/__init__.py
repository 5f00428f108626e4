"""
The codexgw command for operators: check-config, probe, codex-config. Nothing in the gateway imports it.
"""
