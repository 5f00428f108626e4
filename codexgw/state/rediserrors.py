# -*- test-case-name: tests.state.test_redis -*-
"""
What the Redis client raises, apart from the client: the store and the rate
limiter catch these without importing txredisapi, which a gateway without
Redis never loads (a few MB of its resident memory).
"""


class RedisError(Exception):
    """Redis answered with an error reply."""


class RedisUnavailable(Exception):
    """Redis could not be reached, or did not answer in time."""


__all__ = ["RedisError", "RedisUnavailable"]
