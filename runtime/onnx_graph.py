"""UNet + sampler step fused into one ONNX graph, for the device-resident sampling loop.

One run of the fused graph is one timestep, entirely on the device:

    inputs   x      [N, C, H, W] float32   x_i
             c      [N, n_cfeat] float32   context
             noise  [B, N, C, H, W] float32 a block of pre-drawn z (slot B-1 is zeros)
             table  [K, 6] float32          per timestep k: t, a, b, d, s, noise slot
             k      []  int64               the timestep number (0 … K-1)
    outputs  x_prev [N, C, H, W] float32
             k_next []  int64               k + 1, bound as the next run's k

    row = table[k];  t = row.t broadcast to [N, 1];  eps = unet(x, t, c);  z = noise[row.slot]
    x_prev = (x − b·eps)·a + d·eps + s·z

The row coefficients cover both samplers (runtime/onnx_cuda.py `step_table` fills them in float64):

    DDPM   a = 1/√α_i,  b = (1 − α_i)/√(1 − ᾱ_i),  d = 0,           s = √β_i (0 at i = 1)
    DDIM   a = √ᾱ_prev/√ᾱ_i,  b = √(1 − ᾱ_i),  d = √(1 − ᾱ_prev),  s = 0

so one file serves DDPM and DDIM at any step count. Built with onnx.helper from a UNet ONNX (fp32 or
fp16) — no torch needed; the arithmetic is tested against the NumPy loop on ONNX Runtime's CPU provider.

This module needs the `onnx` package only when a function is called (it is imported lazily), so the
runtime can import its constants without it. `ddpm-export --gpu-loop` (export/step_export.py) writes the
fused model; `ddpm-run --gpu-loop` on a plain UNet fuses it in memory.
"""
from __future__ import annotations

from .contract import INPUT_NAMES, OUTPUT_NAMES
from .errors import DdpmEdgeError

LOOP_GRAPH = "ddpm-loop/1"    # metadata "graph" of a fused loop model
LOOP_INPUTS = ("x", "c", "noise", "table", "k")
LOOP_OUTPUTS = ("x_prev", "k_next")
TABLE_COLUMNS = ("t", "a", "b", "d", "s", "slot")
P = "loop__"                  # prefix of every name this module adds


