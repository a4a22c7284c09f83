"""Rewrite an exported TextGRU ONNX graph so that onnxruntime can run its GRUs in int8.

onnxruntime's dynamic quantisation has no int8 `GRU` kernel: it leaves the `GRU` op in fp32, and those ops are
~70% of TextGRU's inference time. `gru_to_scan` replaces every `GRU` node (forward or bidirectional, as the
legacy exporter writes them for TextGRU's packed path: `linear_before_reset=1`, `sequence_lens`, zero initial
state) by the same computation spelled out in plain ops:

- the input projections of every time step, for each direction, as one `MatMul` per gate over the whole sequence,
  so that no step needs a `Split` (a copy) of them;
- one `Scan` over time whose body runs a step of each direction: a `MatMul` per gate of the state with its recurrent
  weights, then the gates (`Sigmoid`, `Tanh`, `Mul`, `Add`): 17 nodes a step and direction, no `Split` among them.
  The forward direction scans forwards, the backward one backwards, its state multiplied by the step's mask, so that
  it stays zero over a row's padding and each row's backward pass starts at its own last token (`sequence_lens`
  semantics).

At every step inside a row's length the outputs equal the `GRU` op's (fp32: same weights, same order of
operations up to float rounding). **Past a row's length they are not the `GRU` op's zeros**: the forward
direction runs on over the padding (finite values: a GRU state stays within [-1, 1]) and the backward one outputs
its unmasked step. TextGRU never reads them (every layer's output is multiplied by the mask before anything
mixes positions), and not zeroing them saves four nodes a step; the export checks the rewritten graph's outputs
against eager PyTorch on mixed-length batches, so a graph that did read them would fail there. Where the `GRU`
output only feeds the exporter's `Transpose` + `Reshape` to (time, batch, directions * hidden), the rewrite
concatenates the directions in that layout directly and drops the `Transpose`.

The rewrite's value is that `onnxruntime.quantization.quantize_dynamic` (with `EnableSubgraph`) turns those
`MatMul`s, the recurrent ones inside the `Scan` included, into int8 ones (`MatMulIntegerToFloat`,
`DynamicQuantizeMatMul`). Measured: `python benchmarks/speed.py` (docs/benchmarks.md).

Imports `onnx` only (an optional dependency: `pip install "textgru[export]"`).
"""

from __future__ import annotations

import numpy as np

GATES = ("z", "r", "h")  # ONNX's gate order in W, R and B: update, reset, candidate


