from __future__ import annotations

import subprocess
import sys

import voxtok


def test_no_shadowing_of_codecs_or_tokenizers() -> None:
    # Importing voxtok must leave the standard library's `codecs` and Hugging Face's `tokenizers` reachable.
    code = "import voxtok, codecs, tokenizers; print(codecs.__file__); print(tokenizers.__file__)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    codecs_file, tokenizers_file = out.strip().splitlines()
    assert "voxtok" not in codecs_file and "voxtok" not in tokenizers_file
    assert "site-packages" in tokenizers_file


def test_public_names() -> None:
    assert isinstance(voxtok.__version__, str)
    assert issubclass(voxtok.AudioError, ValueError)
    for name in ("Tokens", "QuantizerOutput", "CodecOutput"):
        assert hasattr(voxtok, name)


def test_subpackages_have_docstrings() -> None:
    import importlib

    for name in ("kernels", "quantizers", "models", "codecs", "losses", "tokenizers", "training", "eval", "demo"):
        module = importlib.import_module(f"voxtok.{name}")
        assert module.__doc__ and len(module.__doc__.strip()) > 20, name


def test_cli_help_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "voxtok.cli", "--help"], check=True, capture_output=True, text=True)
    assert "demo" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "voxtok.cli", "--version"], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == voxtok.__version__


def test_tokens_validation() -> None:
    import pytest
    import torch

    t = voxtok.Tokens(torch.zeros(2, 3, 5, dtype=torch.long), torch.tensor([5, 4]), torch.tensor([10, 8]), 75.0, 24000)
    assert t.num_codebooks == 3
    with pytest.raises(ValueError, match="int64"):
        voxtok.Tokens(torch.zeros(2, 3, 5), torch.tensor([5, 4]), torch.tensor([10, 8]), 75.0, 24000)
    with pytest.raises(ValueError, match=r"lengths must be \[B\]"):
        voxtok.Tokens(torch.zeros(2, 3, 5, dtype=torch.long), torch.tensor([5]), torch.tensor([10, 8]), 75.0, 24000)


def test_design_public_names_exist() -> None:
    # The project-wide design fixes these names; other code and users rely on them.
    import importlib

    names = {
        "voxtok": ["load", "Codec", "Tokens", "AudioError", "__version__"],
        "voxtok.audio": ["read", "write", "resample", "to_mono", "lengths_to_mask", "mel_filterbank"],
        "voxtok.kernels": ["nearest", "lookup"],
        "voxtok.models": ["SEANetEncoder", "SEANetDecoder", "CausalTransformer", "VocosDecoder", "ISTFTHead",
                          "MultiPeriodDiscriminator", "MultiResolutionDiscriminator", "MultiScaleSTFTDiscriminator",
                          "MultiBandDiscriminator"],
        "voxtok.quantizers": ["Quantizer", "QuantizerOutput", "VectorQuantizer", "ResidualVectorQuantizer",
                              "SplitResidualVectorQuantizer", "FiniteScalarQuantizer", "ResidualFSQ",
                              "IdentityQuantizer"],
        "voxtok.codecs": ["Codec", "CodecOutput", "presets", "build"],
        "voxtok.losses": ["MultiScaleMelLoss", "MultiResolutionSTFTLoss", "FeatureMatchingLoss", "SSLDistillation",
                          "LMDistillation"],
    }
    for module, attrs in names.items():
        m = importlib.import_module(module)
        missing = [a for a in attrs if not hasattr(m, a)]
        assert not missing, f"{module} lacks {missing}"


def test_import_voxtok_stays_light() -> None:
    code = (
        "import sys, voxtok, voxtok.models, voxtok.codecs\n"
        "print(sorted(m for m in ('transformers', 'lightning', 'triton') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
