"""Training losses: multi-scale mel and multi-resolution STFT reconstruction, adversarial and feature
matching, SSL distillation from speech models and LM distillation from text models.
"""
