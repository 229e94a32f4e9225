#!/usr/bin/env python3
"""Generates models/txn_scorer/1/model.onnx and models/txn_scorer.reference.json: a model that
only the version-2 request contract can call (several inputs, an int64 input, a dynamic
dimension, several outputs of two element types).

Invariant: the same onnx/numpy versions produce a byte-identical file on every run (fixed seed),
and the reference outputs are computed with numpy from the weights, independently of ONNX
Runtime, then checked against ONNX Runtime before anything is written.

Scores a card transaction from three inputs:
  features  float32 [batch, 8]         the transaction's own features
  merchant  int64   [batch, 1]         the merchant's id, 0..63 (an embedding row; other ids fail)
  history   float32 [batch, steps, 4]  the card's last `steps` transactions (steps is dynamic)
-> Gather(merchant) -> [batch, 4]; ReduceMean(history over steps) -> [batch, 4];
   Concat(features, merchant embedding, history mean) -> [batch, 16] -> Gemm 16->2 -> Softmax
-> outputs
  score     float32 [batch, 2]         (legitimate, fraud) probabilities
  label     int64   [batch, 1]         ArgMax of score
Untrained, like the other bundled models.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 8
MERCHANTS = 64
EMBED = 4
STEP = 4
CLASSES = 2
OPSET = 17
IR_VERSION = 8
SEED = 20261204
HERE = pathlib.Path(__file__).resolve().parent


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    width = FEATURES + EMBED + STEP
    return {
        "embedding": rng.normal(0.0, 0.5, (MERCHANTS, EMBED)).astype(np.float32),
        "w": rng.normal(0.0, 1.0 / np.sqrt(width), (width, CLASSES)).astype(np.float32),
        "b": np.array([0.3, -0.3], dtype=np.float32),
    }


def build(w: dict[str, np.ndarray]) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v, name=k) for k, v in w.items()]
    nodes = [
        helper.make_node("Gather", ["embedding", "merchant"], ["emb3"], name="lookup", axis=0),
        helper.make_node("Flatten", ["emb3"], ["emb"], name="flatten", axis=1),
        helper.make_node("ReduceMean", ["history"], ["hist"], name="mean", axes=[1], keepdims=0),
        helper.make_node("Concat", ["features", "emb", "hist"], ["x"], name="concat", axis=1),
        helper.make_node("Gemm", ["x", "w", "b"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["score"], name="softmax", axis=-1),
        helper.make_node("ArgMax", ["score"], ["label"], name="argmax", axis=1, keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "txn_scorer",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES]),
            helper.make_tensor_value_info("merchant", TensorProto.INT64, ["batch", 1]),
            helper.make_tensor_value_info("history", TensorProto.FLOAT, ["batch", "steps", STEP]),
        ],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", CLASSES]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch", 1]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="kbatch/models/gen_txn_scorer.py",
        producer_version="1",
        doc_string="txn scorer: features [b,8] f32, merchant [b,1] i64, history [b,?,4] f32 "
        "-> score [b,2] f32, label [b,1] i64",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def reference(w: dict[str, np.ndarray], sample: dict) -> dict:
    """The outputs for one request, with numpy alone."""
    features = np.asarray(sample["features"], dtype=np.float32)
    emb = w["embedding"][sample["merchant"][0]]
    hist = np.asarray(sample["history"], dtype=np.float32).mean(axis=0)
    x = np.concatenate([features, emb, hist]).astype(np.float32)
    logits = x @ w["w"] + w["b"]
    e = np.exp(logits - logits.max())
    score = e / e.sum()
    return {"score": score.tolist(), "label": [int(score.argmax())]}


def samples() -> list[dict]:
    """Requests with history lengths 1, 3, 5 and 2 and merchants across the table."""
    rng = np.random.default_rng(SEED + 1)
    out = []
    for steps, merchant in [(1, 0), (3, 17), (5, 63), (2, 42)]:
        out.append(
            {
                "features": np.round(rng.uniform(-1, 1, FEATURES), 4).tolist(),
                "merchant": [merchant],
                "history": np.round(rng.uniform(-1, 1, (steps, STEP)), 4).tolist(),
            }
        )
    return out


def check_with_onnxruntime(path: pathlib.Path, cases: list[dict]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for case in cases:
        inputs = case["inputs"]
        got = session.run(
            None,
            {
                "features": np.asarray([inputs["features"]], dtype=np.float32),
                "merchant": np.asarray([inputs["merchant"]], dtype=np.int64),
                "history": np.asarray([inputs["history"]], dtype=np.float32),
            },
        )
        np.testing.assert_allclose(got[0][0], case["outputs"]["score"], atol=1e-6)
        assert got[1][0].tolist() == case["outputs"]["label"], (got[1], case)


def main() -> None:
    w = weights()
    out = HERE / "txn_scorer" / "1" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(build(w), out)
    cases = [{"inputs": s, "outputs": reference(w, s)} for s in samples()]
    check_with_onnxruntime(out, cases)
    ref = HERE / "txn_scorer.reference.json"
    ref.write_text(json.dumps({"model": "txn_scorer/1", "cases": cases}, indent=1) + "\n")
    warm = HERE / "txn_scorer" / "warmup.json"
    warm.write_text(json.dumps(samples()[:2], indent=1) + "\n")
    print(f"wrote {out}, {ref} and {warm}")


if __name__ == "__main__":
    main()
