"""User-facing errors: one clear line, no traceback (the CLI prints them and exits non-zero)."""


class RtAudioError(Exception):
    """An error caused by the user's input (file, pipeline, parameter, device)."""


class ConfigError(RtAudioError):
    """A pipeline file, chain or parameter is invalid."""


class AudioFormatError(RtAudioError):
    """Audio that a stage, source or sink cannot take."""
