"""The node's servers (the Handle.Net REST API over aiohttp) and clients."""
