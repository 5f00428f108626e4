"""
The HTTP edge: Klein routes (thin), the exchange that owns what a client is sent, the site and channel, auth, CORS, and the bridges' route-side work.
"""
