"""Build each stage's TRL trainer settings with whichever transformers and TRL this interpreter
imports, and print what they became as JSON.

tests/test_trainer_stack.py runs it once per image, with that image's trainer stack first on
``sys.path``: the settings pass through the production functions (``sft.trl_fields``,
``grpo.trl_fields``, ``common.build_arguments``) exactly as a worker in that image builds them.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any


def _stages(out: str) -> dict[str, tuple[str, Any]]:
    from r1ov.config import GRPOConfig, SFTConfig
    from r1ov.train import common, grpo, sft

    runtime = common.Runtime(cuda=False, backend="gloo", rank=0, local_rank=0, world_size=1)
    base = {"model_name_or_path": "m", "train_uri": "t", "output_dir": out, "track": False}
    base |= {"gradient_checkpointing": True, "distributed": {"deepspeed": "none"}}
    server = GRPOConfig(
        **base,
        generation="vllm-server",
        vllm_server_base_url="http://r1ov-rollout:8000",
        trl={"epsilon_high": 0.28, "mask_truncated_completions": True},
    )
    return {
        "sft": ("SFTConfig", sft.trl_fields(SFTConfig(**base), runtime)),
        "grpo-vllm-server": ("GRPOConfig", grpo.trl_fields(server, runtime)),
        "grpo-hf": ("GRPOConfig", grpo.trl_fields(GRPOConfig(**base, generation="hf"), runtime)),
    }


def main(out: str) -> dict[str, Any]:
    import transformers
    import trl
    from trl.generation.vllm_client import VLLMClient

    from r1ov.train import common

    report: dict[str, Any] = {"transformers": transformers.__version__, "trl": trl.__version__, "stages": {}}
    # The GRPO trainer opens its rollout client with the server URL, timeout and group port
    # (trl/generation/vllm_generation.py, VLLMGeneration: VLLMClient(base_url=..., connection_timeout=...)).
    client_parameters = inspect.signature(VLLMClient.__init__).parameters
    report["vllm_client_parameters"] = sorted({"base_url", "group_port", "connection_timeout"} & set(client_parameters))
    for stage, (class_name, fields) in _stages(out).items():
        config_class = getattr(trl, class_name)
        kept = common.known_fields(config_class, fields)
        args = config_class(**kept)  # the TypeError a worker would raise, raised here
        renamed = {old: new for old, new in common.RENAMED_FIELDS.items() if old in fields and new in kept}
        values = {name: getattr(args, renamed.get(name, name)) for name in fields}
        report["stages"][stage] = {
            "dropped": sorted(set(fields) - set(kept) - set(renamed)),
            "renamed": renamed,
            # what each setting became, read back from the built config (JSON-able ones only)
            "mismatched": sorted(
                name
                for name, value in fields.items()
                if isinstance(value, bool | int | float | str) and values[name] != value
            ),
        }
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
