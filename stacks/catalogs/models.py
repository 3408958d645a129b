"""Open models the platform knows the size of, as their Hugging Face `config.json` files state it.

Fields map to config.json: layers = num_hidden_layers, attention_heads = num_attention_heads,
kv_heads = num_key_value_heads, head_dim = hidden_size / num_attention_heads (or head_dim where set),
context_length = max_position_embeddings, hidden_size, intermediate_size (per expert; times the experts each
token uses for a mixture of experts), vocab_size. Parameter counts are the model pages' safetensors totals
("Model size"), so the weights in bf16 are exactly parameters x 2 bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    id: str
    parameters_b: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    context_length: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    license: str
    gated: bool
    source: str
    dtype_bytes: int = 2

    @property
    def short_name(self) -> str:
        """A DNS-1123 label for the model (used in Kubernetes names)."""
        label = "".join(c if c.isalnum() else "-" for c in self.id.rsplit("/", 1)[-1].lower())
        return "-".join(part for part in label.split("-") if part)[:40].rstrip("-")


# id, parameters (billions, safetensors total), layers, attention heads, KV heads, head dim, context length,
# hidden size, intermediate size, vocabulary, license, gated
# fmt: off
_CATALOG = (
    ("mistralai/Mistral-7B-Instruct-v0.2", 7.241732096, 32, 32, 8, 128, 32768, 4096, 14336, 32000,
     "Apache-2.0", True),
    ("meta-llama/Llama-3.1-8B-Instruct", 8.030261248, 32, 32, 8, 128, 131072, 4096, 14336, 128256,
     "Llama 3.1 Community", True),
    ("meta-llama/Llama-3.1-70B-Instruct", 70.553706496, 80, 64, 8, 128, 131072, 8192, 28672, 128256,
     "Llama 3.1 Community", True),
    # Eight experts of intermediate size 14,336, two of them per token (num_experts_per_tok).
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 46.702792704, 32, 32, 8, 128, 32768, 4096, 2 * 14336, 32000,
     "Apache-2.0", True),
    ("Qwen/Qwen2.5-7B-Instruct", 7.615616512, 28, 28, 4, 128, 32768, 3584, 18944, 152064,
     "Apache-2.0", False),
)
# fmt: on

MODELS: Mapping[str, ModelSpec] = {
    row[0]: ModelSpec(*row, source=f"huggingface.co/{row[0]}/blob/main/config.json") for row in _CATALOG
}
