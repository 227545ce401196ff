#!/usr/bin/env bash
# Re-runs every measurement of this experiment into outputs/. Seconds each, run niced.
# PY: the project venv (TensorFlow 2.21, tf_keras 2.21, keras 3.15.1; no jax).
# JAXPY: a scratch venv with jax[cpu] + keras 3.15.1 (python -m venv /tmp/k3-jax-venv &&
#        /tmp/k3-jax-venv/bin/pip install "jax[cpu]" keras==3.15.1); skipped if absent.
set -u
cd "$(dirname "$0")/../.."   # the repository root (chipnet_tf importable from here)
D=experiments/keras3-scope-2026-12
PY=${PY:-/work/main/.venv/bin/python}
JAXPY=${JAXPY:-/tmp/k3-jax-venv/bin/python}
F='^WARNING|^I0000|^W0000|oneDNN|AVX|cuInit'
k3() { nice -n 10 env -u TF_USE_LEGACY_KERAS TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow "$PY" "$@" 2>&1 | grep -Ev "$F"; }
jx() { if [ -x "$JAXPY" ]; then nice -n 10 env KERAS_BACKEND=jax "$JAXPY" "$@" 2>&1 | grep -Ev "$F"; else echo "no jax venv at $JAXPY"; fi; }
for o in chipnet_first keras_first tf_keras_touched_first; do
  nice -n 10 env -u TF_USE_LEGACY_KERAS "$PY" $D/q1_today.py $o 2>&1 | grep -Ev "$F" > $D/outputs/q1_$o.txt
done
python3 $D/q2_inventory.py chipnet_tf > $D/outputs/q2_inventory.md
k3 $D/q2_walk_keras3.py > $D/outputs/q2_walk_tf.txt
jx $D/q2_walk_keras3.py > $D/outputs/q2_walk_jax.txt
k3 $D/q2b_api_probe.py | grep -Ev '^Saved artifact|^\* Endpoint|args_0|^Output Type|TensorSpec|^Captures|^$' > $D/outputs/q2b_api_probe_tf.txt
nice -n 10 env -u TF_USE_LEGACY_KERAS "$PY" $D/q3_reference_chipnet.py 2>&1 | grep -Ev "$F"
k3 $D/q3_heaviside_k3.py > $D/outputs/q3_tensorflow.txt
jx $D/q3_heaviside_k3.py > $D/outputs/q3_jax.txt
{ for m in tracked callback; do k3 $D/q4_metrics.py $m; jx $D/q4_metrics.py $m | tail -8; done; } > $D/outputs/q4_metrics.txt
k3 $D/q4b_callback_assign.py > $D/outputs/q4b_tensorflow.txt
{ jx $D/q4b_callback_assign.py; jx $D/q4b_callback_assign.py sync; } > $D/outputs/q4b_jax.txt
k3 $D/q5_cross_callback.py > $D/outputs/q5_cross_callback.txt
k3 $D/q5_spike_k3_pipeline.py > $D/outputs/q5_spike_tensorflow.txt
jx $D/q5_spike_k3_pipeline.py > $D/outputs/q5_spike_jax.txt