def fuse_loop(unet_proto):
    """The fused loop ModelProto (see module doc) around a UNet ModelProto; the input is not modified."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(unet_proto)
    graph = model.graph
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("graph") == LOOP_GRAPH:
        raise DdpmEdgeError("this ONNX is already a fused loop model")
    inputs = {i.name: i for i in graph.input}
    if set(inputs) != set(INPUT_NAMES) or [o.name for o in graph.output] != list(OUTPUT_NAMES):
        raise DdpmEdgeError("the loop is built around a ddpm UNet ONNX (inputs x, t, c; output eps)")
    if any(n.name.startswith(P) or any(o.startswith(P) for o in n.output) for n in graph.node):
        raise DdpmEdgeError(f"UNet graph already uses the {P!r} name prefix")

    x_type, c_type = inputs["x"].type, inputs["c"].type
    # the UNet's t input becomes an internal tensor; its eps output becomes an internal tensor
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == "t":
                node.input[k] = f"{P}t"
        for k, name in enumerate(node.output):
            if name == "eps":
                node.output[k] = f"{P}eps"
    unet_nodes = list(graph.node)

    def const(name, values, dtype=TensorProto.INT64):
        return helper.make_node("Constant", [], [f"{P}{name}"], name=f"{P}{name}",
                                value=helper.make_tensor(f"{P}{name}", dtype, [len(values)], values))

    def column(j, name):  # row[:, j:j+1] → [1, 1]
        return helper.make_node("Slice", [f"{P}row", f"{P}c{j}", f"{P}c{j + 1}", f"{P}axis1"], [f"{P}{name}"],
                                name=f"{P}{name}")

    pre = [const("axis1", [1]), *(const(f"c{j}", [j]) for j in range(len(TABLE_COLUMNS) + 1)),
           const("one", [1]), const("zero", [0]),
           helper.make_node("Gather", ["table", "k"], [f"{P}row1"], axis=0, name=f"{P}gather_row"),   # [6]
           helper.make_node("Unsqueeze", [f"{P}row1", f"{P}zero"], [f"{P}row"], name=f"{P}row"),      # [1, 6]
           *(column(j, name) for j, name in enumerate(TABLE_COLUMNS)),                                # [1, 1] each
           helper.make_node("Shape", ["x"], [f"{P}n"], start=0, end=1, name=f"{P}n"),                 # [1] = N
           helper.make_node("Concat", [f"{P}n", f"{P}one"], [f"{P}t_shape"], axis=0, name=f"{P}t_shape"),
           helper.make_node("Expand", [f"{P}t", f"{P}t_shape"], [f"{P}t_full"], name=f"{P}t_full")]  # [N, 1]
    for node in unet_nodes:
        for k, name in enumerate(node.input):
            if name == f"{P}t":
                node.input[k] = f"{P}t_full"
    post = [helper.make_node("Squeeze", [f"{P}slot", f"{P}zero"], [f"{P}slot1"], name=f"{P}slot1"),      # [1]
            helper.make_node("Squeeze", [f"{P}slot1", f"{P}zero"], [f"{P}slot0"], name=f"{P}slot0"),     # []
            helper.make_node("Cast", [f"{P}slot0"], [f"{P}slot_i"], to=TensorProto.INT64, name=f"{P}slot_i"),
            helper.make_node("Gather", ["noise", f"{P}slot_i"], [f"{P}z"], axis=0, name=f"{P}z"),        # [N,C,H,W]
            helper.make_node("Mul", [f"{P}eps", f"{P}b"], [f"{P}b_eps"], name=f"{P}b_eps"),
            helper.make_node("Sub", ["x", f"{P}b_eps"], [f"{P}x_minus"], name=f"{P}x_minus"),
            helper.make_node("Mul", [f"{P}x_minus", f"{P}a"], [f"{P}x_scaled"], name=f"{P}x_scaled"),
            helper.make_node("Mul", [f"{P}eps", f"{P}d"], [f"{P}d_eps"], name=f"{P}d_eps"),
            helper.make_node("Add", [f"{P}x_scaled", f"{P}d_eps"], [f"{P}mean"], name=f"{P}mean"),
            helper.make_node("Mul", [f"{P}z", f"{P}s"], [f"{P}s_z"], name=f"{P}s_z"),
            helper.make_node("Add", [f"{P}mean", f"{P}s_z"], ["x_prev"], name=f"{P}x_prev"),
            helper.make_node("Add", ["k", f"{P}k_step"], ["k_next"], name=f"{P}k_next"),
            helper.make_node("Constant", [], [f"{P}k_step"], name=f"{P}k_step",
                             value=helper.make_tensor(f"{P}k_step", TensorProto.INT64, [], [1]))]
    del graph.node[:]
    graph.node.extend(pre + unet_nodes + post[-1:] + post[:-1])

    image = [d.dim_param or d.dim_value for d in x_type.tensor_type.shape.dim]
    del graph.input[:]
    graph.input.extend([
        helper.make_tensor_value_info("x", TensorProto.FLOAT, image),
        helper.make_tensor_value_info("c", TensorProto.FLOAT, [d.dim_param or d.dim_value for d in c_type.tensor_type.shape.dim]),
        helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["noise_slots", *image]),
        helper.make_tensor_value_info("table", TensorProto.FLOAT, ["steps", len(TABLE_COLUMNS)]),
        helper.make_tensor_value_info("k", TensorProto.INT64, []),
    ])
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("x_prev", TensorProto.FLOAT, image),
                         helper.make_tensor_value_info("k_next", TensorProto.INT64, [])])
    del graph.value_info[:]
    meta["graph"] = LOOP_GRAPH
    del model.metadata_props[:]
    helper.set_model_props(model, meta)
    model.doc_string = "ContextUnet + DDPM/DDIM step: one run = one timestep, device-resident (ddpm-edge loop)"
    return checked(model, "building the loop graph failed")


def checked(model, what: str):
    """onnx.checker + strict shape inference; a failure is a one-line DdpmEdgeError naming `what`."""
    import onnx

    try:
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:
        raise DdpmEdgeError(f"{what}: {str(e).splitlines()[0][:300]}") from None
