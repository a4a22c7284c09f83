"""Rewrite an exported TextGRU ONNX graph so that onnxruntime can run its GRUs in int8.

onnxruntime's dynamic quantisation has no int8 `GRU` kernel: it leaves the `GRU` op in fp32, and those ops are
~70% of TextGRU's inference time. `gru_to_scan` replaces every `GRU` node (forward or bidirectional, as the
legacy exporter writes them for TextGRU's packed path: `linear_before_reset=1`, `sequence_lens`, zero initial
state) by the same computation spelled out in plain ops:

- the input projection of every time step, for each direction, as one `MatMul` over the whole sequence;
- one `Scan` over time whose body runs a step of each direction: a `MatMul` of the state with the recurrent
  weights, then the gates (`Sigmoid`, `Tanh`, `Mul`, `Add`). The forward direction scans forwards, the backward
  one backwards; a step past a row's length leaves the state unchanged and outputs zeros, so each row's backward
  pass starts at its own last token and the outputs equal the `GRU` op's (`sequence_lens` semantics).

In fp32 the rewritten graph computes what the `GRU` op does (same weights, same order of operations up to float
rounding); its value is that `onnxruntime.quantization.quantize_dynamic` (with `EnableSubgraph`) turns those
`MatMul`s, the recurrent ones inside the `Scan` included, into int8 `DynamicQuantizeMatMul`s.
Measured: `python benchmarks/speed.py` (docs/benchmarks.md).

Imports `onnx` only (an optional dependency: `pip install "textgru[export]"`).
"""

from __future__ import annotations

import numpy as np


def _attribute(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _step_body(hidden: int, prefix: str, directions: tuple[str, ...]):
    """The `Scan` body: one time step of each direction. Weight names refer to the outer graph's initializers."""
    from onnx import TensorProto, helper, numpy_helper

    def value(name: str, width):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width])

    split_gates, split_zr = np.array([2 * hidden, hidden]), np.array([hidden, hidden])
    nodes = [
        helper.make_node("Constant", [], ["split_gates"], value=numpy_helper.from_array(split_gates)),
        helper.make_node("Constant", [], ["split_zr"], value=numpy_helper.from_array(split_zr)),
    ]
    for d in directions:
        n = lambda s, d=d: f"{s}_{d}"  # noqa: E731 - names local to one direction
        nodes += [
            # ONNX gate order z, r, h; linear_before_reset: h~ = tanh(Wx + r * (R h + Rb))
            helper.make_node("MatMul", [n("h"), f"{prefix}_RT_{d}"], [n("gh_raw")]),
            helper.make_node("Add", [n("gh_raw"), f"{prefix}_Rb_{d}"], [n("gh")]),
            helper.make_node("Split", [n("gi"), "split_gates"], [n("gi_zr"), n("gi_h")], axis=1),
            helper.make_node("Split", [n("gh"), "split_gates"], [n("gh_zr"), n("gh_h")], axis=1),
            helper.make_node("Add", [n("gi_zr"), n("gh_zr")], [n("pre_zr")]),
            helper.make_node("Sigmoid", [n("pre_zr")], [n("zr")]),
            helper.make_node("Split", [n("zr"), "split_zr"], [n("z"), n("r")], axis=1),
            helper.make_node("Mul", [n("r"), n("gh_h")], [n("r_gh")]),
            helper.make_node("Add", [n("gi_h"), n("r_gh")], [n("pre_h")]),
            helper.make_node("Tanh", [n("pre_h")], [n("cand")]),
            # h' = (1 - z) * cand + z * h = cand + z * (h - cand)
            helper.make_node("Sub", [n("h"), n("cand")], [n("h_minus")]),
            helper.make_node("Mul", [n("z"), n("h_minus")], [n("z_h")]),
            helper.make_node("Add", [n("cand"), n("z_h")], [n("h_new")]),
            # past the row's length (mask 0) the state stays and the output is zero
            helper.make_node("Mul", [n("h_new"), n("mask")], [n("y")]),
            helper.make_node("Sub", [n("h_new"), n("h")], [n("delta")]),
            helper.make_node("Mul", [n("delta"), n("mask")], [n("masked_delta")]),
            helper.make_node("Add", [n("h"), n("masked_delta")], [n("h_next")]),
        ]
    inputs = [value(f"h_{d}", hidden) for d in directions]
    inputs += [v for d in directions for v in (value(f"gi_{d}", 3 * hidden), value(f"mask_{d}", 1))]
    outputs = [value(f"h_next_{d}", hidden) for d in directions] + [value(f"y_{d}", hidden) for d in directions]
    return helper.make_graph(nodes, f"{prefix}_step", inputs, outputs)


