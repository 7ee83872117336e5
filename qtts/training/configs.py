"""Where the Hydra configs are, and composing them outside a Hydra main.

The tree ships inside the package (``qtts/configs``, package data), so a wheel install trains as a checkout does;
``scripts/train.py``, ``qtts train``, the demo and the tests all read it from ``CONFIG_DIR``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
ROOT_CONFIG = "train"


def compose_config(overrides: Sequence[str] = ()):
    """The root config with command-line style ``overrides`` (``experiment=talker_demo``, ``trainer.max_steps=5``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside another Hydra app (a Hydra main, a test's context)
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=ROOT_CONFIG, overrides=list(overrides))
