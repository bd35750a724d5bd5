"""Command-line entry points (``idnode``) and benchmark drivers."""
