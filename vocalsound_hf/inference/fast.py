"""The fast CPU path: AST's encoder layers rebuilt for inference with int8 linear layers and bf16 attention.

``fast_layers(model)`` replaces every encoder layer of an ``ASTForAudioClassification`` by a ``_FastLayer``;
the model then gives logits and ``pooler_output`` only.
"""

from __future__ import annotations

import warnings

import torch

# AST's classifier reads the last layer's [CLS] and distillation tokens only (``pooler_output``).
POOLED_TOKENS = 2
# Heads per batched product in ``_bf16_attention``: 4 keeps each block's scores (2.9 MB at 602 tokens) small
# enough for the allocator to reuse instead of faulting in fresh pages; measured 2x faster than all 12 at once.
_HEADS_PER_BLOCK = 4


class _Int8Linear(torch.nn.Module):
    """``nn.Linear`` with int8 weights (one scale per output channel) and int8 activations quantised on every
    call, one scale per clip, through PyTorch's dynamic int8 kernels.

    Built here rather than by ``torch.ao``'s ``quantize_dynamic`` for three settings it does not expose:
    - oneDNN kernels: they allocate no fresh pages per call, where fbgemm's fault in ~26 MB per forward pass
      of AST base; measured ~10 % faster.
    - All 8 activation bits where the CPU has VNNI: ``quantize_dynamic``'s modules always use 7
      (``reduce_range``), which keeps pre-VNNI kernels from overflowing their 16-bit pair sums; VNNI sums in
      32 bits. The extra bit halves the activations' rounding error
      (``test_int8_linear_uses_every_activation_bit_the_cpu_allows``).
    - One activation scale per clip rather than per batch, so that a clip's logits do not depend on the clips
      batched with it.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = weight.detach().float()
        # Symmetric per-channel scales, as torch.ao's per-channel weight observer sets them.
        scale = (weight.abs().amax(dim=1) / 127.5).clamp_min(torch.finfo(torch.float32).eps)
        engine = torch.backends.quantized.engine
        with warnings.catch_warnings():
            # Quantized tensors are deprecated in favour of torchao, which this project does not depend on;
            # they still work in the pinned torch, so the warning is only noise for users.
            warnings.filterwarnings("ignore", message=r".*quantize_per_tensor")
            qweight = torch.quantize_per_channel(
                weight, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8
            )
            # The packed weights carry their engine's kernels; the global setting is restored at once.
            if "onednn" in torch.backends.quantized.supported_engines:
                torch.backends.quantized.engine = "onednn"
            try:
                self.packed = torch.ops.quantized.linear_prepack(
                    qweight, None if bias is None else bias.detach().float()
                )
            finally:
                torch.backends.quantized.engine = engine
        self.reduce_range = not torch.cpu._is_vnni_supported()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:  # no copy through torch.cat: its fresh pages would cost as much as it saves
            return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)
        return torch.cat(
            [torch.ops.quantized.linear_dynamic(clip, self.packed, self.reduce_range) for clip in x.split(1)]
        )


def _bf16_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Softmax attention (queries already scaled) with bf16 matrix products, ``[batch, tokens, hidden]`` float32.

    On a CPU with AVX512-BF16 the two products run at twice the float32 rate; ``sdpa``'s bf16 kernel does not
    gain that at AST's 602 tokens, where this measured ~1.4x as fast per layer as fp32 ``sdpa``. The softmax
    is computed in float32 from the bf16 scores.
    """
    batch, heads, _, head_dim = query.shape

    def bf16(states: torch.Tensor) -> torch.Tensor:
        # One contiguous [batch * heads] stack each: the products run ~2x slower on the strided head views. The
        # keys' transpose stays a view, which costs the product nothing.
        return states.to(torch.bfloat16, memory_format=torch.contiguous_format).flatten(0, 1)

    query, key, value = bf16(query), bf16(key), bf16(value)
    context = torch.cat(
        [
            torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
            for q, k, v in zip(*(t.split(_HEADS_PER_BLOCK) for t in (query, key, value)))
        ]
    )
    context = context.view(batch, heads, -1, head_dim).transpose(1, 2)
    return context.to(torch.float32, memory_format=torch.contiguous_format).flatten(2)


