"""The ChipNet pipeline as library code: pretrain dense -> prune -> strip + fine-tune -> export.

``recipes/chipnet.py`` is the thin absl entry point; tests call :func:`run` directly.
Every stage reads what the previous one wrote under ``model_dir``:

    dense.keras       pretrain  (the dense model)
    pruned.keras      prune     (the wrapped model: gates, controller, schedule state)
    masks.npz         prune     (budget-aware hard masks; or --masks_from)
    stripped.keras    finetune  (the physically smaller model, fine-tuned)
    model.tflite, model_int8.tflite, report.json   export
    logs/<stage>/     TensorBoard event files

Paper defaults: pruning with AdamW (weight decay 5e-4 on weights, none on the mask logits),
budget weight 30, crispness weight 10, 20 epochs; fine-tuning with SGD momentum 0.9,
lr 0.05 with step decay (x0.1 at 50% and 75% of the epochs).
"""

import dataclasses
import json
import os

import numpy as np

import chipnet_tf
from chipnet_tf import architectures
from chipnet_tf.compat import keras, tf
from chipnet_tf.io import write_json
from recipes import data

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
        raise ValueError(f"Unknown strategy {name!r}. Accepted: {', '.join(STRATEGIES)}.")
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
    model_dir: str = os.path.join("saved_models", "digits_small_cnn")
    budget: float = 0.25
    budget_type: str = "flops"
    batch_size: int = 64
    seed: int = 0
    pretrain_epochs: int = 30
    pretrain_lr: float = 0.05
    prune_epochs: int = 20
    prune_lr: float = 1e-2
    prune_weight_decay: float = 5e-4
    budget_weight: float = 30.0
    crispness_weight: float = 10.0
    finetune_epochs: int = 30
    finetune_lr: float = 0.05
    round_to: int = 1
    strategy: str = "default"
    masks_from: str = None
    steps_per_epoch: int = None  # limit (tests); None = the whole split
    augment: data.Augment = dataclasses.field(default_factory=data.Augment)
    verbose: int = 2

    def distribution(self):
        """The tf.distribute strategy of this run (created once)."""
        if getattr(self, "_strategy", None) is None:
            self._strategy = make_strategy(self.strategy)
        return self._strategy

    def validate(self):
        if self.stage not in STAGES:
            raise ValueError(f"Unknown stage {self.stage!r}. Accepted: {', '.join(STAGES)}.")
        data.check_dataset(self.dataset)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}. Accepted: {', '.join(STRATEGIES)}.")
        if not (isinstance(self.budget, (int, float)) and 0 < self.budget <= 1):
            raise ValueError(f"budget must be in (0, 1]. Received: {self.budget!r}")
        chipnet_tf.budgets.check_budget_type(self.budget_type)
        for name in ("batch_size", "pretrain_epochs", "prune_epochs", "finetune_epochs", "round_to"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name in ("batch_size", "round_to") else 0):
                raise ValueError(
                    f"{name} must be a non-negative integer (batch_size, round_to >= 1). Received: {value!r}"
                )
        return self


def path(config, name):
    return os.path.join(config.model_dir, name)


def build_model(config):
    """The dense model: a chipnet_tf.architectures name or a keras.applications name."""
    shape, classes = data.info(config.dataset)
    kwargs = dict(config.model_kwargs)
    if config.model in architectures.NAMES:
        kwargs.setdefault("num_classes", classes)
        kwargs.setdefault("input_shape", shape)
        return architectures.get(config.model, **kwargs)
    factory = getattr(keras.applications, config.model, None)
    if not callable(factory):
        raise ValueError(
            f"Unknown model {config.model!r}. Accepted: {', '.join(architectures.NAMES)} or a keras.applications "
            "name such as MobileNetV2."
        )
    kwargs.setdefault("weights", None)
    kwargs.setdefault("classes", classes)
    kwargs.setdefault("input_shape", shape)
    kwargs.setdefault("classifier_activation", None)
    return factory(**kwargs)


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _datasets(config):
    train = data.make_dataset(
        config.dataset, "train", config.batch_size, config.data_dir, augment=config.augment, seed=config.seed
    )
    if config.augment.mixes_labels:
        raise ValueError("CutMix/MixUp make one-hot labels; the recipes train with sparse labels. Turn them off.")
    test = data.make_dataset(config.dataset, "test", config.batch_size, config.data_dir, shuffle=False)
    return train, test


def _fit(model, config, train, epochs, stage, callbacks=()):
    if epochs == 0:
        return {}
    backup = keras.callbacks.BackupAndRestore(path(config, os.path.join("backup", stage)))
    logs = keras.callbacks.TensorBoard(path(config, os.path.join("logs", stage)))
    history = model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=config.steps_per_epoch,
        callbacks=[*callbacks, backup, logs],
        verbose=config.verbose,
    )
    return history.history


def _save(model, target):
    """Saves atomically: a temporary sibling renamed over ``target``."""
    tmp = target + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, target)


def _accuracy(model, test, config):
    model.compile(loss=_loss(), metrics=["accuracy"])
    steps = config.steps_per_epoch
    return float(model.evaluate(test, steps=steps, verbose=0, return_dict=True)["accuracy"])


