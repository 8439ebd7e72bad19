"""ltk's loss scaler (lib/ltk/train/grad_scaler.h) against PyTorch's torch.cuda.amp.GradScaler.

Run with python3 -O on the JSON that tests/test_parity.cpp writes: the scenarios (initial scale,
growth interval, each step's inputs, some holding inf or NaN or values that overflow once scaled)
and ltk's trajectory (scale, growth count, whether the step was taken, the weights after it).

PyTorch 1.13's GradScaler runs on CUDA alone: its two kernels, _amp_foreach_non_finite_check_and_unscale_
and _amp_update_scale_, have no CPU implementation, and the class asserts that its tensors are on
CUDA. So -O strips those asserts, and the two kernels are replaced here by their CUDA kernels'
semantics (aten/src/ATen/native/cuda/AmpKernels.cu); the rest is PyTorch's own class: when it
unscales, when it skips the optimiser's step, and how it combines and updates. The model is
linear in its weights with power-of-two learning rate and momentum, so every value is exact and
the comparison is for equality on any CPU.
"""
import json
import math
import sys

import torch
import torch.cuda.amp.grad_scaler as grad_scaler


def unscale_(grads, found_inf, inv_scale):
    inv = inv_scale.item()
    for g in grads:
        if not torch.isfinite(g).all():
            found_inf.fill_(1.0)
        if inv != 1.0:
            g.mul_(inv)  # float32 times float32, as the kernel's opmath


def update_scale_(scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    if found_inf.item():
        scale.fill_(float(torch.tensor(scale.item() * backoff_factor, dtype=torch.float32)))
        growth_tracker.fill_(0)
        return scale
    successful = growth_tracker.item() + 1
    if successful == growth_interval:
        grown = float(torch.tensor(scale.item() * growth_factor, dtype=torch.float32))
        if math.isfinite(grown):
            scale.fill_(grown)
        growth_tracker.fill_(0)
    else:
        growth_tracker.fill_(successful)
    return scale


def value(v):
    return float(v) if isinstance(v, str) else v  # "nan", "inf", "-inf"


def run(scenario):
    w1 = torch.tensor(scenario["w1"], dtype=torch.float32, requires_grad=True)
    w2 = torch.tensor(scenario["w2"], dtype=torch.float32, requires_grad=True)
    opt = torch.optim.SGD([w1, w2], lr=scenario["lr"], momentum=scenario["momentum"])
    scaler = grad_scaler.GradScaler(init_scale=scenario["init_scale"], growth_interval=scenario["growth_interval"])
    if not scaler.is_enabled():  # (an assert would be stripped by -O)
        sys.exit("PyTorch's GradScaler disabled itself: its CUDA check was not replaced")
    out = []
    for step in scenario["steps"]:
        x1 = torch.tensor([value(v) for v in step["x1"]], dtype=torch.float32)
        x2 = torch.tensor([value(v) for v in step["x2"]], dtype=torch.float32)
        opt.zero_grad()
        loss = (w1 * x1).sum() + (w2 * x2).sum()
        scaler.scale(loss).backward()
        scaler.step(opt)
        found = sum(v.item() for v in scaler._per_optimizer_states[id(opt)]["found_inf_per_device"].values())
        scaler.update()
        out.append({"scale": scaler.get_scale(), "growth": scaler._get_growth_tracker(), "stepped": found == 0,
                    "w1": w1.detach().tolist(), "w2": w2.detach().tolist()})
    return out


def main():
    if __debug__:
        sys.exit("run with python3 -O (GradScaler's CUDA-only asserts must be stripped)")
    grad_scaler.amp_definitely_not_available = lambda: False
    torch._amp_foreach_non_finite_check_and_unscale_ = unscale_
    torch._amp_update_scale_ = update_scale_
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    steps = agree = 0
    for scenario in spec["scenarios"]:
        theirs = run(scenario)
        for i, (ours, ref) in enumerate(zip(scenario["ltk"], theirs)):
            steps += 1
            if ours == ref:
                agree += 1
            else:
                print(f"{scenario['name']} step {i + 1}: ltk {ours} PyTorch {ref}")
        if len(scenario["ltk"]) != len(theirs):
            print(f"{scenario['name']}: ltk ran {len(scenario['ltk'])} steps, PyTorch {len(theirs)}")
            steps += 1
        skipped = sum(not r["stepped"] for r in theirs)
        print(f"{scenario['name']}: {len(theirs)} steps, {skipped} skipped, final scale {theirs[-1]['scale']:g}")
    print(f"{agree} of {steps} steps agree")
    return 0 if agree == steps else 1


if __name__ == "__main__":
    sys.exit(main())