def gru_to_scan(model):
    """Return a copy of `model` (an `onnx.ModelProto`) with every `GRU` node replaced by a `Scan`.

    Raises:
        ValueError: a `GRU` node this rewrite does not cover (a `reverse` one, `linear_before_reset` unset, no
            `sequence_lens`, a non-zero initial state, weights that are not constants, or its final-state
            output in use). Graphs exported by `textgru.export.export_onnx` have none of these.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumed = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    new_nodes, new_inits, replaced = [], [], 0
    for node in graph.node:
        if node.op_type != "GRU":
            new_nodes.append(node)
            continue
        prefix = f"textgru_scan{replaced}"
        inputs = list(node.input) + [""] * (6 - len(node.input))
        x, w, r, b, seq_lens, initial = inputs[:6]
        problem = None
        weight_ih, weight_hh, bias = (_constant(name, initializers, producers) for name in (w, r, b))
        direction = _attribute(node, "direction", b"forward")
        directions = {b"forward": ("fw",), b"bidirectional": ("fw", "bw")}.get(direction, ())
        if not directions:
            problem = f"direction {direction.decode()!r} is not supported"
        elif _attribute(node, "linear_before_reset", 0) != 1:
            problem = "linear_before_reset is not 1"
        elif not seq_lens:
            problem = "it has no sequence_lens"
        elif weight_ih is None or weight_hh is None or bias is None:
            problem = "its weights are not constants"
        elif len(node.output) > 1 and node.output[1] and node.output[1] in consumed:
            problem = "its final-state output is used"
        elif initial and not _is_zeros(producers.get(initial)):
            problem = "its initial state is not zeros"
        if problem:
            raise ValueError(f"gru_to_scan: cannot rewrite GRU node {node.name!r}: {problem}.")
        # weight_ih (directions, 3H, input), gates z, r, h; weight_hh (directions, 3H, H); bias (directions, 6H):
        # input biases, then recurrent biases
        hidden = weight_hh.shape[-1]
        for i, d in enumerate(directions):
            for name, array in (
                (f"{prefix}_WT_{d}", weight_ih[i].T),
                (f"{prefix}_Wb_{d}", bias[i, : 3 * hidden]),
                (f"{prefix}_RT_{d}", weight_hh[i].T),
                (f"{prefix}_Rb_{d}", bias[i, 3 * hidden :]),
            ):
                new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        t = lambda s, prefix=prefix: f"{prefix}_{s}"  # noqa: E731
        new_nodes += [
            # mask (time, batch, 1): 1 where the step is inside the row's length
            helper.make_node("Shape", [x], [t("x_shape")]),
            helper.make_node("Gather", [t("x_shape"), t("zero")], [t("steps")], axis=0),
            helper.make_node("Squeeze", [t("steps"), t("zero")], [t("steps_scalar")]),
            helper.make_node("Range", [t("zero_scalar"), t("steps_scalar"), t("one_scalar")], [t("positions")]),
            helper.make_node("Unsqueeze", [t("positions"), t("one")], [t("positions_col")]),
            helper.make_node("Cast", [seq_lens], [t("lengths")], to=onnx.TensorProto.INT64),
            helper.make_node("Unsqueeze", [t("lengths"), t("zero")], [t("lengths_row")]),
            helper.make_node("Less", [t("positions_col"), t("lengths_row")], [t("inside")]),
            helper.make_node("Cast", [t("inside")], [t("mask_2d")], to=onnx.TensorProto.FLOAT),
            helper.make_node("Unsqueeze", [t("mask_2d"), t("two")], [t("mask")]),
            # zero initial state (batch, H)
            helper.make_node("Gather", [t("x_shape"), t("one")], [t("batch")], axis=0),
            helper.make_node("Concat", [t("batch"), t("hidden")], [t("state_shape")], axis=0),
            helper.make_node(
                "ConstantOfShape",
                [t("state_shape")],
                [t("h0")],
                value=numpy_helper.from_array(np.zeros(1, dtype=np.float32)),
            ),
        ]
        for d in directions:
            new_nodes += [
                helper.make_node("MatMul", [x, f"{prefix}_WT_{d}"], [t(f"gi_raw_{d}")]),
                helper.make_node("Add", [t(f"gi_raw_{d}"), f"{prefix}_Wb_{d}"], [t(f"gi_{d}")]),
            ]
        # the forward direction scans forwards, the backward one backwards (inputs and outputs alike)
        new_nodes += [
            helper.make_node(
                "Scan",
                [t("h0")] * len(directions) + [v for d in directions for v in (t(f"gi_{d}"), t("mask"))],
                [t(f"hT_{d}") for d in directions] + [t(f"y_{d}") for d in directions],
                body=_step_body(hidden, prefix, directions),
                num_scan_inputs=2 * len(directions),
                scan_input_directions=[int(d == "bw") for d in directions for _ in range(2)],
                scan_output_directions=[int(d == "bw") for d in directions],
            ),
            *[helper.make_node("Unsqueeze", [t(f"y_{d}"), t("one")], [t(f"y4_{d}")]) for d in directions],
            # the GRU op's output layout: (time, directions, batch, H)
            helper.make_node("Concat", [t(f"y4_{d}") for d in directions], [node.output[0]], axis=1),
        ]
        for name, array in (
            ("zero", np.array([0])),
            ("one", np.array([1])),
            ("two", np.array([2])),
            ("hidden", np.array([hidden])),
            ("zero_scalar", np.array(0)),
            ("one_scalar", np.array(1)),
        ):
            new_inits.append(numpy_helper.from_array(array.astype(np.int64), t(name)))
        replaced += 1
    if not replaced:
        raise ValueError("gru_to_scan: the graph has no GRU node.")
    # each GRU's replacement sits where the GRU was, its nodes in producer order: the graph stays sorted
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    used = {name for node in graph.node for name in node.input} | _subgraph_inputs(graph)
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model


def _constant(name: str, initializers: dict, producers: dict) -> np.ndarray | None:
    """The value of `name` if it is an initializer or a `Constant` node's output (through `Identity`s), else None."""
    from onnx import numpy_helper

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Identity":  # the exporter shares equal initializers this way
        return _constant(node.input[0], initializers, producers)
    if node is not None and node.op_type == "Constant" and _attribute(node, "value") is not None:
        return numpy_helper.to_array(_attribute(node, "value"))
    return None


def _is_zeros(node) -> bool:
    if node is None or node.op_type != "ConstantOfShape":
        return False
    from onnx import numpy_helper

    value = _attribute(node, "value")
    return value is None or not np.any(numpy_helper.to_array(value))


def _subgraph_inputs(graph) -> set[str]:
    """Names the nodes of `graph`'s subgraphs (Scan bodies) read, from any depth."""
    names: set[str] = set()
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == attribute.GRAPH:
                names |= {name for inner in attribute.g.node for name in inner.input}
                names |= _subgraph_inputs(attribute.g)
    return names


__all__ = ["gru_to_scan"]
