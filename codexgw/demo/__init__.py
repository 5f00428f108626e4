"""
The built-in offline demo model: deterministic, local, clearly not a real LLM.
"""
