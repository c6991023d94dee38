"""The frozen file as a transformers BertForTokenClassification on PyTorch: the torch peer runs it, the
onnxruntime and openvino peers export it to ONNX, the ctranslate2 peer converts its encoder."""
import torch
import transformers

# transformers' names for the two GELUs halfserve knows. gelu_pytorch_tanh is PyTorch's fused tanh GELU, the
# fastest tanh form transformers offers (same formula as gelu_new).
HF_ACTIVATIONS = {"gelu_erf": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}


def bert_config(model):
    a = model.architecture
    return transformers.BertConfig(
        vocab_size=a.vocab_size, hidden_size=a.hidden_size, num_hidden_layers=a.num_layers,
        num_attention_heads=a.num_heads, intermediate_size=a.intermediate_size,
        hidden_act=HF_ACTIVATIONS[a.activation], max_position_embeddings=a.max_positions,
        type_vocab_size=a.type_vocab_size, layer_norm_eps=a.layer_norm_eps, num_labels=model.num_labels,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager")


def _load_exactly(module, state, unused_prefix=None):
    """Loads every tensor of the file. Only transformers' own buffers (position ids) and, when named, a part the
    file does not have may be left out: anything else missing or extra means the names disagree."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    buffers = {name for name, _ in module.named_buffers()}
    weights_missing = [name for name in missing
                       if name not in buffers and not (unused_prefix and name.startswith(unused_prefix))]
    if weights_missing or unexpected:
        raise ValueError("frozen file and %s disagree: missing %s, unexpected %s"
                         % (type(module).__name__, weights_missing, unexpected))


def token_classifier(model):
    """BertForTokenClassification with the file's weights, fp32, in eval mode."""
    torch_model = transformers.BertForTokenClassification(bert_config(model))
    _load_exactly(torch_model, {name: torch.from_numpy(array) for name, array in model.tensors.items()})
    return torch_model.eval()


def encoder_with_pooler(model):
    """BertModel (the encoder) with the file's weights. It has a pooler because CTranslate2's BERT converter
    requires one; a token classifier never uses it, so it is left as transformers initialised it."""
    encoder = transformers.BertModel(bert_config(model), add_pooling_layer=True)
    prefix = "bert."
    state = {name[len(prefix):]: torch.from_numpy(array) for name, array in model.tensors.items()
             if name.startswith(prefix)}
    _load_exactly(encoder, state, unused_prefix="pooler.")
    return encoder.eval()


def export_onnx(torch_model, path, opset=14):
    """ONNX with dynamic batch and length; inputs as a BERT server receives them (int64), output the logits."""
    length = min(8, torch_model.config.max_position_embeddings)
    ones = torch.ones(2, length, dtype=torch.int64)
    example = (ones, ones, torch.zeros_like(ones))  # ids, mask, token types: values do not matter to the trace
    axes = {0: "batch", 1: "length"}
    with torch.no_grad():
        torch.onnx.export(torch_model, example, path, input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["logits"], opset_version=opset, do_constant_folding=True,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "logits": axes})
