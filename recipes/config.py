"""What a recipe run is: its :class:`Config` (the absl flags of ``recipes/chipnet.py`` map
onto it), the tf.distribute strategy, the Keras it runs on, and where its files go.

``Config.keras`` chooses the Keras: ``2`` (default) trains tf_keras models, which every
strategy distributes; ``3`` trains Keras 3 models on ``KERAS_BACKEND`` (TensorFlow, JAX or
PyTorch) on one device. The architectures are built once, with tf_keras, and a Keras 3 run
loads that same model into Keras 3 (from its HDF5 file), so both Kerases start from the same
architecture and initial weights.
"""

import dataclasses
import json
import os

import chipnet_tf
from chipnet_tf.compat import keras, tf
from recipes import RecipeError, data

KERAS_VERSIONS = (2, 3)

STAGES = ("pretrain", "prune", "finetune", "export", "all")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


_STRATEGIES = {}


def make_strategy(name):
    """The tf.distribute strategy for ``--strategy`` (multi_worker reads TF_CONFIG).

    One instance per process and name: two MirroredStrategy instances in one process reuse
    the same collective keys and abort each other's all-reduces. Without GPUs, mirrored
    replicas reduce through one device (no collective ops; NCCL is for GPUs).
    """
    if name not in STRATEGIES:
        raise RecipeError(f"Unknown strategy {name!r}. Accepted: {', '.join(STRATEGIES)}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _STRATEGIES:
        if name == "mirrored":
            ops = None if tf.config.list_logical_devices("GPU") else tf.distribute.ReductionToOneDevice()
            _STRATEGIES[name] = tf.distribute.MirroredStrategy(cross_device_ops=ops)
        elif name == "multi_worker":
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            _STRATEGIES[name] = tf.distribute.TPUStrategy(resolver)
    return _STRATEGIES[name]


@dataclasses.dataclass
class Config:
    """Everything a run needs; the absl flags of ``recipes/chipnet.py`` map onto it."""

    stage: str = "all"
    dataset: str = "digits"
    data_dir: str = None
    model: str = "small_cnn"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    model_dir: str = None  # default: saved_models/runs/<dataset>_<model>
    budget: float = 0.25
    budget_type: str = "flops"
    latency_table: str = None  # .json from chipnet-tf profile; needed by budget_type="latency"
    batch_size: int = 64
    seed: int = 0
    pretrain_epochs: int = 30
    pretrain_lr: float = 0.05
    prune_epochs: int = 20
    prune_lr: float = 1e-3
    prune_steps_per_epoch: int = None  # None: steps_per_epoch
    validation_fraction: float = 0.1  # held out of train; pruning keeps the best hard-masked epoch
    prune_weight_decay: float = 1e-3
    budget_weight: float = 30.0
    crispness_weight: float = 0.0  # prune_low_budget's default (the paper: 10)
    finetune_epochs: int = 30
    finetune_lr: float = 0.05
    finetune_weight_decay: float = 1e-3
    round_to: int = 1
    strategy: str = "default"
    masks_from: str = None
    steps_per_epoch: int = None  # training steps per epoch; None = one pass (more repeats the split)
    augment: data.Augment = dataclasses.field(default_factory=data.Augment)
    verbose: int = 2
    callbacks: list = dataclasses.field(default_factory=list)  # extra Keras callbacks for every fit
    keras: int = 2  # 2: tf_keras; 3: Keras 3 on KERAS_BACKEND (one device)

    def distribution(self):
        """The tf.distribute strategy of this run (created once)."""
        if getattr(self, "_strategy", None) is None:
            self._strategy = make_strategy(self.strategy)
        return self._strategy

    def keras_module(self):
        """The Keras package this run trains with: tf_keras, or Keras 3 (``keras=3``)."""
        if self.keras == 3:
            import keras as keras3  # imported only when asked for: tf_keras runs never load it

            return keras3
        return keras

    def backend(self):
        """The Keras 3 backend of a ``keras=3`` run (``"tensorflow"``, ``"jax"``, ``"torch"``); None for tf_keras."""
        return self.keras_module().backend.backend() if self.keras == 3 else None

    def validate(self):
        if self.keras not in KERAS_VERSIONS or isinstance(self.keras, bool):
            raise RecipeError(f"keras must be 2 (tf_keras) or 3 (Keras 3). Received: {self.keras!r}")
        if self.keras == 3:
            _check_keras3()
            if self.strategy != "default":
                raise RecipeError(
                    f"--strategy={self.strategy} distributes tf_keras models only; a Keras 3 run (--keras=3) "
                    "trains on one device: use --strategy=default, or --keras=2 to distribute."
                )
        if self.stage not in STAGES:
            raise RecipeError(f"Unknown stage {self.stage!r}. Accepted: {', '.join(STAGES)}.")
        data.check_dataset(self.dataset)
        if self.strategy not in STRATEGIES:
            raise RecipeError(f"Unknown strategy {self.strategy!r}. Accepted: {', '.join(STRATEGIES)}.")
        if not (isinstance(self.budget, (int, float)) and 0 < self.budget <= 1):
            raise RecipeError(f"budget must be in (0, 1]. Received: {self.budget!r}")
        chipnet_tf.budgets.check_budget_type(self.budget_type)
        if self.budget_type == "latency" and not self.latency_table:
            raise RecipeError(
                "--budget_type=latency needs --latency_table=PATH (chipnet-tf profile MODEL --out=PATH on the device)"
            )
        if not (isinstance(self.validation_fraction, (int, float)) and 0 <= self.validation_fraction < 0.5):
            raise RecipeError(f"validation_fraction must be in [0, 0.5). Received: {self.validation_fraction!r}")
        if self.augment.mixes_labels:
            raise RecipeError("CutMix/MixUp make one-hot labels; the recipes train with sparse labels. Turn them off.")
        for name in ("steps_per_epoch", "prune_steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise RecipeError(f"{name} must be a positive integer or None. Received: {value!r}")
        for name in ("batch_size", "pretrain_epochs", "prune_epochs", "finetune_epochs", "round_to"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name in ("batch_size", "round_to") else 0):
                raise RecipeError(
                    f"{name} must be a non-negative integer (batch_size, round_to >= 1). Received: {value!r}"
                )
        return self


def default_model_dir(config):
    """``saved_models/runs/<dataset>_<model>`` (git ignores ``saved_models/runs/``)."""
    return os.path.join("saved_models", "runs", f"{config.dataset}_{config.model}")


def path(config, name):
    return os.path.join(config.model_dir, name)


def is_chief(config):
    """Whether this process writes the run's files (always, except non-chief workers)."""
    return bool(config.distribution().extended.should_checkpoint)


def _check_keras3():
    try:
        import keras as keras3
    except ImportError:
        raise RecipeError("--keras=3 needs Keras 3: pip install 'keras>=3'.") from None
    if not keras3.__version__.startswith("3."):
        raise RecipeError(f"--keras=3 needs Keras 3; `import keras` gives Keras {keras3.__version__}.")


def config_dict(config):
    """The configuration as JSON-ready values (without the extra callbacks)."""
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "callbacks"}
    out["augment"] = dataclasses.asdict(config.augment)
    return json.loads(json.dumps(out))


def run_signature(config):
    """What must not change for a run to be resumed: all but the stage, verbosity and strategy."""
    out = config_dict(config)
    for key in ("stage", "verbose", "strategy"):
        out.pop(key)
    return out


def say(config, text):
    """What a run tells its user on stdout (stage headers, tables, files, summary); verbose=0 is silent."""
    if config.verbose:
        print(text, flush=True)


def barrier(config):
    """Multi-worker runs: every worker waits here (a one-number all-reduce), so files the
    chief wrote before it exist for all after it. A no-op on one machine."""
    if config.strategy != "multi_worker":
        return
    strategy = config.distribution()
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
