"""Whether two models can be fed one set of arrays: `eval`/`energy --converted` and `compare` run
both on the same feeds, and a model taking other inputs failed inside onnxruntime ("Unexpected
input data type", "Required inputs (['y0']) are missing") under a label naming neither file."""

from __future__ import annotations

import onnx

from sit_onnx.errors import SitOnnxError

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def fed_inputs(model: onnx.ModelProto) -> dict[str, tuple[int, list | None]]:
    """The inputs a caller feeds (not those an initializer of the same name defaults), each as
    (element type, dims: an int where fixed, a name or None where not; None for an unknown rank)."""
    defaulted = {t.name for t in model.graph.initializer}
    fed = {}
    for value in model.graph.input:
        if value.name in defaulted:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param or None for d in tensor.shape.dim]
        fed[value.name] = (tensor.elem_type, dims if tensor.HasField("shape") else None)
    return fed


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "not a tensor"


def _shape_text(dims: list) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _fixed_sizes_differ(a: list, b: list) -> bool:
    """Another rank, or two different fixed sizes on one axis past the first."""
    fixed = [(x, y) for x, y in zip(a[1:], b[1:]) if isinstance(x, int) and isinstance(y, int)]
    return len(a) != len(b) or any(x != y for x, y in fixed)


def check_same_inputs(
    reference: onnx.ModelProto,
    candidate: onnx.ModelProto,
    labels: tuple[str, str],
    float_types_may_differ: bool = False,
    hint: str = "",
) -> None:
    """Refuse, naming the first difference, a `candidate` that cannot take `reference`'s feeds: other
    input names, another element type (floats may differ where the caller casts the feeds per
    model), another rank, or another fixed size on an axis past the batch (the batch may differ:
    a fixed-batch export runs a batch at a time). `labels`: how to name (reference, candidate)."""
    ref, cand = fed_inputs(reference), fed_inputs(candidate)
    ref_label, cand_label = labels
    if set(ref) != set(cand):
        raise SitOnnxError(
            f"{cand_label}: takes the inputs {', '.join(sorted(cand)) or 'none'}, "
            f"{ref_label} takes {', '.join(sorted(ref)) or 'none'}{hint}"
        )
    for name, (ref_type, ref_dims) in ref.items():
        cand_type, cand_dims = cand[name]
        floats = ref_type in FLOAT_TYPES and cand_type in FLOAT_TYPES
        if ref_type != cand_type and not (float_types_may_differ and floats):
            raise SitOnnxError(
                f"{cand_label}: its input {name!r} is {_type_name(cand_type)}, "
                f"{ref_label}'s is {_type_name(ref_type)}{hint}"
            )
        if ref_dims is not None and cand_dims is not None and _fixed_sizes_differ(ref_dims, cand_dims):
            raise SitOnnxError(
                f"{cand_label}: its input {name!r} has shape {_shape_text(cand_dims)}, "
                f"{ref_label}'s has {_shape_text(ref_dims)}{hint}"
            )
