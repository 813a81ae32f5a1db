"""A tiny random Grounding DINO, built offline from a config, for tests and the demo.

Same architecture and processor as ``IDEA-Research/grounding-dino-tiny`` (Swin backbone, BERT
text encoder, deformable encoder/decoder), shrunk to ~0.2M parameters with a 14-word vocabulary,
so the real processor and model run in a second. Its
boxes are random: tests check plumbing, never detection quality.
"""

from __future__ import annotations

from pathlib import Path

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "person", "car", "tree", "house", "cloud", "sun"]


def build_tiny_detector(out_dir: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # transformers 5's BertTokenizerFast takes the vocabulary itself (a vocab_file argument is
    # ignored, leaving every word [UNK]).
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=128,
        ),
        d_model=32,  # GroupNorm(32, d_model) needs a multiple of 32
        encoder_layers=1,
        decoder_layers=2,  # decoder box heads are tied to the first: one layer leaves nothing to tie
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=20,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=64,  # room for the 20 default labels and their dots in one prompt
        use_timm_backbone=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).save_pretrained(out)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out
