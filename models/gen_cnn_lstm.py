#!/usr/bin/env python3
"""Generates models/cnn_lstm/{1,2}/model.onnx and version 1's reference outputs models/cnn_lstm.reference.json.

Invariant: the same onnx/numpy/onnxruntime versions produce byte-identical artefacts on every run;
weights and the reference input come from fixed seeds, so the Rust backend's tests can compare
against onnxruntime's Python results without regenerating anything.

The model is a small CNN+LSTM "trading" classifier: a window of 64 time steps x 16 features is
convolved along time, summarised by an LSTM, and mapped to softmax probabilities over
(sell, hold, buy). It is untrained on purpose: the service cares about shapes, latency and exact
numerical agreement, not about trading skill.

Version 2 is the same graph with weights drawn from the next seed: the same signature with
different outputs, the pair the registry's rollout and canary examples serve.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEQ_LEN = 64
FEATURES = 16
CONV_CHANNELS = 32
KERNEL = 3
HIDDEN = 64
CLASSES = 3
OPSET = 17
# IR version 8 is the one that goes with opset 17; pinning it keeps older runtimes able to load it.
IR_VERSION = 8
WEIGHT_SEED = 20240917
VERSIONS = (1, 2)
REFERENCE_SEED = 7
REFERENCE_ROWS = 5


def make_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draws weights with scales that keep activations and softmax outputs away from saturation."""
    conv_fan_in = FEATURES * KERNEL
    weights = {
        # He init for a ReLU layer.
        "conv_w": rng.normal(0.0, np.sqrt(2.0 / conv_fan_in), (CONV_CHANNELS, FEATURES, KERNEL)),
        "conv_b": rng.uniform(-0.05, 0.05, (CONV_CHANNELS,)),
    }
    # PyTorch's LSTM default: U(-1/sqrt(hidden), 1/sqrt(hidden)) for every gate matrix and bias.
    bound = 1.0 / np.sqrt(HIDDEN)
    weights["lstm_w"] = rng.uniform(-bound, bound, (1, 4 * HIDDEN, CONV_CHANNELS))
    weights["lstm_r"] = rng.uniform(-bound, bound, (1, 4 * HIDDEN, HIDDEN))
    lstm_b = rng.uniform(-bound, bound, (1, 8 * HIDDEN))
    # ONNX gate order is i, o, f, c; a +1 forget bias (Wb part) lets the state carry across 64 steps.
    lstm_b[0, 2 * HIDDEN : 3 * HIDDEN] += 1.0
    weights["lstm_b"] = lstm_b
    # Logit spread of roughly +-1: probabilities stay well inside (0, 1).
    weights["fc_w"] = rng.normal(0.0, 1.0 / np.sqrt(HIDDEN) * 2.0, (CLASSES, HIDDEN))
    weights["fc_b"] = np.array([0.0, 0.1, 0.0])
    return {k: v.astype(np.float32) for k, v in weights.items()}


def build_model(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    initializers = [numpy_helper.from_array(v, name=k) for k, v in weights.items()]
    initializers.append(numpy_helper.from_array(np.array([0], dtype=np.int64), name="squeeze_axes"))

    nodes = [
        # [batch, time, feat] -> [batch, feat, time]: Conv wants channels before the spatial axis.
        helper.make_node("Transpose", ["input"], ["x_nct"], name="to_nct", perm=[0, 2, 1]),
        helper.make_node(
            "Conv", ["x_nct", "conv_w", "conv_b"], ["conv"], name="conv",
            kernel_shape=[KERNEL], pads=[1, 1], strides=[1],
        ),
        helper.make_node("Relu", ["conv"], ["conv_relu"], name="relu"),
        # [batch, ch, time] -> [time, batch, ch]: ONNX LSTM's default layout is sequence-major.
        helper.make_node("Transpose", ["conv_relu"], ["x_tnc"], name="to_tnc", perm=[2, 0, 1]),
        helper.make_node(
            "LSTM", ["x_tnc", "lstm_w", "lstm_r", "lstm_b"], ["", "lstm_h"], name="lstm",
            hidden_size=HIDDEN, direction="forward",
        ),
        # Y_h is [num_directions=1, batch, hidden]; Squeeze keeps the batch dim symbolic.
        helper.make_node("Squeeze", ["lstm_h", "squeeze_axes"], ["h"], name="squeeze"),
        helper.make_node("Gemm", ["h", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["output"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn_lstm",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", SEQ_LEN, FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="kbatch/models/gen_cnn_lstm.py",
        producer_version="1",
        doc_string="CNN+LSTM trading classifier: [batch,64,16] -> softmax [batch,3] (sell, hold, buy)",
        ir_version=IR_VERSION,
    )
    helper.set_model_props(model, {"classes": "sell,hold,buy"})
    onnx.checker.check_model(model, full_check=True)
    return model


def reference_input() -> np.ndarray:
    """Values on a 1/64 grid: exact in f32 and f64 and short in JSON, so Rust reads bit-identical input."""
    rng = np.random.default_rng(REFERENCE_SEED)
    raw = rng.normal(0.0, 1.0, (REFERENCE_ROWS, SEQ_LEN, FEATURES))
    return (np.clip(np.round(raw * 64.0), -256, 256) / 64.0).astype(np.float32)


def write_reference(model_path: pathlib.Path, out_path: pathlib.Path) -> np.ndarray:
    import onnxruntime as ort

    x = reference_input()
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(["output"], {"input": x})
    reference = {
        "generator": "models/gen_cnn_lstm.py",
        "onnxruntime_version": ort.__version__,
        "input": {"name": "input", "shape": list(x.shape), "data": [float(v) for v in x.ravel()]},
        # float() of an f32 is exact in f64, so parsing back to f32 recovers the same bits.
        "output": {"name": "output", "shape": list(y.shape), "data": [float(v) for v in y.ravel()]},
    }
    out_path.write_text(json.dumps(reference, separators=(",", ":")) + "\n")
    return y


def main() -> None:
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=pathlib.Path, default=here)
    args = parser.parse_args()

    for version in VERSIONS:
        weights = make_weights(np.random.default_rng(WEIGHT_SEED + version - 1))
        model = build_model(weights)
        model_path = args.out_dir / "cnn_lstm" / str(version) / "model.onnx"
        model_path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(model_path))
        params = sum(int(np.prod(v.shape)) for v in weights.values())
        print(f"wrote {model_path} ({params} parameters)")
        if version == 1:
            y = write_reference(model_path, args.out_dir / "cnn_lstm.reference.json")
    print("reference outputs (sell, hold, buy):")
    for row in y:
        print("  " + " ".join(f"{p:.6f}" for p in row))


if __name__ == "__main__":
    main()
