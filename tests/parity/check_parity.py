"""Checks ltk against PyTorch: for each case directory written by the C++ parity test, rebuild
the model in Python from the same initial weights, run the same batch through the five steps and
compare outputs, loss, every gradient and every parameter after one optimiser step.
Usage: /usr/bin/python3 check_parity.py CASES_DIR     (exit 0 when every case agrees)"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import ltk_torch  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


def dense(t):
    return t.to_dense() if t is not None and t.is_sparse else t


def check_case(path):
    spec = json.load(open(os.path.join(path, "spec.json")))
    weights = torch.load(os.path.join(path, "weights.pt"))
    batch = torch.load(os.path.join(path, "batch.pt"))
    ltk = torch.load(os.path.join(path, "ltk.pt"))
    torch.manual_seed(0)
    model = ltk_torch.build_model(spec["model"], spec["vocab_size"], spec["num_outputs"])
    model.load_state_dict(weights, strict=True)
    model.train()
    problems = []

    def compare(name, ours, theirs):
        ours, theirs = dense(ours), dense(theirs)
        if ours is None or theirs is None:
            problems.append(f"{name}: missing ({'python' if ours is None else 'ltk'})")
        elif ours.shape != theirs.shape:
            problems.append(f"{name}: shape {tuple(ours.shape)} vs ltk {tuple(theirs.shape)}")
        elif not torch.allclose(ours, theirs, rtol=RTOL, atol=ATOL):
            diff = (ours - theirs).abs().max().item()
            problems.append(f"{name}: max abs diff {diff:.3g}")

    out = model(batch["ids"], batch["lengths"], batch["mask"])
    compare("outputs", out.detach(), ltk["outputs"])
    loss = ltk_torch.task_loss(spec["task"], out, batch["targets"], spec["class_weights"])
    compare("loss", loss.detach(), ltk["loss"])
    opt = ltk_torch.build_optimizer(model, spec["optimizer"])
    opt.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        compare("grad " + name, p.grad, ltk.get("grad." + name))
    opt.step()
    for name, p in model.named_parameters():
        compare("after step " + name, p.detach(), ltk.get("after." + name))
    return problems


def main():
    root = sys.argv[1]
    cases = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    failed = 0
    for case in cases:
        problems = check_case(os.path.join(root, case))
        print(("ok      " if not problems else "MISMATCH") + " " + case)
        for p in problems[:10]:
            print("    " + p)
        failed += bool(problems)
    print(f"parity: {len(cases) - failed} of {len(cases)} cases agree (rtol {RTOL}, atol {ATOL})")
    sys.exit(1 if failed or not cases else 0)


if __name__ == "__main__":
    main()