def _attribute(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _step_body(hidden: int, prefix: str, directions: tuple[str, ...]):
    """The `Scan` body: one time step of each direction. Weight names refer to the outer graph's initializers.

    Inputs: the states `h_<d>`, then the scan inputs `gi_z_<d>`, `gi_r_<d>`, `gi_h_<d>` (input projections per
    gate, biases added) per direction, then `mask_bw` (batch, 1) when there is a backward direction. Outputs: the
    next states, then the step outputs `y_<d>`. Each gate has its own recurrent `MatMul` (onnxruntime's quantiser
    quantises the state once for the three) so that no step copies a `Split` of a gate tensor.
    """
    from onnx import TensorProto, helper

    def value(name: str, width):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width])

    nodes = []
    for d in directions:
        n = lambda s, d=d: f"{s}_{d}"  # noqa: E731 - names local to one direction
        # ONNX gate order z, r, h; linear_before_reset: h~ = tanh(Wx + r * (R h + Rb)); h' = cand + z * (h - cand)
        for g in GATES:
            nodes += [
                helper.make_node("MatMul", [n("h"), f"{prefix}_RT_{g}_{d}"], [n(f"g{g}_raw")]),
                helper.make_node("Add", [n(f"g{g}_raw"), f"{prefix}_Rb_{g}_{d}"], [n(f"gh_{g}")]),
            ]
        nodes += [
            helper.make_node("Add", [n("gi_z"), n("gh_z")], [n("pre_z")]),
            helper.make_node("Sigmoid", [n("pre_z")], [n("z")]),
            helper.make_node("Add", [n("gi_r"), n("gh_r")], [n("pre_r")]),
            helper.make_node("Sigmoid", [n("pre_r")], [n("r")]),
            helper.make_node("Mul", [n("r"), n("gh_h")], [n("r_gh")]),
            helper.make_node("Add", [n("gi_h"), n("r_gh")], [n("pre_h")]),
            helper.make_node("Tanh", [n("pre_h")], [n("cand")]),
            helper.make_node("Sub", [n("h"), n("cand")], [n("h_minus")]),
            helper.make_node("Mul", [n("z"), n("h_minus")], [n("z_h")]),
            helper.make_node("Add", [n("cand"), n("z_h")], [n("y")]),
        ]
        if d == "bw":  # the backward direction meets a row's padding first: its state stays zero there
            nodes.append(helper.make_node("Mul", [n("y"), "mask_bw"], [n("h_next")]))
        else:  # past a row's end the forward state runs on; nothing reads those steps (module docstring)
            nodes.append(helper.make_node("Identity", [n("y")], [n("h_next")]))
    inputs = [value(f"h_{d}", hidden) for d in directions]
    inputs += [value(f"gi_{g}_{d}", hidden) for d in directions for g in GATES]
    inputs += [value("mask_bw", 1)] if "bw" in directions else []
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
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    consumed = set(consumers) | {out.name for out in graph.output}
    new_nodes, new_inits, replaced, dropped = [], [], 0, set()
    for node in graph.node:
        if node.output and node.output[0] in dropped:  # a Transpose the rewrite made unnecessary
            continue
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
            for k, g in enumerate(GATES):
                gate, recurrent = slice(k * hidden, (k + 1) * hidden), slice((3 + k) * hidden, (4 + k) * hidden)
                for name, array in (
                    (f"{prefix}_WT_{g}_{d}", weight_ih[i, gate].T),
                    (f"{prefix}_Wb_{g}_{d}", bias[i, gate]),
                    (f"{prefix}_RT_{g}_{d}", weight_hh[i, gate].T),
                    (f"{prefix}_Rb_{g}_{d}", bias[i, recurrent]),
                ):
                    new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        t = lambda s, prefix=prefix: f"{prefix}_{s}"  # noqa: E731
        new_nodes.append(helper.make_node("Shape", [x], [t("x_shape")]))
        if "bw" in directions:  # only the backward direction reads the mask (module docstring)
            new_nodes += [
                # mask (time, batch, 1): 1 where the step is inside the row's length
                helper.make_node("Gather", [t("x_shape"), t("zero")], [t("steps")], axis=0),
                helper.make_node("Squeeze", [t("steps"), t("zero")], [t("steps_scalar")]),
                helper.make_node("Range", [t("zero_scalar"), t("steps_scalar"), t("one_scalar")], [t("positions")]),
                helper.make_node("Unsqueeze", [t("positions"), t("one")], [t("positions_col")]),
                helper.make_node("Cast", [seq_lens], [t("lengths")], to=onnx.TensorProto.INT64),
                helper.make_node("Unsqueeze", [t("lengths"), t("zero")], [t("lengths_row")]),
                helper.make_node("Less", [t("positions_col"), t("lengths_row")], [t("inside")]),
                helper.make_node("Cast", [t("inside")], [t("mask_2d")], to=onnx.TensorProto.FLOAT),
                helper.make_node("Unsqueeze", [t("mask_2d"), t("two")], [t("mask")]),
            ]
        new_nodes += [
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
            for g in GATES:
                new_nodes += [
                    helper.make_node("MatMul", [x, f"{prefix}_WT_{g}_{d}"], [t(f"gi_raw_{g}_{d}")]),
                    helper.make_node("Add", [t(f"gi_raw_{g}_{d}"), f"{prefix}_Wb_{g}_{d}"], [t(f"gi_{g}_{d}")]),
                ]
        merged = _merged_output(node.output[0], consumers, initializers, producers, graph)
        if merged is not None:
            dropped.add(merged)
        outputs = [merged] if merged is not None and len(directions) == 1 else [t(f"y_{d}") for d in directions]
        # the forward direction scans forwards, the backward one backwards (inputs and outputs alike)
        new_nodes.append(
            helper.make_node(
                "Scan",
                [t("h0")] * len(directions)
                + [t(f"gi_{g}_{d}") for d in directions for g in GATES]
                + ([t("mask")] if "bw" in directions else []),
                [t(f"hT_{d}") for d in directions] + outputs,
                body=_step_body(hidden, prefix, directions),
                num_scan_inputs=len(GATES) * len(directions) + ("bw" in directions),
                scan_input_directions=[int(d == "bw") for d in directions for _ in GATES] + [1] * ("bw" in directions),
                scan_output_directions=[int(d == "bw") for d in directions],
            )
        )
        if merged is None:  # the GRU op's output layout: (time, directions, batch, H)
            new_nodes += [
                *[helper.make_node("Unsqueeze", [t(f"y_{d}"), t("one")], [t(f"y4_{d}")]) for d in directions],
                helper.make_node("Concat", [t(f"y4_{d}") for d in directions], [node.output[0]], axis=1),
            ]
        elif len(directions) > 1:  # (time, batch, directions * H), what the dropped Transpose + Reshape gave
            new_nodes.append(helper.make_node("Concat", [t(f"y_{d}") for d in directions], [merged], axis=2))
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


def _merged_output(output: str, consumers: dict, initializers: dict, producers: dict, graph) -> str | None:
    """The output of the `Transpose` that alone reads the GRU output `output`, if that `Transpose` swaps the
    directions and batch axes and only feeds `Reshape`s to (time, batch, -1): the rewrite then writes that name in
    (time, batch, directions * H) layout, and the `Transpose` goes. Else None (the GRU op's layout is kept)."""
    graph_outputs = {out.name for out in graph.output}
    readers = consumers.get(output, [])
    if len(readers) != 1 or output in graph_outputs:
        return None
    transpose = readers[0]
    if transpose.op_type != "Transpose" or list(_attribute(transpose, "perm", [])) != [0, 2, 1, 3]:
        return None
    merged = transpose.output[0]
    after = consumers.get(merged, [])
    if not after or merged in graph_outputs:
        return None
    for reshape in after:
        if reshape.op_type != "Reshape" or reshape.input[0] != merged or _attribute(reshape, "allowzero", 0):
            return None
        shape = _constant(reshape.input[1], initializers, producers)
        if shape is None or shape.tolist() != [0, 0, -1]:
            return None
    return merged


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