class _FastLayer(torch.nn.Module):
    """An ``ASTLayer`` for inference: int8 linear layers, one fused query/key/value projection with the
    attention scale folded into the queries' weights, GELU in place, and bf16 attention (fp32 ``sdpa`` where
    the CPU lacks AVX512-BF16).

    With ``pooled_only`` (for the last layer) only the pooled tokens' outputs are computed: the classifier
    discards the others, so their queries, attention rows, output projection and MLP are skipped (~80 % of the
    layer's work) while their keys and values still enter the attention. ``last_hidden_state`` then holds the
    pooled tokens only.
    """

    def __init__(self, layer: torch.nn.Module, *, pooled_only: bool):
        super().__init__()
        attention = layer.attention
        self.num_heads, self.head_dim = attention.num_attention_heads, attention.head_dim
        self.pooled_only = pooled_only
        self.bf16_attention = torch.cpu._is_avx512_bf16_supported()
        self.layernorm_before, self.layernorm_after = layer.layernorm_before, layer.layernorm_after
        q, k, v = attention.q_proj, attention.k_proj, attention.v_proj
        query_weight = q.weight * attention.scaling
        query_bias = None if q.bias is None else q.bias * attention.scaling
        if pooled_only:
            self.query = _Int8Linear(query_weight, query_bias)
            weights, biases = [k.weight, v.weight], [k.bias, v.bias]
        else:
            weights, biases = [query_weight, k.weight, v.weight], [query_bias, k.bias, v.bias]
        # One matrix product for all of them: per-channel weight scales and one activation scale per clip make
        # it the same computation as separate products.
        self.projection = _Int8Linear(torch.cat(weights), None if q.bias is None else torch.cat(biases))
        self.output = _Int8Linear(attention.o_proj.weight, attention.o_proj.bias)
        self.fc1 = _Int8Linear(layer.mlp.fc1.weight, layer.mlp.fc1.bias)
        self.fc2 = _Int8Linear(layer.mlp.fc2.weight, layer.mlp.fc2.bias)

    def _heads(self, states: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
        """``[batch, tokens, count * hidden]`` as ``count`` tensors ``[batch, heads, tokens, head_dim]``."""
        batch, tokens, _ = states.shape
        return (
            states.view(batch, tokens, count, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        )

    # Inference only: the int8 kernels have no gradient, and outside no_grad the in-place GELU would meet
    # their outputs as views of tensors that require one.
    @torch.no_grad()
    def forward(self, hidden_states: torch.Tensor, attention_mask=None, **kwargs) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError(
                "the fast path takes no attention_mask: AST pads its features, every frame is attended"
            )
        normed = self.layernorm_before(hidden_states)
        if self.pooled_only:
            (query,) = self._heads(self.query(normed[:, :POOLED_TOKENS]), 1)
            key, value = self._heads(self.projection(normed), 2)
            hidden_states = hidden_states[:, :POOLED_TOKENS]
        else:
            query, key, value = self._heads(self.projection(normed), 3)
        if self.bf16_attention:
            context = _bf16_attention(query, key, value)
        else:
            context = torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=1.0)
            context = context.transpose(1, 2).flatten(2)
        hidden_states = self.output(context) + hidden_states
        # In place: the 3072-wide activations need no second buffer, whose fresh pages would be faulted in on
        # every layer.
        return self.fc2(torch.ops.aten.gelu_(self.fc1(self.layernorm_after(hidden_states)))) + hidden_states


def fast_layers(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every encoder layer of an AST model by a ``_FastLayer``, the last one for the pooled tokens only:
    the fast CPU path. The model then gives logits and ``pooler_output`` only.

    The classifier head stays fp32: it is one small matrix, so quantising it saves nothing and moves the
    logits most directly. Agreement with fp32 and the speed-up are measured by the benchmark suite
    (``benchmarks/``, reported in BENCHMARKS.md).
    """
    layers = model.audio_spectrogram_transformer.layers
    for index, layer in enumerate(layers):
        layers[index] = _FastLayer(layer, pooled_only=index == len(layers) - 1)
    return model
