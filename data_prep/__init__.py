"""Corpus preparation: importers that turn public corpus layouts into a qtts manifest, an energy
VAD that cuts long recordings into segments, and a synthetic espeak-ng corpus for demos and tests.

Each module is runnable (``python -m data_prep.<module> --help``); all of them write the manifest
schema of ``qtts.data.manifest`` and report bad files instead of stopping on them.
"""

from data_prep.common import ImportResult, Reject

__all__ = ["ImportResult", "Reject"]
