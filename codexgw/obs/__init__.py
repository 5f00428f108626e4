"""
Observability: Prometheus metrics, structured logs and the redaction that keeps secrets out of both.
"""
