"""Diffusion pipelines from small configs, offline on the CPU: an unconditional DDPM and a
text-to-image Stable Diffusion pipeline (UNet, VAE, CLIP text encoder and a CLIP tokenizer
made from open_clip's bundled BPE), saved and loaded back with from_pretrained."""

import gzip
import json
import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import open_clip
import torch
from diffusers import (
                       AutoencoderKL,
                       DDIMScheduler,
                       DDPMPipeline,
                       DDPMScheduler,
                       StableDiffusionPipeline,
                       UNet2DConditionModel,
                       UNet2DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

torch.manual_seed(0)
work = Path(tempfile.mkdtemp(prefix="genai-diffusion-"))

# 1. Unconditional DDPM.
unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                   block_out_channels=(8, 16), norm_num_groups=4,
                   down_block_types=("DownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "UpBlock2D"))
DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50)).save_pretrained(
    work / "ddpm")
ddpm = DDPMPipeline.from_pretrained(work / "ddpm", local_files_only=True)
image = ddpm(batch_size=1, num_inference_steps=5, generator=torch.manual_seed(0)).images[0]
assert image.size == (16, 16), image.size
print("ddpm ok", image.size)

# 2. Text to image: a CLIP tokenizer from the BPE merges open_clip ships (the same
# vocabulary as OpenAI's CLIP), so nothing is downloaded.
bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
merges = gzip.decompress(bpe.read_bytes()).decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
byte_chars = open_clip.tokenizer.bytes_to_unicode().values()
vocab = list(byte_chars) + [c + "</w>" for c in byte_chars]
vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
(work / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
(work / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
tokenizer = CLIPTokenizer(str(work / "vocab.json"), str(work / "merges.txt"),
                          model_max_length=77)
assert tokenizer("a cat").input_ids[1:-1] == open_clip.tokenize(["a cat"])[0][1:3].tolist()

text_encoder = CLIPTextModel(CLIPTextConfig(
    vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
    num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
    bos_token_id=len(vocab) - 2, eos_token_id=len(vocab) - 1))
cond_unet = UNet2DConditionModel(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64), norm_num_groups=32, cross_attention_dim=32,
    attention_head_dim=8,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                    block_out_channels=(32, 64), norm_num_groups=32, sample_size=16,
                    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"))
sd = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                             unet=cond_unet, scheduler=DDIMScheduler(), safety_checker=None,
                             feature_extractor=None, requires_safety_checker=False)
sd.save_pretrained(work / "tiny-sd")
sd = StableDiffusionPipeline.from_pretrained(work / "tiny-sd", local_files_only=True)
out = sd("a photo of a cat", height=16, width=16, num_inference_steps=3,
         generator=torch.manual_seed(0)).images[0]
assert out.size == (16, 16), out.size
print("stable diffusion (tiny) ok", out.size)
