"""
Moving bodies: the incremental SSE decoder, relays with producer/consumer backpressure, and usage found in streams.
"""
