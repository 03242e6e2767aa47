"""Encoders, decoders and discriminators: SEANet convolution stacks, a causal Transformer, the Vocos
ConvNeXt decoder with an iSTFT head, and the MPD / MRD / MS-STFT / multi-band discriminators.
"""
