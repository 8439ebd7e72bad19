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

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def dense(t):
    return t.to_dense() if t is not None and t.is_sparse else t


def check_case(path):
    spec = json.load(open(os.path.join(path, "spec.json")))
    weights = torch.load(os.path.join(path, "weights.pt"))
    batch = torch.load(os.path.join(path, "batch.pt"))
    ltk = torch.load(os.path.join(path, "ltk.pt"))
    torch.manual_seed(0)
    options = dict(spec["model"], mlm=True) if spec["task"]["type"] == "mlm" else spec["model"]
    model = ltk_torch.build_model(options, spec["vocab_size"], spec["num_outputs"])
    dtype = DTYPES[spec["dtype"]]
    model.to(dtype)
    model.load_state_dict(weights, strict=True)
    # The case's tolerance, relative and absolute (the C++ test derives it for the dtype).
    tol = spec["tolerance"]
    model.train()
    problems = []

    def compare(name, ours, theirs):
        ours, theirs = dense(ours), dense(theirs)
        if ours is None and theirs is None:  # unused on both sides (the pooler of a mean-pooled BERT)
            return
        if ours is None or theirs is None:
            problems.append(f"{name}: missing ({'python' if ours is None else 'ltk'})")
        elif ours.shape != theirs.shape:
            problems.append(f"{name}: shape {tuple(ours.shape)} vs ltk {tuple(theirs.shape)}")
        elif ours.dtype != theirs.dtype:
            problems.append(f"{name}: dtype {ours.dtype} vs ltk {theirs.dtype}")
        elif not torch.allclose(ours, theirs, rtol=tol, atol=tol):
            diff = (ours - theirs).abs().max().item()
            problems.append(f"{name}: max abs diff {diff:.3g}")

    extra = {"token_types": batch["token_types"]} if "token_types" in batch else {}
    if spec["task"]["type"] == "mlm":
        extra["mlm_targets"] = batch["targets"]
    out = model(batch["ids"], batch["lengths"], batch["mask"], **extra)
    compare("outputs", out.detach(), ltk["outputs"])
    loss = ltk_torch.task_loss(spec["task"], out, batch["targets"], spec["class_weights"])
    compare("loss", loss.detach(), ltk["loss"])
    opt = ltk_torch.build_optimizer(model, spec["optimizer"])
    opt.zero_grad()
    loss.backward()
    named = model.hf_tensors(grad=True) if hasattr(model, "hf_tensors") else \
        {name: p.grad for name, p in model.named_parameters()}
    for name, g in named.items():
        compare("grad " + name, g, ltk.get("grad." + name))
    opt.step()
    named = model.hf_tensors() if hasattr(model, "hf_tensors") else \
        {name: p.detach() for name, p in model.named_parameters()}
    for name, t in named.items():
        compare("after step " + name, t, ltk.get("after." + name))
    return problems, tol


def main():
    root = sys.argv[1]
    cases = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    failed = 0
    for case in cases:
        problems, tol = check_case(os.path.join(root, case))
        print(("ok      " if not problems else "MISMATCH") + f" {case} (tolerance {tol:g})")
        for p in problems[:10]:
            print("    " + p)
        failed += bool(problems)
    print(f"parity: {len(cases) - failed} of {len(cases)} cases agree")
    sys.exit(1 if failed or not cases else 0)


if __name__ == "__main__":
    main()
