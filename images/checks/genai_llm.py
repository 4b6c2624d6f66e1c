"""A causal language model end to end, offline, on the CPU, from nothing downloaded: a
SentencePiece tokenizer trained here, a tiny Llama from its config, a few training steps
with accelerate on a datasets.Dataset, saved as safetensors and loaded back with
from_pretrained / pipeline() with the Hub offline; open_clip's tokenizer and a tiny CLIP."""

import io
import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # the check must not reach for the Hub

import huggingface_hub
import open_clip
import sentencepiece as spm
import torch
from accelerate import Accelerator
from datasets import Dataset
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizer,
    pipeline,
)

hf_home = os.environ.get("HF_HOME", "")
print("HF_HOME", hf_home, "cache", huggingface_hub.constants.HF_HUB_CACHE)
if hf_home:  # the lab's shared cache volume, where `labctl data get hf:` puts models
    assert huggingface_hub.constants.HF_HUB_CACHE.startswith(hf_home)
assert huggingface_hub.constants.HF_HUB_OFFLINE

torch.manual_seed(0)
text = "the cat sat on the mat. the dog sat on the log. " * 4
sentences = [text, "a small model learns a short sentence.", "hello world from the lab."]
work = Path(tempfile.mkdtemp(prefix="genai-llm-"))
model_bytes = io.BytesIO()
spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences * 20), model_writer=model_bytes,
                               vocab_size=48, model_type="bpe", character_coverage=1.0,
                               hard_vocab_limit=False, bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
(work / "spm.model").write_bytes(model_bytes.getvalue())
tok = LlamaTokenizer(vocab_file=str(work / "spm.model"), legacy=False)
print("sentencepiece vocabulary:", tok.vocab_size)

cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
model = LlamaForCausalLM(cfg)
print("parameters:", sum(p.numel() for p in model.parameters()))

target = "the cat sat on the mat."
ds = Dataset.from_dict({"text": [target] * 32}).map(
    lambda b: tok(b["text"]), batched=True, remove_columns=["text"])
ds.set_format("torch")
loader = torch.utils.data.DataLoader(ds, batch_size=8)
acc = Accelerator(cpu=True)
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
model, opt, loader = acc.prepare(model, opt, loader)
model.train()
for _ in range(15):
    for batch in loader:
        loss = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
        acc.backward(loss)
        opt.step()
        opt.zero_grad()
print("final loss", loss.item())
assert loss.item() < 0.5, f"the tiny model did not learn its sentence: loss {loss.item()}"

out = work / "tiny-llama"
acc.unwrap_model(model).save_pretrained(out, safe_serialization=True)
tok.save_pretrained(out)
assert (out / "model.safetensors").is_file(), sorted(p.name for p in out.iterdir())
assert "model.embed_tokens.weight" in load_file(out / "model.safetensors")

again = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
tok2 = AutoTokenizer.from_pretrained(out, local_files_only=True, use_fast=False)
gen = pipeline("text-generation", model=again, tokenizer=tok2, device="cpu")
said = gen("the cat", max_new_tokens=12, do_sample=False)[0]["generated_text"]
print("generated:", said)
assert said.startswith("the cat sat on"), said

# open_clip: its own BPE tokenizer (shipped in the package) and a tiny CLIP from a config.
otok = open_clip.get_tokenizer("ViT-B-32")
ids = otok(["a photo of a cat", "a diagram"])
assert ids.shape == (2, 77), ids.shape
clip = open_clip.CLIP(embed_dim=32,
                      vision_cfg={"layers": 1, "width": 32, "patch_size": 8, "image_size": 32,
                                  "head_width": 16},
                      text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32,
                                "heads": 2, "layers": 1})
with torch.no_grad():
    img = clip.encode_image(torch.randn(2, 3, 32, 32))
    txt = clip.encode_text(ids)
assert img.shape == txt.shape == (2, 32), (img.shape, txt.shape)
print("open_clip", open_clip.__version__, "ok")
