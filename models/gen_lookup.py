#!/usr/bin/env python3
"""Generates models/lookup.onnx: a tiny model that fails on some inputs, for poison-record tests.

Invariant: the same onnx version produces a byte-identical file on every run.

`output[b] = TABLE[int(input[b, 0])]` with a 16-entry table (`TABLE[i] = 10 * i`): input
`[B, 1]` float32, output `[B, 1]` float32. An index outside [-16, 15] makes ONNX Runtime's Gather
fail the whole batch at run time ("indices element out of data bounds"), which is exactly what a
poison record does to a real model: every request in its batch fails with it, and only re-running
the batch without it tells which one it was.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TABLE_SIZE = 16
OPSET = 17
IR_VERSION = 8


def build() -> onnx.ModelProto:
    table = numpy_helper.from_array(
        (10.0 * np.arange(TABLE_SIZE, dtype=np.float32)), name="table"
    )
    nodes = [
        helper.make_node("Cast", ["input"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["output"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "lookup",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        initializer=[table],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="kbatch-gen-lookup",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "lookup.onnx"
    onnx.save_model(build(), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
