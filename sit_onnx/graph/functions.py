"""SpikingExp and SpikingNorm as ONNX model-local functions built from standard ops.

Every rewritten model carries these, so plain onnxruntime (or any runtime that
inlines functions) runs it with no extra library; the custom-op kernels take
precedence where the library is registered. The bodies read the neuron's numbers
through attribute references; SpikingExp's body is unrolled for the model's K.

Both bodies compute in float32 and cast back to the input's type (CastLike,
opset 15+). Below opset 15 the body has no casts and the rewrite feeds float32.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from sit_onnx.domain import DOMAIN, DOMAIN_VERSION, SPIKING_ACTIVATION, SPIKING_EXP, SPIKING_NORM, SPIKING_SOFTMAX

CASTLIKE_OPSET = 15


def _attr_ref(name: str, ref: str, kind: int) -> onnx.AttributeProto:
    attr = onnx.AttributeProto()
    attr.name, attr.ref_attr_name, attr.type = name, ref, kind
    return attr


def _ref_constant(output: str, ref: str, kind: int) -> onnx.NodeProto:
    """`output = Constant(<value_* = @ref>)`: a tensor made from the calling node's attribute."""
    attr_name = {
        onnx.AttributeProto.FLOATS: "value_floats",
        onnx.AttributeProto.INT: "value_int",
        onnx.AttributeProto.FLOAT: "value_float",
    }[kind]
    node = helper.make_node("Constant", [], [output])
    node.attribute.append(_attr_ref(attr_name, ref, kind))
    return node


def _scalar(output: str, value, dtype=TensorProto.INT64) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [output], value=helper.make_tensor(output, dtype, [], [value]))


def _vector(output: str, values, dtype=TensorProto.INT64) -> onnx.NodeProto:
    """A 1-D constant (Unsqueeze's axes and the like must be 1-D; some runtimes refuse a scalar)."""
    return helper.make_node("Constant", [], [output], value=helper.make_tensor(output, dtype, [len(values)], values))


def _cast_in(nodes: list, name: str, opset: int) -> str:
    if opset < CASTLIKE_OPSET:
        return name
    nodes.append(helper.make_node("Cast", [name], [f"{name}_f32"], to=TensorProto.FLOAT))
    return f"{name}_f32"


def _cast_out(nodes: list, value: str, like: str, output: str, opset: int) -> None:
    if opset < CASTLIKE_OPSET:
        nodes.append(helper.make_node("Identity", [value], [output]))
    else:
        nodes.append(helper.make_node("CastLike", [value, like], [output]))


def _nonfinite_count(prefix: str) -> list[onnx.NodeProto]:
    """`{prefix}_bad_count` [1]: how many of the values in `{prefix}_all` are NaN or infinite."""
    return [
        helper.make_node("IsNaN", [f"{prefix}_all"], [f"{prefix}_nan"]),
        helper.make_node("IsInf", [f"{prefix}_all"], [f"{prefix}_inf"]),
        helper.make_node("Or", [f"{prefix}_nan", f"{prefix}_inf"], [f"{prefix}_bad"]),
        helper.make_node("Cast", [f"{prefix}_bad"], [f"{prefix}_bad_int"], to=TensorProto.INT64),
        _vector(f"{prefix}_axes", [0]),
        helper.make_node("ReduceSum", [f"{prefix}_bad_int", f"{prefix}_axes"], [f"{prefix}_bad_count"], keepdims=1),
    ]


def _checked_steps(steps: int) -> list[onnx.NodeProto]:
    """T, H, D from the given attributes, refusing what the kernels refuse (ONNX has no assert):
    the three are concatenated and reshaped to [3K + the number of NaN or infinite values], which
    fails unless each holds exactly K finite numbers; T, H, D are then sliced from the result, so
    the check cannot be optimised away."""
    return [
        helper.make_node("Concat", ["T_given", "H_given", "D_given"], ["steps_all"], axis=0),
        *_nonfinite_count("steps"),
        _vector("steps_size", [3 * steps]),
        helper.make_node("Add", ["steps_size", "steps_bad_count"], ["steps_shape"]),
        helper.make_node("Reshape", ["steps_all", "steps_shape"], ["steps_checked"]),
        _vector("steps_split", [steps, steps, steps]),
        helper.make_node("Split", ["steps_checked", "steps_split"], ["T_part", "H_part", "D_part"], axis=0),
        *_known_shapes({"T": [steps], "H": [steps], "D": [steps]}),
    ]


