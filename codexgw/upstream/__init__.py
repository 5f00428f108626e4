"""
Talking to model servers: the treq/Agent client, retries, failover and circuit breakers, routing by model, provider profiles, health probes and model listings.
"""
