"""Make the exported graph portable and byte-deterministic.

Portable: GELU is traced as `(x·(1+erf(x/√2)))·0.5` — OpenCV's DNN importer (4.14, 5.0) segfaults on the
`x·(0.5·(1+erf(x/√2)))` form torch's decomposition gives, and matches this one; the opset is lowered to
the lowest one under which every node keeps the exact schema it was exported with (no conversion: the
same operator definitions, so the same numbers), and the IR version to the lowest that opset allows, so
older runtimes (ONNX Runtime 1.16 reads IR ≤ 9) load it.

Deterministic: the exporter names nodes and values from process-global counters and attaches stack
traces (absolute file paths) to every node; both are replaced. Node and value names are derived from
the node's position in the (deterministic) topological order, parameters keep their state_dict names,
metadata is sorted. Same checkpoint + same options + same torch/onnx → the same bytes.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ddpm_edge.runtime.errors import DdpmEdgeError

SQRT2 = math.sqrt(2.0)


class PortableGelu(nn.Module):
    """Exact GELU written the way every ONNX importer we test understands. Same function as nn.GELU()
    (the torch reference validates each export); only the order of the two products differs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * (1.0 + torch.erf(x / SQRT2))) * 0.5


def with_portable_gelu(model: nn.Module) -> nn.Module:
    """A copy of `model` with every exact nn.GELU replaced by PortableGelu (the original is untouched)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GELU):
                if child.approximate != "none":
                    raise DdpmEdgeError(f"GELU(approximate={child.approximate!r}) is not supported by the export")
                setattr(parent, name, PortableGelu())
    return model


def lowest_opset(proto) -> int:
    """The lowest default-domain opset whose schema for every node is the one the graph was exported
    with (each op's `since_version` at the exported opset)."""
    import onnx

    exported = {o.domain: o.version for o in proto.opset_import}.get("", None)
    if exported is None:
        raise DdpmEdgeError("graph has no default-domain opset")
    needed = 1
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise DdpmEdgeError(f"graph uses a non-standard op {node.domain}::{node.op_type}")
        needed = max(needed, onnx.defs.get_schema(node.op_type, exported).since_version)
    return needed


def _rename_all(graph) -> None:
    """Deterministic names: inputs/outputs and state_dict parameters keep theirs, the exporter's
    counter-derived constants become const_K (first-use order), node outputs become OP_K[_J]."""
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    params = {i.name for i in graph.initializer if "." in i.name}  # state_dict keys ("up0.0.weight")
    renames: dict[str, str] = {}
    consts = [i for i in graph.initializer if i.name not in params]
    used_order = {}
    for node in graph.node:
        for name in node.input:
            used_order.setdefault(name, len(used_order))
    consts.sort(key=lambda i: used_order.get(i.name, len(used_order)))
    for k, init in enumerate(consts):
        renames[init.name] = f"const_{k}"
    for k, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{k}"
        for j, out in enumerate(node.output):
            if out and out not in keep:
                renames[out] = f"{node.op_type.lower()}_{k}" + (f"_{j}" if j else "")
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for init in graph.initializer:
        init.name = renames.get(init.name, init.name)
    # parameters first in state_dict (graph) order, then constants in first-use order
    ordered = [i for i in graph.initializer if i.name in params] + \
              sorted((i for i in graph.initializer if i.name not in params), key=lambda i: int(i.name[6:]))
    copies = [copy.deepcopy(i) for i in ordered]
    del graph.initializer[:]
    graph.initializer.extend(copies)


def make_portable(proto, metadata: dict[str, str], producer: tuple[str, str], doc: str, fixed_batch: int | None = None):
    """Strip everything run- or machine-dependent, rename deterministically, lower opset and IR version,
    set sorted metadata, and optionally fix the batch axis to `fixed_batch`. Modifies and returns `proto`."""
    import onnx

    graph = proto.graph
    for node in graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    del graph.value_info[:]  # shape annotations under counter-derived names; runtimes infer them
    del graph.metadata_props[:]
    graph.doc_string = ""
    graph.name = "ContextUnet"
    for value in list(graph.input) + list(graph.output) + list(graph.initializer):
        value.doc_string = ""
        if hasattr(value, "metadata_props"):
            del value.metadata_props[:]
    _rename_all(graph)
    if fixed_batch is not None:
        if fixed_batch < 1:
            raise DdpmEdgeError(f"--fixed-batch must be >= 1, got {fixed_batch}")
        for value in list(graph.input) + list(graph.output):
            dim = value.type.tensor_type.shape.dim[0]
            dim.ClearField("dim_param")
            dim.dim_value = fixed_batch
    opset = lowest_opset(proto)
    del proto.opset_import[:]
    proto.opset_import.extend([onnx.helper.make_opsetid("", opset)])
    del proto.functions[:]
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, dict(sorted(metadata.items())))
    proto.producer_name, proto.producer_version = producer
    proto.domain, proto.model_version, proto.doc_string = "", 0, doc
    onnx.checker.check_model(proto, full_check=True)
    check_gelu_form(proto)
    return proto


def serialize(proto) -> bytes:
    return proto.SerializeToString(deterministic=True)


def check_gelu_form(proto) -> int:
    """Every Erf must sit in `(x·(1+erf(x/√2)))·0.5`: Div(x) → Erf → Add → Mul(x, ·) → Mul(·, 0.5).
    Returns the number of GELUs; raises when one has another form (the one OpenCV DNN cannot load)."""
    import onnx.numpy_helper

    graph = proto.graph
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    users: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n)

    def only_user(name, op):
        found = users.get(name, [])
        if len(found) != 1 or found[0].op_type != op:
            raise DdpmEdgeError(f"GELU at {name!r} is not in the portable (x·(1+erf(x/√2)))·0.5 form")
        return found[0]

    count = 0
    for erf in (n for n in graph.node if n.op_type == "Erf"):
        div = producer.get(erf.input[0])
        if div is None or div.op_type != "Div":
            raise DdpmEdgeError(f"{erf.name}: Erf input is not x/√2")
        x = div.input[0]
        add = only_user(erf.output[0], "Add")
        mul = only_user(add.output[0], "Mul")
        half = only_user(mul.output[0], "Mul")
        other = [i for i in half.input if i != mul.output[0]]
        if x not in mul.input or len(other) != 1 or other[0] not in consts or float(consts[other[0]]) != 0.5:
            raise DdpmEdgeError(f"{erf.name}: GELU is not in the portable (x·(1+erf(x/√2)))·0.5 form")
        count += 1
    return count

