"""Tiny random-weight backbones of each family (CLIP, SigLIP), saved with ``save_pretrained`` so they
load by the same code path as real ones.

Tests and the offline demo run on them; benchmarks use ViT-B/32's shape, since speed ignores weight
values, with CLIP's real BPE vocabulary so that tweets tokenize as with the real CLIP.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from msc.core.errors import UserError
from msc.core.owned import SAMPLE_MARK, mark
from msc.data.synthetic import CUE_WORDS, FILLER_WORDS

TINY = dict(text_hidden=128, text_layers=2, text_heads=2, vision_hidden=64, vision_layers=2, vision_heads=2,
            projection=128)
SHAPES = {
    # Tiny: the demo runs in seconds. Same 224 px / 32 px patch grid as ViT-B/32.
    # Text is 128 wide: at 64, random-weight pooled text states hid a fifth of the word cues.
    "tiny": dict(TINY, image_size=224, patch_size=32),
    # The tests' backbone: tiny, on 32 px images in 8 px patches (a 4 x 4 grid, as the 7 x 7 one keeps a
    # colour cue). With the tests' small images (synthetic.write_dataset's image_scale) it took the fast
    # tier from about 130 s of CPU to about 90: resizing, normalising and patching 224 px images was a third.
    "tiny-32px": dict(TINY, image_size=32, patch_size=8),
    # ViT-B/32's shape with random weights: for benchmarks, since speed ignores weight values.
    "vit-b-32": dict(text_hidden=512, text_layers=12, text_heads=8, vision_hidden=768, vision_layers=12,
                     vision_heads=12, projection=512, image_size=224, patch_size=32),
}


def build_tokenizer(words: list[str]):
    """A CLIP byte-level BPE tokenizer whose merges spell ``words`` as single tokens."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 byte symbols
    vocab = {symbol: i for i, symbol in enumerate(alphabet + [s + "</w>" for s in alphabet])}
    merges = []
    for word in sorted(set(w.lower() for w in words)):
        current = word[0]
        for position, char in enumerate(word[1:], start=1):
            following = char + ("</w>" if position == len(word) - 1 else "")
            if current + following not in vocab:
                merges.append((current, following))
                vocab[current + following] = len(vocab)
            current += following
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def load_bpe_tokenizer(folder: Path):
    """CLIP's tokenizer from a folder with its ``vocab.json`` and ``merges.txt`` (data, no weights)."""
    from transformers import CLIPTokenizer

    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    if not vocab_file.is_file() or not merges_file.is_file():
        raise UserError(f"--tokenizer '{folder}' needs vocab.json and merges.txt, CLIP's BPE files (for example "
                        "../shared/clip-bpe, or the two files of openai/clip-vit-base-patch32)")
    lines = merges_file.read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
    return CLIPTokenizer(vocab=json.loads(vocab_file.read_text(encoding="utf-8")), merges=merges)


FAMILIES = ("clip", "siglip")


def sample_words() -> list[str]:
    """The sample's vocabulary: its cue and filler words and the tweet placeholders."""
    return [w for ws in CUE_WORDS.values() for w in ws] + FILLER_WORDS + ["user", "http", "rt"]


def write_backbone(out: Path, shape: str, seed: int, tokenizer_folder: Path | None = None,
                   family: str = "clip") -> None:
    """Save a random-weight backbone of ``family`` with tokenizer and processor, loadable by from_pretrained.

    The CLIP's tokenizer is the sample's small vocabulary, or CLIP's real BPE from ``tokenizer_folder``,
    so that a benchmark backbone splits real tweets into as many tokens as the real CLIP does.
    """
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if family != "clip" and tokenizer_folder is not None:
        raise UserError(f"--tokenizer is CLIP's BPE, and --backbone-family is {family}; leave out --tokenizer")
    torch.manual_seed(seed)
    dims = SHAPES[shape]
    model, processor = clip_backbone(dims, tokenizer_folder) if family == "clip" else siglip_backbone(dims)
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    mark(staging, SAMPLE_MARK, "sample")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def clip_backbone(dims: dict, tokenizer_folder: Path | None) -> tuple:
    """A random CLIPModel of shape ``dims`` and its CLIPProcessor."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = build_tokenizer(sample_words()) if tokenizer_folder is None else load_bpe_tokenizer(tokenizer_folder)
    special = {
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=dims["text_hidden"], intermediate_size=4 * dims["text_hidden"],
            num_hidden_layers=dims["text_layers"], num_attention_heads=dims["text_heads"],
            max_position_embeddings=77, **special,
        ),
        vision_config=dict(
            hidden_size=dims["vision_hidden"], intermediate_size=4 * dims["vision_hidden"],
            num_hidden_layers=dims["vision_layers"], num_attention_heads=dims["vision_heads"],
            image_size=dims["image_size"], patch_size=dims["patch_size"],
        ),
        projection_dim=dims["projection"],
        msc_random_weights=True,  # read by describe_backbone: reports made with it say so
    )
    side = dims["image_size"]
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return CLIPModel(config), CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def siglip_backbone(dims: dict) -> tuple:
    """A random SiglipModel and its SiglipProcessor, with a word-level tokenizer of the sample's words
    (SigLIP's own is a SentencePiece model, which needs a download). Both towers get the text width:
    SigLIP's text and image features share one width, with no projection layers."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    vocab = {token: i for i, token in enumerate(["<pad>", "</s>", "<unk>", *sorted(set(sample_words()))])}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.normalizer, words.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    words.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])  # as SigLIP's
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    width = dims["text_hidden"]
    tower = dict(hidden_size=width, intermediate_size=4 * width)
    config = SiglipConfig(
        text_config=dict(vocab_size=len(vocab), num_hidden_layers=dims["text_layers"],
                         num_attention_heads=dims["text_heads"], max_position_embeddings=64,  # SigLIP's length
                         pad_token_id=0, eos_token_id=1, bos_token_id=None, **tower),
        vision_config=dict(num_hidden_layers=dims["vision_layers"], num_attention_heads=dims["text_heads"],
                           image_size=dims["image_size"], patch_size=dims["patch_size"], **tower),
        msc_random_weights=True,
    )
    image_processor = SiglipImageProcessorPil(size={"height": dims["image_size"], "width": dims["image_size"]})
    return SiglipModel(config), SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
