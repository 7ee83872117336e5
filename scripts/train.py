"""Train any qtts task: ``python scripts/train.py experiment=NAME [key=value ...]`` (see qtts/configs/)."""

import hydra
from omegaconf import DictConfig

from qtts.training.run import train


@hydra.main(config_path="../qtts/configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
