#!/usr/bin/env python3
"""bench/torch_train.py — the PyTorch twin of loco's CPU GPT, for `loco bench train` and for the
golden fixture (tests/golden/gen_model_golden.py imports GPT and loco_tensors from here).

The model matches src/model.h exactly: token + learned position embeddings, pre-LayerNorm blocks,
causal attention with n_kv_head K/V heads (query head h reads K/V head h // (n_head/n_kv_head)),
per-layer kv_src (consumer layers reuse their producer's K/V activations and have no K/V
projections), tanh-GELU MLP, final LayerNorm, output tied to the token embedding. loco_tensors()
lists the parameters under loco's tensor-table names and order.

As a benchmark: `torch_train.py --layers 4 --width 128 --heads 4 --seq 128 --batch 16 --threads 2
--steps 20` trains on random bytes (forward, backward, global-norm clip, AdamW) and prints one JSON
line: tokens_per_s, ms_per_step, torch version, threads and the BLAS library actually mapped
into the process (so a report can say whether OpenBLAS or the reference BLAS ran).
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, n_embd, n_head, n_kv_head, producer):
        super().__init__()
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.hs = n_embd // n_head
        self.q = nn.Linear(n_embd, n_embd)
        if producer:
            self.k = nn.Linear(n_embd, n_kv_head * self.hs)
            self.v = nn.Linear(n_embd, n_kv_head * self.hs)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, h, kv):
        """h (B, T, C); kv: None to compute K/V here (producer), else the producer's (k, v)."""
        B, T, C = h.shape
        if kv is None:
            kv = (self.k(h), self.v(h))
        k, v = kv
        q = self.q(h).view(B, T, self.n_head, self.hs).transpose(1, 2)
        r = self.n_head // self.n_kv_head
        k = k.view(B, T, self.n_kv_head, self.hs).transpose(1, 2).repeat_interleave(r, dim=1)
        v = v.view(B, T, self.n_kv_head, self.hs).transpose(1, 2).repeat_interleave(r, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hs))
        mask = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y), kv


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, n_kv_head, producer):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head, n_kv_head, producer)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)


class GPT(nn.Module):
    def __init__(self, n_layer, n_embd, n_head, n_kv_head, ctx, vocab, kv_src=None):
        super().__init__()
        self.kv_src = list(kv_src) if kv_src is not None else list(range(n_layer))
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(ctx, n_embd)
        self.h = nn.ModuleList(
            Block(n_embd, n_head, n_kv_head, self.kv_src[l] == l) for l in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        kv = {}
        for l, block in enumerate(self.h):
            src = self.kv_src[l]
            a, kv_l = block.attn(block.ln_1(x), None if src == l else kv[src])
            if src == l:
                kv[l] = kv_l
            x = x + a
            x = x + block.mlp(block.ln_2(x))
        logits = self.ln_f(x) @ self.wte.weight.t()
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


def loco_tensors(model):
    """[(loco name, parameter)] in loco's tensor-table order (src/model.h)."""
    out = [("wte", model.wte.weight), ("wpe", model.wpe.weight)]
    for l, b in enumerate(model.h):
        p = f"h.{l}."
        out += [(p + "ln_1.weight", b.ln_1.weight), (p + "ln_1.bias", b.ln_1.bias),
                (p + "attn.q.weight", b.attn.q.weight)]
        producer = model.kv_src[l] == l
        if producer:
            out += [(p + "attn.k.weight", b.attn.k.weight), (p + "attn.v.weight", b.attn.v.weight)]
        out += [(p + "attn.q.bias", b.attn.q.bias)]
        if producer:
            out += [(p + "attn.k.bias", b.attn.k.bias), (p + "attn.v.bias", b.attn.v.bias)]
        out += [(p + "attn.c_proj.weight", b.attn.c_proj.weight),
                (p + "attn.c_proj.bias", b.attn.c_proj.bias),
                (p + "ln_2.weight", b.ln_2.weight), (p + "ln_2.bias", b.ln_2.bias),
                (p + "mlp.c_fc.weight", b.mlp.c_fc.weight), (p + "mlp.c_fc.bias", b.mlp.c_fc.bias),
                (p + "mlp.c_proj.weight", b.mlp.c_proj.weight),
                (p + "mlp.c_proj.bias", b.mlp.c_proj.bias)]
    out += [("ln_f.weight", model.ln_f.weight), ("ln_f.bias", model.ln_f.bias)]
    return out


def blas_library():
    """torch's BLAS_INFO build setting and the BLAS shared object mapped into this process (after
    a matmul has run): Debian's torch says BLAS_INFO=generic and maps whatever libblas.so.3 the
    alternatives system points at; pip wheels link MKL statically."""
    info = "?"
    for part in torch.__config__.show().replace(",", " ").split():
        if part.startswith("BLAS_INFO="):
            info = part.split("=", 1)[1]
    mapped = "none mapped"
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in path.lower() and ".so" in path and "numpy" not in path:
                mapped = path
                break
    return f"BLAS_INFO={info}, {mapped}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=0, help="0 = heads (MHA)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(args.layers, args.width, args.heads, args.kv_heads or args.heads, args.seq,
                args.vocab)
    for name, p in loco_tensors(model):  # GPT-2 initialisation, as loco_model_init_weights
        if p.dim() >= 2:
            nn.init.normal_(p, std=0.02 / (math.sqrt(2 * args.layers) if "c_proj" in name else 1))
        elif "ln_" in name and name.endswith("weight"):
            nn.init.ones_(p)
        else:
            nn.init.zeros_(p)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1, foreach=True)
    gen = torch.Generator().manual_seed(1)
    data = torch.randint(0, args.vocab, (args.warmup + args.steps, args.batch, args.seq + 1),
                         generator=gen)
    start = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            start = time.perf_counter()
        x, y = data[step, :, :-1], data[step, :, 1:]
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    elapsed = time.perf_counter() - start
    tokens = args.steps * args.batch * args.seq
    print(json.dumps({"tokens_per_s": tokens / elapsed, "ms_per_step": 1e3 * elapsed / args.steps,
                      "loss": float(loss.detach()), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "blas": blas_library()}))


if __name__ == "__main__":
    main()
