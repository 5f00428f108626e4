"""
The hub: the Responses API's request rules and objects.
"""
