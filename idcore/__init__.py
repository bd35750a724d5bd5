"""The pure core of idnode: identifier syntax, the record model, the
Handle.Net REST JSON codec, limits, errors and settings.

Nothing here opens a socket, starts an event loop or talks to Redis; every
other package builds on it (a test enforces this).
"""
