"""Fused kernels of trimo: Triton attention (needs the optional `triton` package).

`from modeling.kernels import fused_attention` raises ImportError when triton is not installed;
`modeling.attention` relies on that to fall back to SDPA.
"""
import importlib.util

if importlib.util.find_spec("triton") is not None:
    from modeling.kernels.triton_attention import fused_attention, fused_multi_source_attention

    __all__ = ["fused_attention", "fused_multi_source_attention"]
