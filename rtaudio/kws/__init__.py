"""Keyword spotting: TTS data builder, streaming features, streaming classifiers, decisions."""
