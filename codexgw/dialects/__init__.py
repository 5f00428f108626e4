"""
The pure middle: the Responses hub and one spoke per other dialect. Bytes or dicts in, events out; no reactor, no I/O, nothing of the gateway but its errors.
"""