def pretrain(config):
    keras.utils.set_random_seed(config.seed)
    train, test = _datasets(config)
    with config.distribution().scope():
        model = build_model(config)
        opt = keras.optimizers.SGD(config.pretrain_lr, momentum=0.9, nesterov=True)
        model.compile(opt, _loss(), metrics=["accuracy"])
    _fit(model, config, train, config.pretrain_epochs, "pretrain")
    _save(model, path(config, "dense.keras"))
    return {"dense_accuracy": _accuracy(model, test, config)}


def prune(config):
    keras.utils.set_random_seed(config.seed)
    dense = keras.models.load_model(path(config, "dense.keras"), compile=False)
    if config.masks_from:
        masks = chipnet_tf.load_masks(config.masks_from)
        chipnet_tf.strip_pruning(dense, masks=masks)  # validates them against this architecture
        chipnet_tf.save_masks(path(config, "masks.npz"), masks)
        return {"masks_from": config.masks_from}
    train, _ = _datasets(config)
    with config.distribution().scope():
        pruned = chipnet_tf.prune_low_budget(
            dense,
            budget=config.budget,
            budget_type=config.budget_type,
            budget_weight=config.budget_weight,
            crispness_weight=config.crispness_weight,
        )
        opt = keras.optimizers.AdamW(config.prune_lr, weight_decay=config.prune_weight_decay)
        opt.exclude_from_weight_decay(var_names=["zeta"])
        pruned.compile(opt, _loss(), metrics=["accuracy"])
    history = _fit(
        pruned,
        config,
        train,
        config.prune_epochs,
        "prune",
        callbacks=[chipnet_tf.UpdatePruningStep(), chipnet_tf.PruningSummaries(path(config, "logs/prune_chipnet"))],
    )
    _save(pruned, path(config, "pruned.keras"))
    masks = chipnet_tf.get_masks(pruned, round_to=config.round_to)
    chipnet_tf.save_masks(path(config, "masks.npz"), masks)
    return {"prune_history": {k: [float(v) for v in vs] for k, vs in history.items()}}


def finetune(config):
    keras.utils.set_random_seed(config.seed)
    train, test = _datasets(config)
    masks = chipnet_tf.load_masks(path(config, "masks.npz"))
    with config.distribution().scope():
        source = (
            "dense.keras" if config.masks_from or not os.path.exists(path(config, "pruned.keras")) else "pruned.keras"
        )
        # The pruned model's weights (trained with the gates), else the dense ones (mask transfer).
        model = keras.models.load_model(path(config, source), compile=False)
        small = chipnet_tf.strip_pruning(model, masks=masks)
        opt = keras.optimizers.SGD(config.finetune_lr, momentum=0.9)
        small.compile(opt, _loss(), metrics=["accuracy"])
    steps = max(1, config.finetune_epochs)

    def lr(epoch):
        return config.finetune_lr * (0.1 ** int(epoch >= 0.5 * steps)) * (0.1 ** int(epoch >= 0.75 * steps))

    _fit(small, config, train, config.finetune_epochs, "finetune", [keras.callbacks.LearningRateScheduler(lr)])
    _save(small, path(config, "stripped.keras"))
    return {"stripped_accuracy": _accuracy(small, test, config)}


def export(config):
    from chipnet_tf import export as export_lib

    _, test = _datasets(config)
    dense = keras.models.load_model(path(config, "dense.keras"), compile=False)
    small = keras.models.load_model(path(config, "stripped.keras"), compile=False)
    x_test = np.concatenate([x.numpy() for x, _ in test.take(4)])
    calib = np.concatenate(
        [x.numpy() for x, _ in data.make_dataset(config.dataset, "train", 100, config.data_dir).take(2)]
    )
    float_bytes = export_lib.to_tflite(small, path(config, "model.tflite"), verify_samples=x_test[:50])
    int8_bytes = export_lib.to_tflite(
        small, path(config, "model_int8.tflite"), quantization="int8", representative_dataset=calib
    )
    report = chipnet_tf.budget_report(dense, masks=chipnet_tf.load_masks(path(config, "masks.npz")))
    out = {
        "dense": {"params": dense.count_params(), "flops": chipnet_tf.count_flops(dense)},
        "stripped": {"params": small.count_params(), "flops": chipnet_tf.count_flops(small)},
        "predicted_kept": {t: report.totals[t]["kept"] for t in chipnet_tf.BUDGET_TYPES},
        "tflite_bytes": {"float32": len(float_bytes), "int8": len(int8_bytes)},
        "int8_top1_agreement": export_lib.verify_tflite(int8_bytes, small, x_test).top1_agreement,
    }
    return out


def run(config):
    """Runs ``config.stage`` (or all of them); writes and returns ``report.json``'s content."""
    config.validate()
    os.makedirs(config.model_dir, exist_ok=True)
    if not os.access(config.model_dir, os.W_OK):
        raise ValueError(f"model_dir {config.model_dir!r} is not writable.")
    report_path = path(config, "report.json")
    report = {}
    if os.path.exists(report_path):
        with open(report_path) as f:
            report = json.load(f)
    stages = ["pretrain", "prune", "finetune", "export"] if config.stage == "all" else [config.stage]
    for stage in stages:
        result = {"pretrain": pretrain, "prune": prune, "finetune": finetune, "export": export}[stage](config)
        report.update(result)
        report["config"] = {k: v for k, v in dataclasses.asdict(config).items() if k != "augment"}
        write_json(report_path, report)
    return report


__all__ = ["STAGES", "Config", "build_model", "run"]
