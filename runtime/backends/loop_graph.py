"""UNet + sampler step fused into one ONNX graph, for the device-resident sampling loop.

One run of the fused graph is one timestep, entirely on the device:

    inputs   x      [N, C, H, W] float32   x_i
             c      [N, n_cfeat] float32   context
             noise  [B, N, C, H, W] float32 a block of pre-drawn z (slot B-1 is zeros)
             table  [K, 6] float32          per timestep k: t, a, b, d, s, noise slot
             k      []  int64               the timestep number (0 … K-1)
             w      []  float32             guidance weight (guided graphs only)
    outputs  x_prev [N, C, H, W] float32
             k_next []  int64               k + 1, bound as the next run's k

    row = table[k];  t = row.t broadcast to [N, 1];  eps = unet(x, t, c);  z = noise[row.slot]
    x_prev = (x − b·eps)·a + d·eps + s·z

A guided graph (metadata guidance = "cfg") does classifier-free guidance in the same run, like
runtime/sampling.py `guided`: one UNet call on 2N rows [x; x], [c; 0], then
eps = (1 + w)·eps[:N] − w·eps[N:]. It costs two UNet rows per sprite at any w, so it is a separate graph.

The row coefficients cover both samplers (runtime/backends/ort_cuda.py `step_table` fills them in float64):

    DDPM   a = 1/√α_i,  b = (1 − α_i)/√(1 − ᾱ_i),  d = 0,           s = √β_i (0 at i = 1)
    DDIM   a = √ᾱ_prev/√ᾱ_i,  b = √(1 − ᾱ_i),  d = √(1 − ᾱ_prev − σ_i²),  s = σ_i   (σ_i = 0 at η = 0)

so one file serves DDPM and DDIM at any step count. Built with onnx.helper from a UNet ONNX (fp32 or
fp16) — no torch needed; the arithmetic is tested against the NumPy loop on ONNX Runtime's CPU provider.

This module needs the `onnx` package only when a function is called (it is imported lazily), so the
runtime can import its constants without it. `ddpm-export --gpu-loop` (export/step_export.py) writes the
fused model; `ddpm-run --gpu-loop` on a plain UNet fuses it in memory.
"""
from __future__ import annotations

from ..contract import INPUT_NAMES, OUTPUT_NAMES
from ..errors import DdpmEdgeError

LOOP_GRAPH = "ddpm-loop/1"    # metadata "graph" of a fused loop model
LOOP_INPUTS = ("x", "c", "noise", "table", "k")
GUIDED_INPUTS = (*LOOP_INPUTS, "w")
GUIDED = "cfg"                # metadata "guidance" of a guided loop model
LOOP_OUTPUTS = ("x_prev", "k_next")
TABLE_COLUMNS = ("t", "a", "b", "d", "s", "slot")
P = "loop__"                  # prefix of every name this module adds


