"""The `padrec` command line: one subcommand per module, each module owning its arguments.

A command module exposes `add_arguments(parser)` and `run(args) -> int`; this file only wires them
together, so adding a command never touches another command's code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> (module path, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("padrec.server", "start a Triton server on a model repository"),
    "cluster": ("padrec.cluster", "start several Triton replicas on one model repository, restarting any that dies"),
    "prepare": ("padrec.commands.prepare", "build a dataset's split and semantic IDs"),
    "train-target": ("padrec.commands.train_target", "train the target recommender"),
    "eval": ("padrec.commands.evaluate", "Recall/NDCG of the target's generated lists"),
    "tune-prior": ("padrec.commands.tune_prior", "choose a dataset's prefix-size prior on validation lists"),
    "train-draft": ("padrec.commands.train_draft", "train drafts (EAGLE-style, PAD-Rec, ablations) by self-distillation"),
    "bench": ("padrec.commands.bench", "offline speed and acceptance: plain vs speculative decoding"),
    "bench-gpu": ("padrec.commands.bench_gpu", "plain vs speculative decoding on a GPU, by precision and batch size"),
    "verify": ("padrec.commands.verify", "greedy speculative lists against plain greedy lists on a whole test set"),
    "verify-beam": ("padrec.commands.verify_beam", "speculative beam search against plain beam search, with its speed"),
    "forward-costs": ("padrec.commands.forward_costs", "a target forward against a draft step at batch 1, per target shape"),
    "draft-signals": ("padrec.commands.draft_signals", "how much a PAD-Rec draft uses its position terms"),
    "export": ("padrec.commands.export", "target and draft to ONNX / TensorRT, checked, as a Triton model repository"),
    "tables": ("padrec.commands.tables", "markdown tables of the committed results"),
    "restore-artifacts": ("padrec.commands.restore_artifacts", "bring back the trained models archived in git history"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="padrec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_path, help_text) in COMMANDS.items():
        module = importlib.import_module(module_path)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
