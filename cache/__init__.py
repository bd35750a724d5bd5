"""Resolver caching: the cache interface, the bounded in-process tier and the
Redis tier (TTL, negative entries, serve-stale, request coalescing).

Built with the recursive resolver (issue #3); empty until then.
"""
