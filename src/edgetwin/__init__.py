"""edgetwin: an edge gateway daemon that keeps a live digital twin of industrial devices."""

__version__ = "0.1.0"
