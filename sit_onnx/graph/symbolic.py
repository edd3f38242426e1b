"""Tensor types as onnxruntime's symbolic shape inference tells them: it knows onnxruntime's own
ops (FastGelu, EmbedLayerNormalization, the fused attention ops), where onnx's inference stops."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import onnx

from sit_onnx.graph.walk import graph_protos


def symbolic_types(model: onnx.ModelProto, guess: bool) -> dict[str, onnx.TypeProto]:
    """onnxruntime's symbolic inference, run as its `infer_shapes` runs it but keeping what it found
    when it could not finish (an op it trips on, such as ONNX's own Attention of opset 23: the
    tensors before it are known): `infer_shapes` then saves the model, weights and all, as
    sym_shape_infer_temp.onnx into the working directory and raises."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError:
        return {}

    class Inference(SymbolicShapeInference):
        """Remembers the node it is inferring: where it fails, that node's outputs are not known."""

        current = None

        def _onnx_infer_single_node(self, node):
            self.current = node
            super()._onnx_infer_single_node(node)

    inference = Inference(2**31 - 1, True, guess, 0)  # int_max, auto_merge, guess, verbose
    try:
        with _quiet():
            inference._preprocess(model)
            while inference.run_:
                inference._infer_impl()
            inference._update_output_from_vi()
        return types_of(inference.out_mp_)
    except Exception:  # best effort: what it knew before the op it tripped on
        failed = set(inference.current.output) if inference.current is not None else set()
        known = getattr(inference, "known_vi_", {})
        return {
            name: info.type
            for name, info in known.items()
            if name not in failed and info.type.HasField("tensor_type") and info.type.tensor_type.elem_type
        }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """What onnxruntime's inference says of what it cannot infer ("Cannot determine if 1 - a < 0",
    through its logger, which Python prints on stderr; older versions print) is not the user's
    business: the pass keeps what it found and says what it could not use."""
    log = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    was = log.disabled
    log.disabled = True
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.disabled = was


def types_of(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """The declared and inferred types of every graph's tensors, subgraphs' included."""
    types = {}
    for graph in graph_protos(model.graph):
        types.update({v.name: v.type for v in list(graph.input) + list(graph.value_info) + list(graph.output)})
        for t in graph.initializer:
            types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    return {name: t for name, t in types.items() if t.HasField("tensor_type") and t.tensor_type.elem_type}
