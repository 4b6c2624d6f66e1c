"""What a Hugging Face model needs in GPU memory, before it is downloaded:
`labctl doctor genai --model ORG/NAME`.

The parameters come from the repository's own small files: the safetensors index's
``metadata.total_size`` (the weights' bytes, exact) divided by the bytes of the dtype its
config.json names, a single model.safetensors' size, or else an estimate from config.json
(hidden size, layers, vocabulary, MLP width, attention heads). Loading for inference needs
the weights at the chosen precision plus OVERHEAD of them (activations, the allocator's
slack) plus CONTEXT_GIB (the CUDA context and a short context's KV cache). Pure: the
files come from labctl.data.hf.model_files (the lab's HF cache, else its mirror / the Hub).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labctl.errors import LabError

GIB = 1 << 30
MIB = 1 << 20
OVERHEAD = 0.20
CONTEXT_GIB = 1.0
# Bytes per parameter of a precision a learner can load in (int8/int4: bitsandbytes).
PRECISIONS = {"bf16/fp16": 2.0, "int8": 1.0, "int4": 0.5}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "int8": 1}
# Gated MLPs (gate, up, down: three matrices) in the decoder families learners load most.
_GATED = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma",
          "gemma2", "gemma3_text", "phi3", "internlm2", "deepseek_v2", "deepseek_v3", "olmo",
          "olmo2", "granite", "cohere", "stablelm", "yi", "baichuan", "minicpm", "glm"}


@dataclass(frozen=True)
class ModelSize:
    repo: str
    params: int
    source: str  # how the count was found, said to the learner
    stored_dtype: str | None = None


def _get(cfg: dict[str, Any], *names: str) -> Any:
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    return None


def text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a multimodal config (text_config / llm_config)."""
    for key in ("text_config", "llm_config", "language_config"):
        inner = cfg.get(key)
        if isinstance(inner, dict) and _get(inner, "hidden_size", "n_embd", "d_model"):
            return {**cfg, **inner}
    return cfg


