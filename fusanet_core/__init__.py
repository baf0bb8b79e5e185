"""FuSaNet core: the network, losses, metrics, datasets, trainer and predictor. No ROS needed."""

from .config import Config, ModelConfig, load_config, preset_config
from .model import FuSaNet, build_model
from .predictor import Predictor, default_checkpoint

__all__ = ["Config", "FuSaNet", "ModelConfig", "Predictor", "build_model", "default_checkpoint", "load_config", "preset_config"]
__version__ = "0.1.0"
