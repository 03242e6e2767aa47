"""Training: the Lightning ``CodecModule``, data modules for LibriSpeech and any audio folder, callbacks."""
