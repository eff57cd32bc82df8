#!/usr/bin/env python3
"""bench/torch_gpu.py — the PyTorch baseline of `loco bench gpu`: the model of src/model.h
(GPT-2 style; n_kv_head K/V heads; cross-layer K/V sharing by --share) trained the fastest
standard PyTorch way on one GPU: torch.compile, bf16 autocast over fp32 parameters, flash
scaled-dot-product attention, fused AdamW (weight decay on matrices only), global-norm clipping,
TF32 allowed. Random tokens drawn on the GPU. Prints one JSON line: tokens_per_s, ms_per_step,
loss, torch version, device.

  torch_gpu.py --layers 12 --width 768 --heads 12 --seq 1024 --batch 16 --vocab 50304
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """Pre-LayerNorm block; a producer projects [Q | K | V] in one matmul (as loco does), a
    consumer only Q and attends with its producer's K/V."""

    def __init__(self, n_embd, n_head, n_kv_head, producer):
        super().__init__()
        self.n_head, self.n_kv_head, self.hs = n_head, n_kv_head, n_embd // n_head
        kv = n_kv_head * self.hs
        self.ln_1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, n_embd + (2 * kv if producer else 0))
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x, kv):
        B, T, C = x.shape
        h = self.qkv(self.ln_1(x))
        q = h[..., :C]
        if kv is None:
            kvd = self.n_kv_head * self.hs
            kv = (h[..., C:C + kvd], h[..., C + kvd:])
        k, v = kv
        q = q.view(B, T, self.n_head, self.hs).transpose(1, 2)
        k = k.reshape(B, T, self.n_kv_head, self.hs).transpose(1, 2)
        v = v.reshape(B, T, self.n_kv_head, self.hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=self.n_kv_head != self.n_head)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x, kv


class GPT(nn.Module):
    def __init__(self, n_layer, n_embd, n_head, n_kv_head, ctx, vocab, kv_src):
        super().__init__()
        self.kv_src = kv_src
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(ctx, n_embd)
        self.h = nn.ModuleList(
            Block(n_embd, n_head, n_kv_head, kv_src[l] == l) for l in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        kv = {}
        for l, block in enumerate(self.h):
            src = self.kv_src[l]
            x, kv_l = block(x, None if src == l else kv[src])
            if src == l:
                kv[l] = kv_l
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=0, help="0 = heads (MHA)")
    ap.add_argument("--share", type=int, default=1, help="layers per K/V group")
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", type=int, default=1)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    dev = "cuda"
    kv_src = [l - l % args.share for l in range(args.layers)]
    model = GPT(args.layers, args.width, args.heads, args.kv_heads or args.heads, args.seq,
                args.vocab, kv_src).to(dev)
    for name, p in model.named_parameters():  # GPT-2 initialisation, as loco's
        if p.dim() >= 2:
            std = 0.02 / (math.sqrt(2 * args.layers) if "proj" in name else 1)
            nn.init.normal_(p, std=std)
        elif "ln_" in name and name.endswith("weight"):
            nn.init.ones_(p)
        else:
            nn.init.zeros_(p)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step_fn = torch.compile(model) if args.compile else model

    def step():
        data = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=dev)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = step_fn(data[:, :-1], data[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(args.warmup):
        loss = step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens = args.steps * args.batch * args.seq
    print(json.dumps({"tokens_per_s": tokens / elapsed, "ms_per_step": 1e3 * elapsed / args.steps,
                      "loss": float(loss), "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(), "compiled": bool(args.compile)}))


if __name__ == "__main__":
    main()
