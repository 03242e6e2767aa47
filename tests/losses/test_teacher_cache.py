"""Teacher-feature cache: safetensors per utterance, validated against teacher name, layer and sample rate."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open
from transformers import HubertConfig, HubertModel

from voxtok.audio import resample
from voxtok.losses import SSLDistillation, TeacherFeatureCache

TINY = dict(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    conv_dim=(8, 8),
    conv_stride=(5, 4),
    conv_kernel=(10, 4),
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2,
)


@pytest.fixture
def distill() -> SSLDistillation:
    torch.manual_seed(0)
    return SSLDistillation(HubertModel(HubertConfig(**TINY)), 8, 16000, layer=1, name="tiny/hubert")


def _corpus() -> list[tuple[str, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    return [
        ("spk1/ch1/utt-0001", 0.1 * torch.randn(1, 2400, generator=g), 24000),  # another rate: resampled first
        ("spk1/ch1/utt-0002", 0.1 * torch.randn(1, 3200, generator=g), 16000),
        ("spk2/utt 3", 0.1 * torch.randn(2000, generator=g), 16000),
    ]


def test_precompute_matches_on_the_fly_features_and_loss(tmp_path, distill: SSLDistillation) -> None:
    cache = TeacherFeatureCache.for_teacher(tmp_path, distill)
    assert cache.precompute(distill, _corpus()) == 3
    assert cache.precompute(distill, _corpus()) == 0  # already there
    for utt_id, audio, sr in _corpus():
        x = resample(audio.reshape(1, 1, -1), sr, 16000)
        feats, lengths = distill.teacher_features(x)
        torch.testing.assert_close(cache.get(utt_id), feats[0, : int(lengths[0])])
    ids = [u for u, _, _ in _corpus()][1:]
    feats, lengths = cache.batch(ids)
    assert feats.shape[0] == 2 and lengths.tolist() == [159, 99]
    # the loss from cached features equals the loss computed with the teacher on the padded batch
    audio = torch.zeros(2, 1, 3200)
    audio[0, 0] = _corpus()[1][1][0]
    audio[1, 0, :2000] = _corpus()[2][1]
    latents = torch.randn(2, 8, 10)
    mask = torch.tensor([[True] * 10, [True] * 6 + [False] * 4])
    direct = distill(latents, audio, mask=mask, audio_lengths=torch.tensor([3200, 2000]))
    cached = distill(latents, mask=mask, teacher_features=feats, teacher_lengths=lengths)
    assert cached.item() == pytest.approx(direct.item(), abs=1e-6)


def test_files_are_safetensors_with_metadata(tmp_path, distill: SSLDistillation) -> None:
    cache = TeacherFeatureCache.for_teacher(tmp_path, distill, dtype=torch.float16)
    cache.precompute(distill, _corpus()[:1])
    files = list((tmp_path / "tiny%2Fhubert").glob("*.safetensors"))
    assert len(files) == 1 and "spk1%2Fch1%2Futt-0001" in files[0].name
    with safe_open(str(files[0]), framework="pt") as f:
        meta = f.metadata()
        assert f.get_tensor("features").dtype == torch.float16
    assert meta["teacher"] == "tiny/hubert" and meta["layer"] == "1" and meta["sample_rate"] == "16000"
    assert meta["utterance"] == "spk1/ch1/utt-0001"
    assert cache.get("spk1/ch1/utt-0001").dtype == torch.float32
    assert "spk1/ch1/utt-0001" in cache and "nope" not in cache


def test_mismatches_are_errors(tmp_path, distill: SSLDistillation) -> None:
    TeacherFeatureCache.for_teacher(tmp_path, distill).precompute(distill, _corpus()[:1])
    with pytest.raises(ValueError, match="layer='1' but '-1'"):
        TeacherFeatureCache(tmp_path, "tiny/hubert", layer="-1", sample_rate=16000)
    with pytest.raises(ValueError, match="sample_rate='16000' but '24000'"):
        TeacherFeatureCache(tmp_path, "tiny/hubert", layer="1", sample_rate=24000)
    # a file carried over from another teacher's cache is refused on read, not silently used
    other = TeacherFeatureCache(tmp_path, "other/teacher", layer="1", sample_rate=16000)
    src = next((tmp_path / "tiny%2Fhubert").glob("*.safetensors"))
    shutil.copy(src, other.path / src.name)
    with pytest.raises(ValueError, match="teacher='tiny/hubert' but 'other/teacher'"):
        other.get("spk1/ch1/utt-0001")
    # precomputing with a distillation of another layer into this cache is refused
    torch.manual_seed(0)
    layer2 = SSLDistillation(HubertModel(HubertConfig(**TINY)), 8, 16000, layer=2, name="tiny/hubert")
    cache = TeacherFeatureCache(tmp_path, "tiny/hubert", layer="1", sample_rate=16000)
    with pytest.raises(ValueError, match="layer"):
        cache.precompute(layer2, _corpus()[1:2])
    with pytest.raises(KeyError, match="no cached features"):
        cache.get("missing-utterance")
    with pytest.raises(ValueError, match=r"\[T', H\]"):
        cache.put("x", torch.zeros(2, 3, 4))