def fuse_loop(unet_proto, guided: bool = False):
    """The fused loop ModelProto (see module doc) around a UNet ModelProto; the input is not modified.
    `guided`: the classifier-free guidance graph, with the extra input w."""
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
    taken = {o for n in graph.node for o in n.output} | {i.name for i in graph.initializer}
    if taken & set(GUIDED_INPUTS + LOOP_OUTPUTS):
        raise DdpmEdgeError(f"UNet graph already has tensors named {sorted(taken & set(GUIDED_INPUTS + LOOP_OUTPUTS))}, "
                            "which the loop graph needs")

    x_type, c_type = inputs["x"].type, inputs["c"].type
    # the UNet's t input and eps output become internal tensors; guided, so do its x and c (2N rows)
    renamed = {"t": f"{P}t_full", "eps": f"{P}eps_twice" if guided else f"{P}eps"}
    if guided:
        renamed.update(x=f"{P}x_twice", c=f"{P}c_twice")
    unet_nodes = list(graph.node)
    for unet_node in unet_nodes:
        for names in (unet_node.input, unet_node.output):
            names[:] = [renamed.get(name, name) for name in names]

    def node(op, inputs, output, **attrs):
        return helper.make_node(op, inputs, [f"{P}{output}"], name=f"{P}{output}", **attrs)

    def const(name, values, dtype=TensorProto.INT64, dims=None):
        return node("Constant", [], name,
                    value=helper.make_tensor(f"{P}{name}", dtype, [len(values)] if dims is None else dims, values))

    def column(j, name):  # row[:, j:j+1] → [1, 1]
        return node("Slice", [f"{P}row", f"{P}c{j}", f"{P}c{j + 1}", f"{P}axis1"], name)

    rows = f"{P}n_twice" if guided else f"{P}n"                                           # UNet rows: N, or 2N
    pre = [const("axis1", [1]), *(const(f"c{j}", [j]) for j in range(len(TABLE_COLUMNS) + 1)),
           const("one", [1]), const("zero", [0]),
           node("Gather", ["table", "k"], "row1", axis=0),                                # [6]
           node("Unsqueeze", [f"{P}row1", f"{P}zero"], "row"),                            # [1, 6]
           *(column(j, name) for j, name in enumerate(TABLE_COLUMNS)),                    # [1, 1] each
           node("Shape", ["x"], "n", start=0, end=1)]                                     # [1] = N
    if guided:
        pre += [node("Concat", ["x", "x"], "x_twice", axis=0),                            # [2N, C, H, W]
                node("Shape", ["c"], "c_shape"),
                node("ConstantOfShape", [f"{P}c_shape"], "c_zero",
                     value=helper.make_tensor(f"{P}c_zero_value", TensorProto.FLOAT, [1], [0.0])),
                node("Concat", ["c", f"{P}c_zero"], "c_twice", axis=0),                   # [2N, n_cfeat]: c, then 0
                node("Shape", [f"{P}x_twice"], "n_twice", start=0, end=1)]                # [1] = 2N
    pre += [node("Concat", [rows, f"{P}one"], "t_shape", axis=0),
            node("Expand", [f"{P}t", f"{P}t_shape"], "t_full")]                           # [rows, 1]
    guide = []
    if guided:  # eps = (1 + w)·eps_twice[:N] − w·eps_twice[N:]
        guide = [const("big", [2 ** 62]),
                 node("Slice", [f"{P}eps_twice", f"{P}zero", f"{P}n", f"{P}zero"], "eps_c"),   # [N, C, H, W]
                 node("Slice", [f"{P}eps_twice", f"{P}n", f"{P}big", f"{P}zero"], "eps_u"),   # [N, C, H, W]
                 const("one_f", [1.0], TensorProto.FLOAT, dims=[]),
                 node("Add", ["w", f"{P}one_f"], "w1"),
                 node("Mul", [f"{P}eps_c", f"{P}w1"], "eps_c_w1"),
                 node("Mul", [f"{P}eps_u", "w"], "eps_u_w"),
                 node("Sub", [f"{P}eps_c_w1", f"{P}eps_u_w"], "eps")]
    post = [node("Squeeze", [f"{P}slot", f"{P}zero"], "slot1"),                           # [1]
            node("Squeeze", [f"{P}slot1", f"{P}zero"], "slot0"),                          # []
            node("Cast", [f"{P}slot0"], "slot_i", to=TensorProto.INT64),
            node("Gather", ["noise", f"{P}slot_i"], "z", axis=0),                         # [N, C, H, W]
            node("Mul", [f"{P}eps", f"{P}b"], "b_eps"),
            node("Sub", ["x", f"{P}b_eps"], "x_minus"),
            node("Mul", [f"{P}x_minus", f"{P}a"], "x_scaled"),
            node("Mul", [f"{P}eps", f"{P}d"], "d_eps"),
            node("Add", [f"{P}x_scaled", f"{P}d_eps"], "mean"),
            node("Mul", [f"{P}z", f"{P}s"], "s_z"),
            helper.make_node("Add", [f"{P}mean", f"{P}s_z"], ["x_prev"], name=f"{P}x_prev"),
            const("k_step", [1], dims=[]),
            helper.make_node("Add", ["k", f"{P}k_step"], ["k_next"], name=f"{P}k_next")]
    del graph.node[:]
    graph.node.extend(pre + unet_nodes + guide + post)

    image = [d.dim_param or d.dim_value for d in x_type.tensor_type.shape.dim]
    del graph.input[:]
    graph.input.extend([
        helper.make_tensor_value_info("x", TensorProto.FLOAT, image),
        helper.make_tensor_value_info("c", TensorProto.FLOAT, [d.dim_param or d.dim_value for d in c_type.tensor_type.shape.dim]),
        helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["noise_slots", *image]),
        helper.make_tensor_value_info("table", TensorProto.FLOAT, ["steps", len(TABLE_COLUMNS)]),
        helper.make_tensor_value_info("k", TensorProto.INT64, []),
        *([helper.make_tensor_value_info("w", TensorProto.FLOAT, [])] if guided else []),
    ])
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("x_prev", TensorProto.FLOAT, image),
                         helper.make_tensor_value_info("k_next", TensorProto.INT64, [])])
    del graph.value_info[:]
    meta["graph"] = LOOP_GRAPH
    if guided:
        meta["guidance"] = GUIDED
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
