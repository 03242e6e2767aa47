"""Quantizers: VQ, RVQ (and Mimi's split RVQ), FSQ (and residual FSQ), a pass-through; codebook balancing.

Every quantizer follows one contract (``Quantizer`` in ``base.py``): ``forward(z [B, D, T], mask [B, T])``
returns a ``QuantizerOutput``; ``encode`` / ``decode`` map latents to ``[B, Q, T]`` int64 codes and back.
"""
