"""A wrapped model saved as .keras, .h5 and SavedModel loads back in a fresh process."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import chipnet_tf
from tests.models import pruning_optimizer, residual_cnn

LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import chipnet_tf
    from chipnet_tf.compat import keras

    path, fmt, use_scope, ref_path = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
    ref = np.load(ref_path)
    if use_scope:
        with chipnet_tf.prune_scope():
            model = keras.models.load_model(path)
    else:
        model = keras.models.load_model(path)
    ctl = chipnet_tf.prune.controllers(model)[0]
    out = {
        "pred_diff": float(np.abs(model.predict(ref["x"], verbose=0) - ref["pred"]).max()),
        "masks_equal": all(
            np.array_equal(m, ref["mask_" + n]) for n, m in chipnet_tf.get_masks(model).items()
        ),
        "state": [float(ctl.beta.numpy()), float(ctl.gamma.numpy()), float(ctl.steepness.numpy()),
                  int(ctl.pruning_epoch.numpy()), int(ctl.pruning_step.numpy())],
        "budget": [ctl.budget, ctl.budget_type],
        "classes": sorted({type(l).__name__ for l in model.layers}),
    }
    # resume training from the loaded model
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(ref["x"], ref["y"], epochs=1, batch_size=16, verbose=0,
              callbacks=[chipnet_tf.UpdatePruningStep()])
    out["after_resume"] = [int(ctl.pruning_epoch.numpy()), int(ctl.pruning_step.numpy())]
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, digits):
    x, y, _, _ = digits
    tmp = tmp_path_factory.mktemp("saved")
    pruned = chipnet_tf.prune_low_budget(residual_cnn(8), budget=0.4, budget_type="flops")
    pruned.compile(pruning_optimizer(), "sparse_categorical_crossentropy")
    pruned.fit(x[:64], y[:64], epochs=2, batch_size=16, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()])
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    ctl.zeta.assign(np.random.default_rng(0).normal(size=ctl.total).astype("float32"))
    masks = chipnet_tf.get_masks(pruned)
    ref = {"x": x[:32], "y": y[:32], "pred": pruned.predict(x[:32], verbose=0)}
    ref.update({f"mask_{n}": m for n, m in masks.items()})
    np.savez(tmp / "ref.npz", **ref)
    paths = {
        "keras": str(tmp / "model.keras"),
        "h5": str(tmp / "model.h5"),
        "savedmodel": str(tmp / "savedmodel"),
    }
    pruned.save(paths["keras"])
    pruned.save(paths["h5"])
    pruned.save(paths["savedmodel"], save_format="tf")
    state = [float(ctl.beta.numpy()), float(ctl.gamma.numpy()), float(ctl.steepness.numpy()), 2, 8]
    return paths, str(tmp / "ref.npz"), state


@pytest.mark.parametrize("fmt", ["keras", "h5", "savedmodel"])
@pytest.mark.parametrize("use_scope", [True, False])
def test_round_trip_in_fresh_process(saved, fmt, use_scope):
    paths, ref_path, state = saved
    script = os.path.join(os.path.dirname(ref_path), "loader.py")
    with open(script, "w") as f:
        f.write(LOADER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, script, paths[fmt], fmt, "1" if use_scope else "0", ref_path],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT ") :])
    assert out["pred_diff"] <= 1e-6
    assert out["masks_equal"]
    assert out["state"] == pytest.approx(state)
    assert out["budget"] == [0.4, "flops"]
    assert {"ChannelGate", "ChipNetController"} <= set(out["classes"])
    assert out["after_resume"] == [3, 10]  # one more epoch of 2 steps
