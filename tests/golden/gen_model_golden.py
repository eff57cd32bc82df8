#!/usr/bin/env python3
"""tests/golden/gen_model_golden.py — writes tests/golden/model_golden.bin, the PyTorch fixture
tests/test_model_golden.c compares loco's model against.

Run once with Debian's python3-torch (`/usr/bin/python3 tests/golden/gen_model_golden.py`); the
fixture is committed, so the test itself needs no torch. The model (bench/torch_train.py's GPT)
has 3 layers, 32 wide, 4 query heads, 2 K/V heads (GQA) and kv_src = [0, 0, 2] (layer 1 reads
layer 0's K/V), so one fixture covers MHA-style producers, GQA grouping and cross-layer sharing.
Weights are random (not GPT-2's small init) so every path carries signal.

Format (little-endian): magic "LOCOGLD1"; int32 n_layer, n_embd, n_head, n_kv_head, ctx, vocab,
B, T; int32 kv_src[n_layer]; int32 n_params; float32 params[n_params] (loco's table order);
uint16 tokens[B*T]; uint16 targets[B*T]; float32 logits[B*T*vocab]; float32 loss;
float32 grads[n_params] (d loss / d params, same order).
"""
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from torch_train import GPT, loco_tensors  # noqa: E402

N_LAYER, N_EMBD, N_HEAD, N_KV_HEAD, CTX, VOCAB, B, T = 3, 32, 4, 2, 16, 64, 2, 16
KV_SRC = [0, 0, 2]


def main():
    torch.manual_seed(1234)
    model = GPT(N_LAYER, N_EMBD, N_HEAD, N_KV_HEAD, CTX, VOCAB, KV_SRC)
    with torch.no_grad():
        for name, p in loco_tensors(model):
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    tokens = torch.randint(0, VOCAB, (B, T))
    targets = torch.randint(0, VOCAB, (B, T))
    logits, loss = model(tokens, targets)
    loss.backward()
    named = loco_tensors(model)
    params = torch.cat([p.detach().reshape(-1) for _, p in named])
    grads = torch.cat([p.grad.reshape(-1) for _, p in named])
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_golden.bin")
    with open(out, "wb") as f:
        f.write(b"LOCOGLD1")
        f.write(struct.pack("<8i", N_LAYER, N_EMBD, N_HEAD, N_KV_HEAD, CTX, VOCAB, B, T))
        f.write(struct.pack(f"<{N_LAYER}i", *KV_SRC))
        f.write(struct.pack("<i", params.numel()))
        f.write(params.numpy().astype("<f4").tobytes())
        f.write(tokens.numpy().astype("<u2").tobytes())
        f.write(targets.numpy().astype("<u2").tobytes())
        f.write(logits.detach().numpy().astype("<f4").tobytes())
        f.write(struct.pack("<f", float(loss)))
        f.write(grads.numpy().astype("<f4").tobytes())
    print(f"wrote {out}: {params.numel()} parameters, loss {float(loss):.6f}")


if __name__ == "__main__":
    main()
