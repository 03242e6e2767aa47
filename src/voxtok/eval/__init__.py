"""Evaluation: reconstruction and intelligibility metrics (PESQ, STOI, WER, DNSMOS) and reports."""
