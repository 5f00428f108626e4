"""
The Chat Completions spoke: requests to and from the hub, streams to and from the hub, errors, tools and provider dialects.
"""
