#!/usr/bin/env python3
"""Generates models/risk_mlp/1/model.onnx: a second model with its own signature, for the registry.

Invariant: the same onnx/numpy versions produce a byte-identical file on every run (fixed seed).

A two-layer perceptron scoring an order's risk from 8 float features: input `features`
`[batch, 8]` float32 -> Gemm 8->16 + Relu -> Gemm 16->2 -> Softmax -> output `risk` `[batch, 2]`
(accept, review). Untrained, like cnn_lstm: its signature differs from cnn_lstm's in every part
(tensor names, per-row shape, output size), which is what serving two models at once must keep
apart.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 8
HIDDEN = 16
CLASSES = 2
OPSET = 17
IR_VERSION = 8
SEED = 20261203


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(SEED)
    w1 = rng.normal(0.0, np.sqrt(2.0 / FEATURES), (FEATURES, HIDDEN)).astype(np.float32)
    b1 = rng.uniform(-0.05, 0.05, (HIDDEN,)).astype(np.float32)
    w2 = rng.normal(0.0, 1.0 / np.sqrt(HIDDEN), (HIDDEN, CLASSES)).astype(np.float32)
    b2 = np.array([0.2, 0.0], dtype=np.float32)
    inits = [
        numpy_helper.from_array(w1, name="w1"),
        numpy_helper.from_array(b1, name="b1"),
        numpy_helper.from_array(w2, name="w2"),
        numpy_helper.from_array(b2, name="b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["features", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["h_relu"], name="relu"),
        helper.make_node("Gemm", ["h_relu", "w2", "b2"], ["logits"], name="fc2"),
        helper.make_node("Softmax", ["logits"], ["risk"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "risk_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("risk", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="kbatch/models/gen_risk_mlp.py",
        producer_version="1",
        doc_string="risk MLP: features [batch,8] -> softmax risk [batch,2] (accept, review)",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "risk_mlp" / "1" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(build(), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
