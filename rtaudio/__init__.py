"""rtaudio: a real-time streaming audio processor."""

__version__ = "0.1.0"
