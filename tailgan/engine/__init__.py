"""The engine: the steppable trainer, its callbacks, the run config, and trained recipes loaded back."""

from tailgan.engine.config import (
    DEFAULT_RESOLUTION,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    load_run_config,
    make_config,
)
from tailgan.engine.distributed import finish_distributed, init_distributed, pick_device
from tailgan.engine.generator import TrainedGenerator, build_method, checkpoint_path, load_generator
from tailgan.engine.run import build_trainer, data_shape, run_recipe
from tailgan.engine.streams import Batches
from tailgan.engine.trainer import (
    Callback,
    Checkpoints,
    DivergenceGuard,
    Evaluation,
    LastRecord,
    RunLog,
    SampleGrid,
    StepEvent,
    SyncCheck,
    Trainer,
    TrainingDiverged,
)
from tailgan.methods.spec import DataShape, OutputSpec, Phase, RunContext, StreamSpec

__all__ = [
    "DEFAULT_RESOLUTION",
    "Batches",
    "Callback",
    "Checkpoints",
    "DataShape",
    "DivergenceGuard",
    "Evaluation",
    "LastRecord",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "OutputSpec",
    "Phase",
    "RunContext",
    "RunLog",
    "SampleGrid",
    "StepEvent",
    "StreamSpec",
    "SyncCheck",
    "TrainConfig",
    "TrainedGenerator",
    "Trainer",
    "TrainingDiverged",
    "build_method",
    "build_trainer",
    "checkpoint_path",
    "data_shape",
    "finish_distributed",
    "init_distributed",
    "load_generator",
    "load_run_config",
    "make_config",
    "pick_device",
    "run_recipe",
]
