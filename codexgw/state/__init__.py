"""
What outlives a request: stored responses (SQLite, Redis), rate limits, the Redis client and conversation history.
"""
