"""Measure what one training step of a checkpoint's architecture holds in CPU memory (peak RSS).

    MALLOC_MMAP_THRESHOLD_=131072 python -m r1ov.testing.memory_probe MODEL_DIR SEQUENCES TOKENS [checkpointing]

The stand-in for ``torch.cuda.max_memory_allocated`` on a machine without a GPU: random fp32
weights from the checkpoint's config, AdamW, two forward/backward/steps on a text-only batch
(images are left out), and the growth of resident memory from just before the model is built to
the peak. Prints ``{"bytes": ...}``. Code and kernels loaded on first use are not training
memory: a warm-up step of a one-layer copy of the architecture loads them before the baseline.

The peak is this process's own: the high-water mark of its address space (``VmHWM`` in
``/proc/self/status``), reset just before the baseline by writing ``5`` to
``/proc/self/clear_refs`` (proc(5), Linux 4.0+). ``getrusage``'s ``ru_maxrss`` is not: exec folds
the high-water mark of the address space it replaces into it (torvalds/linux fs/exec.c,
``exec_mmap()`` -> ``setmax_mm_hiwater_rss(&tsk->signal->maxrss, old_mm)``), and a child that
Python's subprocess starts with vfork replaces its parent's, so a probe started from a test
process that had grown past the probe's own peak measured the parent's peak instead.

A fixed glibc mmap threshold (the environment variable above, read at start-up) keeps large
tensors in their own mappings, returned when freed; glibc's dynamic threshold otherwise lets the
measured step reuse or strand heap memory differently from run to run (mallopt(3)).

What it does not model: images (the vision tower's activations), the GPU allocator's caching
and fragmentation, and DeepSpeed's buffers; resident pages of the CPU allocator stand in for
CUDA's allocated bytes.
"""

from __future__ import annotations

import copy
import gc
import json
import sys
from collections.abc import Callable
from typing import Any


def _status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``: resident now, ``VmHWM``: its peak), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> None:
    """Start this process's resident-memory high-water mark afresh from what it holds now."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_growth(work: Callable[[], object]) -> int:
    """Bytes by which this process's resident memory peaked above its level just before ``work``."""
    gc.collect()
    reset_peak()
    before = _status_bytes("VmRSS")
    work()
    return _status_bytes("VmHWM") - before


def _build(config: Any) -> Any:
    """Random weights written in place: resident memory grows by the weights alone (a plain random
    init leaves its temporaries in the allocator, which no checkpoint load does)."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, attn_implementation="sdpa")
    model = model.to_empty(device="cpu").train()
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.normal_(0, 0.02) if tensor.is_floating_point() else tensor.zero_()
    return model


def _step(model: Any, input_ids: Any, checkpointing: bool) -> None:
    import torch

    if checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=False)
    for _ in range(2):  # the second step runs with the optimizer states the first one created
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        optimizer.step()
        model.zero_grad()  # as the Trainer does between steps (gradients freed)


def main(argv: list[str]) -> int:
    import torch
    from transformers import AutoConfig

    model_dir, sequences, tokens = argv[0], int(argv[1]), int(argv[2])
    checkpointing = argv[3:] == ["checkpointing"]
    torch.set_num_threads(1)
    config = AutoConfig.from_pretrained(model_dir)
    input_ids = torch.randint(0, config.text_config.vocab_size, (sequences, tokens))
    small = copy.deepcopy(config)
    small.text_config.num_hidden_layers = 1
    small.text_config.layer_types = small.text_config.layer_types[:1]
    _step(_build(small), input_ids[:, :8], checkpointing)  # loads code and kernels
    grown = peak_growth(lambda: _step(_build(config), input_ids, checkpointing))
    print(json.dumps({"bytes": grown}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