def params_from_config(cfg: dict[str, Any]) -> int:
    """A decoder transformer's parameters from its config.json (an estimate: embeddings,
    attention with grouped KV heads, the MLP (gated for Llama-like families), norms)."""
    cfg = text_config(cfg)
    h = _get(cfg, "hidden_size", "n_embd", "d_model")
    layers = _get(cfg, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _get(cfg, "vocab_size", "padded_vocab_size")
    if not all(isinstance(x, int) and x > 0 for x in (h, layers, vocab)):
        raise ValueError("config.json names no hidden_size, num_hidden_layers and vocab_size")
    inter = _get(cfg, "intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size") or 4 * h
    heads = _get(cfg, "num_attention_heads", "n_head") or 1
    kv_heads = _get(cfg, "num_key_value_heads", "multi_query_group_num") or heads
    head_dim = _get(cfg, "head_dim") or h // heads
    experts = _get(cfg, "num_local_experts", "num_experts", "n_routed_experts") or 1
    moe_inter = _get(cfg, "moe_intermediate_size") or inter
    gated = cfg.get("model_type") in _GATED or cfg.get("hidden_act") in ("silu", "swiglu")
    attn = h * heads * head_dim * 2 + h * kv_heads * head_dim * 2
    mlp = (3 if gated else 2) * h * (moe_inter if experts > 1 else inter) * experts
    per_layer = attn + mlp + 2 * h
    tied = cfg.get("tie_word_embeddings", cfg.get("model_type") in ("gpt2", "gemma", "gemma2"))
    embed = vocab * h * (1 if tied else 2)
    return int(layers * per_layer + embed + h)


def estimate(repo: str, config: dict[str, Any] | None, index: dict[str, Any] | None,
             single_size: int | None = None) -> ModelSize:
    """The parameter count: from the weights' bytes where the repository says them, else
    from config.json."""
    cfg = text_config(config or {})
    dtype = str((config or {}).get("torch_dtype") or cfg.get("torch_dtype") or "bfloat16")
    per = DTYPE_BYTES.get(dtype.removeprefix("torch."), 2)
    total = None
    if index is not None:
        total = (index.get("metadata") or {}).get("total_size")
        if isinstance(total, int | float) and total > 0:
            return ModelSize(repo, int(total / per), f"safetensors index: {human(total)} in"
                             f" {dtype}", dtype)
    if single_size:
        return ModelSize(repo, int(single_size / per), f"model.safetensors: {human(single_size)}"
                         f" in {dtype}", dtype)
    if config:
        if (config.get("quantization_config") or {}).get("quant_method"):
            pass  # the count is still the model's; the stored bytes are not
        return ModelSize(repo, params_from_config(config), "estimated from config.json", dtype)
    raise LabError(f"{repo}: neither a safetensors index nor a config.json says its size",
                   id="gpu.model-size-unknown",
                   fix="name a transformers model repository (one with config.json)")


def need(params: int, bytes_per_param: float) -> int:
    """Bytes of GPU memory to load and run the model at that precision."""
    return int(params * bytes_per_param * (1 + OVERHEAD) + CONTEXT_GIB * GIB)


def human(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def count(params: int) -> str:
    return f"{params / 1e9:.2f} B" if params >= 1e9 else f"{params / 1e6:.0f} M"


@dataclass(frozen=True)
class Verdict:
    status: str  # ok | warn | fail (the doctor's)
    subject: str
    message: str
    fix: str = ""
    fits: tuple[str, ...] = ()  # the precisions that fit this GPU, widest first


def verdicts(size: ModelSize, gpus: Sequence[Any]) -> list[Verdict]:
    """Per GPU (anything with .index, .name, .memory_mib): which precisions fit."""
    needs = {p: need(size.params, b) for p, b in PRECISIONS.items()}
    head = (f"{size.repo}: {count(size.params)} parameters ({size.source}); needs "
            + ", ".join(f"{p} {human(n)}" for p, n in needs.items())
            + f" (weights + {OVERHEAD:.0%} + {CONTEXT_GIB:g} GiB)")
    if not gpus:
        return [Verdict("warn", "no GPU", f"{head}; this machine has no GPU: on the CPU it"
                        f" needs about {human(needs['bf16/fp16'])} of RAM",
                        "run it on a machine with a GPU, or pick a smaller model")]
    out = []
    for g in gpus:
        subject = f"GPU {g.index} {g.name}"
        if not g.memory_mib:
            out.append(Verdict("warn", subject, f"{head}; the GPU's memory is unknown"))
            continue
        have = g.memory_mib * MIB
        fits = [p for p, n in needs.items() if n <= have]
        where = f"{subject} ({human(have)})"
        if "bf16/fp16" in fits:
            out.append(Verdict("ok", subject, f"{head}; fits {where} in bf16/fp16"
                               f" ({human(needs['bf16/fp16'])})", fits=tuple(fits)))
        elif fits:
            best = fits[0]
            out.append(Verdict("warn", subject,
                               f"{head}; {where} holds it in {best} only, not in bf16/fp16",
                               f"load it in {'8' if best == 'int8' else '4'} bit:"
                               " from_pretrained(..., quantization_config=BitsAndBytesConfig("
                               f"load_in_{'8' if best == 'int8' else '4'}bit=True)) after"
                               " `labctl add genai bitsandbytes`", tuple(fits)))
        else:
            total = sum((x.memory_mib or 0) * MIB for x in gpus)
            spread = len(gpus) > 1 and needs["bf16/fp16"] <= total
            out.append(Verdict("warn" if spread else "fail", subject,
                               f"{head}; does not fit {where}, not even in int4",
                               "spread it over this machine's GPUs: from_pretrained(...,"
                               " device_map='auto')" if spread else
                               "pick a smaller model (or a quantized one: -AWQ, -GPTQ, GGUF)"))
    return out