def _known_shapes(shapes: dict[str, list[int]]) -> list[onnx.NodeProto]:
    """`name = Reshape(name_part, shape)` to a constant shape: a no-op where the check above passed,
    but before opset 14 onnx infers no shape for the check's Reshape to a computed shape, so every
    tensor computed from these (the whole neuron, and all after it) had none."""
    nodes = []
    for name, shape in shapes.items():
        nodes += [
            _vector(f"{name}_shape", shape),
            helper.make_node("Reshape", [f"{name}_part", f"{name}_shape"], [name]),
        ]
    return nodes


def _neuron_nodes(steps: int, opset: int) -> tuple[list[onnx.NodeProto], str]:
    """The FS neuron unrolled over `steps` on the function's input X: `z=(v>=T[t]); v-=h[t]*z;
    out+=d[t]*z` from the checked `thresholds`, `resets`, `weights` attributes; NaN in, NaN out.
    Returns the nodes and the float32 input's name; the sum is `y_f32`."""
    floats = onnx.AttributeProto.FLOATS
    nodes = [
        _ref_constant("T_given", "thresholds", floats),
        _ref_constant("H_given", "resets", floats),
        _ref_constant("D_given", "weights", floats),
        *_checked_steps(steps),
    ]
    v = _cast_in(nodes, "X", opset)
    x = v
    out = None
    for t in range(steps):
        nodes += [
            _scalar(f"i{t}", t),
            helper.make_node("Gather", ["T", f"i{t}"], [f"T{t}"]),
            helper.make_node("Gather", ["D", f"i{t}"], [f"D{t}"]),
            helper.make_node("GreaterOrEqual", [v, f"T{t}"], [f"fire{t}"]),
            helper.make_node("Cast", [f"fire{t}"], [f"z{t}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"D{t}", f"z{t}"], [f"dz{t}"]),
        ]
        if out is None:
            out = f"dz{t}"
        else:
            nodes.append(helper.make_node("Add", [out, f"dz{t}"], [f"out{t}"]))
            out = f"out{t}"
        if t < steps - 1:  # the last reset is never read
            nodes += [
                helper.make_node("Gather", ["H", f"i{t}"], [f"H{t}"]),
                helper.make_node("Mul", [f"H{t}", f"z{t}"], [f"hz{t}"]),
                helper.make_node("Sub", [v, f"hz{t}"], [f"v{t + 1}"]),
            ]
            v = f"v{t + 1}"
    nodes += [helper.make_node("IsNaN", [x], ["x_nan"]), helper.make_node("Where", ["x_nan", x, out], ["y_f32"])]
    return nodes, x


def spiking_exp_function(steps: int, opset: int) -> onnx.FunctionProto:
    """SI-exp unrolled over `steps`: `z=(v>=T[t]); v-=h[t]*z; out+=d[t]*z`; NaN in, NaN out."""
    nodes, _ = _neuron_nodes(steps, opset)
    _cast_out(nodes, "y_f32", "X", "Y", opset)
    return helper.make_function(
        DOMAIN,
        SPIKING_EXP,
        ["X"],
        ["Y"],
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["thresholds", "resets", "weights"],
    )


def spiking_norm_function(opset: int) -> onnx.FunctionProto:
    """SI-norm: `V_th = sum(W, axis)`; `w * (1/V_th)`, or `max(floor(N*w/V_th), 0)/N` when time_steps N > 0."""
    ints = onnx.AttributeProto.INT
    nodes = [_ref_constant("axis_scalar", "axis", ints), *_checked_time_steps()]
    w = _cast_in(nodes, "W", opset)
    nodes += [
        _vector("zero_axis", [0]),
        helper.make_node("Unsqueeze", ["axis_scalar", "zero_axis"], ["axes"]),
        helper.make_node("ReduceSum", [w, "axes"], ["v_th"], keepdims=1),
        helper.make_node("Div", [w, "v_th"], ["ratio"]),
        helper.make_node("Reciprocal", ["v_th"], ["inv_th"]),
        helper.make_node("Mul", [w, "inv_th"], ["amplified"]),  # w * (1/V_th), as the kernels compute it
        _scalar("zero", 0.0, TensorProto.FLOAT),
        helper.make_node("Mul", ["ratio", "n"], ["scaled"]),
        helper.make_node("Floor", ["scaled"], ["count"]),
        helper.make_node("Max", ["count", "zero"], ["count_pos"]),
        helper.make_node("Div", ["count_pos", "n"], ["rate"]),
        helper.make_node("Greater", ["n", "zero"], ["rate_coded"]),
        helper.make_node("Where", ["rate_coded", "rate", "amplified"], ["normed"]),
        helper.make_node("Greater", ["v_th", "zero"], ["fires"]),
        helper.make_node("IsNaN", ["v_th"], ["th_nan"]),
        helper.make_node("Where", ["th_nan", "v_th", "zero"], ["silent"]),
        helper.make_node("Where", ["fires", "normed", "silent"], ["y_f32"]),
    ]
    _cast_out(nodes, "y_f32", "W", "Y", opset)
    function = helper.make_function(DOMAIN, SPIKING_NORM, ["W"], ["Y"], nodes, [helper.make_opsetid("", opset)])
    function.attribute_proto.extend([helper.make_attribute("axis", -1), helper.make_attribute("time_steps", 0)])
    return function


def spiking_softmax_function(opset: int) -> onnx.FunctionProto:
    """The fused op: its body calls SpikingExp and SpikingNorm, so the two neurons stay visible.

    The max along a dynamic axis is taken as GatherElements(ArgMax) because ReduceMax
    takes its axes as a list, which an int attribute cannot be referenced as (before opset 18).
    The row is first extended by one -inf along the axis, so that an empty axis has a max
    (-inf) too: ArgMax refuses an empty axis."""
    ints, floats = onnx.AttributeProto.INT, onnx.AttributeProto.FLOATS
    nodes = [*_checked_flag("sigmoid"), *_checked_flag("shift")]
    x = _cast_in(nodes, "X", opset)
    argmax = helper.make_node("ArgMax", ["padded"], ["peak_index"], keepdims=1)
    argmax.attribute.append(_attr_ref("axis", "axis", ints))
    gather = helper.make_node("GatherElements", ["padded", "peak_index"], ["peak"])
    gather.attribute.append(_attr_ref("axis", "axis", ints))
    pad_axis = helper.make_node("Concat", ["a", "pad"], ["padded"])
    pad_axis.attribute.append(_attr_ref("axis", "axis", ints))
    spiking_exp = helper.make_node(SPIKING_EXP, ["b"], ["e"], domain=DOMAIN)
    spiking_exp.attribute.extend(_attr_ref(n, n, floats) for n in ("thresholds", "resets", "weights"))
    spiking_norm = helper.make_node(SPIKING_NORM, ["e"], ["y_f32"], domain=DOMAIN)
    spiking_norm.attribute.extend(_attr_ref(n, n, ints) for n in ("axis", "time_steps"))
    nodes += [
        helper.make_node("Sigmoid", [x], ["squashed"]),
        helper.make_node("Where", ["is_sigmoid", "squashed", x], ["a"]),
        _ref_constant("axis_value", "axis", ints),
        _vector("zero_axis", [0]),
        helper.make_node("Unsqueeze", ["axis_value", "zero_axis"], ["axis_index"]),
        # the pad, -inf of a's shape with the axis 1 long, computed from `a` itself, not from Shape(a): a
        # stale fixed dim annotated upstream would let onnxruntime fold Shape(a) to a constant
        _scalar("zero_f", 0.0, TensorProto.FLOAT),  # `a` is float32 at every opset
        helper.make_node("IsNaN", ["a"], ["a_nan"]),
        helper.make_node("Where", ["a_nan", "zero_f", "zero_f"], ["zeros"]),
        helper.make_node("ReduceSum", ["zeros", "axis_index"], ["pad_zeros"], keepdims=1),
        _scalar("minus_inf", float("-inf"), TensorProto.FLOAT),
        helper.make_node("Add", ["pad_zeros", "minus_inf"], ["pad"]),
        pad_axis,
        argmax,
        gather,
        helper.make_node("Sub", ["a", "peak"], ["shifted"]),
        helper.make_node("Where", ["is_shift", "shifted", "a"], ["b"]),
        spiking_exp,
        spiking_norm,
    ]
    _cast_out(nodes, "y_f32", "X", "Y", opset)
    function = helper.make_function(
        DOMAIN,
        SPIKING_SOFTMAX,
        ["X"],
        ["Y"],
        nodes,
        [helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
        attributes=["thresholds", "resets", "weights"],
    )
    function.attribute_proto.extend(
        [
            helper.make_attribute("axis", -1),
            helper.make_attribute("time_steps", 0),
            helper.make_attribute("shift", 1),
            helper.make_attribute("sigmoid", 0),
        ]
    )
    return function


def _tail(nodes: list, x: str, side: str, index: int) -> str:
    """slope * x + intercept of one side, or the intercept itself where the slope is 0 (so that
    0 * -inf gives no NaN)."""
    nodes += [
        _scalar(f"{side}_slope_i", index),
        _scalar(f"{side}_intercept_i", index + 1),
        helper.make_node("Gather", ["tails", f"{side}_slope_i"], [f"{side}_slope"]),
        helper.make_node("Gather", ["tails", f"{side}_intercept_i"], [f"{side}_intercept"]),
        helper.make_node("Mul", [f"{side}_slope", x], [f"{side}_sx"]),
        helper.make_node("Add", [f"{side}_sx", f"{side}_intercept"], [f"{side}_line"]),
        helper.make_node("Equal", [f"{side}_slope", "zero"], [f"{side}_flat"]),
        helper.make_node("Where", [f"{side}_flat", f"{side}_intercept", f"{side}_line"], [f"{side}_tail"]),
    ]
    return f"{side}_tail"


def _checked_range() -> list[onnx.NodeProto]:
    """`low`, `high`, `bias` and `tails` from the given attributes, refusing what the kernels refuse:
    the seven are concatenated and reshaped to [7 + the number of NaN or infinite values + (1 unless
    low < high)], which fails unless tails holds 4 values and all is finite and ordered; the four
    are then split from the result, so the check cannot be optimised away."""
    scalars = ("low", "high", "bias")
    return [
        _vector("range_one_shape", [1]),
        *[helper.make_node("Reshape", [f"{n}_given", "range_one_shape"], [f"{n}_row"]) for n in scalars],
        helper.make_node("Concat", ["low_row", "high_row", "bias_row", "tails_given"], ["range_all"], axis=0),
        *_nonfinite_count("range"),
        helper.make_node("Less", ["low_row", "high_row"], ["range_ordered"]),
        helper.make_node("Not", ["range_ordered"], ["range_unordered"]),
        helper.make_node("Cast", ["range_unordered"], ["range_unordered_int"], to=TensorProto.INT64),
        _vector("range_size", [7]),
        helper.make_node("Add", ["range_size", "range_bad_count"], ["range_size_bad"]),
        helper.make_node("Add", ["range_size_bad", "range_unordered_int"], ["range_shape"]),
        helper.make_node("Reshape", ["range_all", "range_shape"], ["range_checked"]),
        _vector("range_split", [1, 1, 1, 4]),
        helper.make_node(
            "Split", ["range_checked", "range_split"], ["low_part", "high_part", "bias_part", "tails_part"], axis=0
        ),
        *_known_shapes({"low": [], "high": [], "bias": [], "tails": [4]}),
    ]


def spiking_activation_function(opset: int, steps: int) -> onnx.FunctionProto:
    """SpikingActivation: its own unrolled neuron of `steps` (not a SpikingExp call, whose K is the
    softmax sets'), then the bias (and for a gate, times x) inside [low, high] and a straight tail
    outside, in float32 as the kernels compute."""
    floats, single = onnx.AttributeProto.FLOATS, onnx.AttributeProto.FLOAT
    nodes, x = _neuron_nodes(steps, opset)
    nodes += [
        _ref_constant("low_given", "low", single),
        _ref_constant("high_given", "high", single),
        _ref_constant("bias_given", "bias", single),
        _ref_constant("tails_given", "tails", floats),
        *_checked_range(),
        _scalar("zero", 0.0, TensorProto.FLOAT),
        helper.make_node("Add", ["y_f32", "bias"], ["neuron_out"]),
        *_checked_flag("gate"),
        helper.make_node("Mul", [x, "neuron_out"], ["gated_out"]),
        helper.make_node("Where", ["is_gate", "gated_out", "neuron_out"], ["inside"]),
    ]
    below, above = _tail(nodes, x, "below", 0), _tail(nodes, x, "above", 2)
    nodes += [
        helper.make_node("Less", [x, "low"], ["is_below"]),
        helper.make_node("Greater", [x, "high"], ["is_above"]),
        helper.make_node("Where", ["is_above", above, "inside"], ["upper"]),
        helper.make_node("Where", ["is_below", below, "upper"], ["y_out"]),
    ]
    _cast_out(nodes, "y_out", "X", "Y", opset)
    function = helper.make_function(
        DOMAIN,
        SPIKING_ACTIVATION,
        ["X"],
        ["Y"],
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["thresholds", "resets", "weights", "low", "high", "tails"],
    )
    function.attribute_proto.extend([helper.make_attribute("bias", 0.0), helper.make_attribute("gate", 0)])
    return function


def _valid_only(name: str, excess: str) -> list[onnx.NodeProto]:
    """`{name}_valid`: the int scalar `name` passed through an Expand of [name, name] to [2 + excess],
    which fails unless `excess` (an int64 scalar >= 0 the caller computes from it) is 0: two values
    broadcast to no other length. ONNX has no assert; this is how a body refuses what the kernels
    refuse at session creation. Expand, unlike a Reshape to a computed shape, leaves onnx's inference
    (at every opset) the rank, so the flag, and every tensor it selects, keeps a shape."""
    return [
        _scalar(f"{name}_two", 2),
        _vector(f"{name}_one_shape", [1]),
        helper.make_node("Add", [excess, f"{name}_two"], [f"{name}_size"]),
        helper.make_node("Reshape", [f"{name}_size", f"{name}_one_shape"], [f"{name}_shape"]),
        helper.make_node("Reshape", [name, f"{name}_one_shape"], [f"{name}_as_one"]),
        helper.make_node("Concat", [f"{name}_as_one", f"{name}_as_one"], [f"{name}_as_two"], axis=0),
        helper.make_node("Expand", [f"{name}_as_two", f"{name}_shape"], [f"{name}_checked"]),
        _scalar(f"{name}_first", 0),
        helper.make_node("Gather", [f"{name}_checked", f"{name}_first"], [f"{name}_valid"], axis=0),
    ]


def _checked_flag(name: str) -> list[onnx.NodeProto]:
    """`is_<name>`, a bool scalar from the int attribute `name`, refused unless 0 or 1 (excess v·(v-1))."""
    return [
        _ref_constant(name, name, onnx.AttributeProto.INT),
        _scalar(f"{name}_unit", 1),
        helper.make_node("Sub", [name, f"{name}_unit"], [f"{name}_less_one"]),
        helper.make_node("Mul", [name, f"{name}_less_one"], [f"{name}_excess"]),
        *_valid_only(name, f"{name}_excess"),
        helper.make_node("Cast", [f"{name}_valid"], [f"is_{name}"], to=TensorProto.BOOL),
    ]


def _checked_time_steps() -> list[onnx.NodeProto]:
    """`n`, the float number of input spikes from `time_steps`, refused below 0 as the kernels do."""
    return [
        _ref_constant("n_int", "time_steps", onnx.AttributeProto.INT),
        _scalar("n_zero", 0),
        helper.make_node("Less", ["n_int", "n_zero"], ["n_negative"]),
        helper.make_node("Cast", ["n_negative"], ["n_excess"], to=TensorProto.INT64),
        *_valid_only("n_int", "n_excess"),
        helper.make_node("Cast", ["n_int_valid"], ["n"], to=TensorProto.FLOAT),
    ]


def spiking_functions(steps: int, opset: int, activation_steps: int | None = None) -> list[onnx.FunctionProto]:
    """The bodies (SpikingActivation's only when given its neuron's K, `activation_steps`), every node
    named (tools such as onnx2torch refuse unnamed nodes)."""
    functions = [spiking_exp_function(steps, opset), spiking_norm_function(opset), spiking_softmax_function(opset)]
    if activation_steps is not None:
        functions.append(spiking_activation_function(opset, activation_steps))
    for function in functions:
        for index, node in enumerate(function.node):
            node.name = node.name or f"{function.name}/{node.op_type}_{index}"
    return functions
