"""`lmforge VERB [--config recipe.yaml] [--dotted.key value ...]`.

Every option of every verb is generated from that verb's config dataclass in
``lmforge.config``, so `--help`, the YAML recipes and the Python API cannot drift apart.
A string option takes the text exactly as typed; other options are read with YAML rules
(``lmforge.config.parse_override``). User mistakes (``LmforgeError``) print one line and exit
with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

from lmforge import config as C
from lmforge.errors import ConfigError, LmforgeError
from lmforge.sweep.config import SweepConfig


@dataclass(frozen=True)
class Verb:
    config_cls: type
    run: Callable[[Any], Any]
    summary: str
    positional: Optional[str] = None  # a field that may also be given as the first argument


def _run_prepare(cfg: C.PrepareConfig) -> None:
    from lmforge.data import prepare

    stats = prepare(cfg)
    skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(stats["skipped"].items())) or "none"
    print(f"read {stats['read']} = kept {stats['kept']} + skipped {sum(stats['skipped'].values())} "
          f"({skipped}); wrote {cfg.out_dir}")


def _run_tokenizer(cfg: C.TokenizerConfig) -> None:
    from lmforge.tokenize.documents import train_tokenizer_on_documents

    tokenizer = train_tokenizer_on_documents(cfg)
    print(f"trained {cfg.kind} tokenizer with {tokenizer.vocab_size} tokens -> {cfg.out_dir} "
          f"(fingerprint {tokenizer.fingerprint()})")


def _run_encode(cfg: C.EncodeConfig) -> None:
    from lmforge.data import encode_documents

    meta = encode_documents(cfg)
    for split, info in meta["splits"].items():
        print(f"{split}: {info['num_docs']:,} documents, {info['num_tokens']:,} tokens, "
              f"{info['num_bytes']:,} bytes ({info['num_bytes'] / max(info['num_tokens'], 1):.2f} bytes/token)")
    print(f"wrote {cfg.out_dir} ({meta['dtype']})")


def _run_pretrain(cfg: C.PretrainConfig) -> None:
    from lmforge.train.loop import pretrain

    summary = pretrain(cfg)
    if summary:
        figures = ", ".join(f"{key.replace('_', ' ')} {value:.4f}" for key, value in summary.items()
                            if key.startswith("val_") and key != "val_tokens" and isinstance(value, float))
        print(f"{figures}; {summary['tokens_per_second']:,.0f} tokens/s; checkpoint {summary['checkpoint']}")


def _run_finetune(cfg: C.FinetuneConfig) -> None:
    from lmforge.finetune.run import finetune

    summary = finetune(cfg)
    if summary:
        figures = ", ".join(f"{key.replace('_', ' ')} {value:.4f}" for key, value in summary.items()
                            if key.startswith("val_") and key != "val_tokens" and isinstance(value, float))
        merged = f"; merged {summary['merged_checkpoint']}" if "merged_checkpoint" in summary else ""
        print(f"{figures}; {summary['tokens_per_second']:,.0f} tokens/s; checkpoint {summary['checkpoint']}{merged}")


def _run_sweep(cfg: SweepConfig) -> None:
    from lmforge.sweep.run import run_sweep

    run_sweep(cfg)  # a line per trial, the results table, then the summary as one JSON line


def _run_evaluate(cfg: C.EvaluateConfig) -> None:
    from lmforge.evaluate import evaluate, format_result

    print(format_result(evaluate(cfg)))


def _run_generate(cfg: C.GenerateConfig) -> None:
    from lmforge.sample import TextSampler, sample_text

    sampler = TextSampler(cfg.checkpoint, cfg.device)  # a bad checkpoint fails before any output
    for index in range(cfg.num_samples):
        if cfg.num_samples > 1:
            print(f"--- sample {index + 1}")
        sys.stdout.write(cfg.prompt)
        sys.stdout.flush()
        for piece in sample_text(cfg, sample_index=index, sampler=sampler):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")


def _run_convert(cfg: C.ConvertConfig) -> None:
    from lmforge.interop.convert import export_hf, import_hf

    if not cfg.source:
        raise ConfigError("nothing to convert: give a SOURCE (a checkpoint, or an HF directory with --to lmforge)")
    if cfg.to in ("hf", "peft") and cfg.tokenizer_dir:
        raise ConfigError("--tokenizer_dir is for --to lmforge only: an export uses the checkpoint's tokenizer")
    if cfg.to == "peft":
        from lmforge.finetune.peft_export import export_adapter_checkpoint

        out = export_adapter_checkpoint(cfg.source, cfg.out_dir, overwrite=cfg.overwrite)
    elif cfg.to == "hf":
        from lmforge.finetune.peft_export import refuse_adapter_checkpoint

        refuse_adapter_checkpoint(cfg.source)
        out = export_hf(cfg.source, cfg.out_dir, overwrite=cfg.overwrite)
    else:
        out = import_hf(cfg.source, cfg.out_dir, overwrite=cfg.overwrite, tokenizer_dir=cfg.tokenizer_dir or None)
    print(f"wrote {out}")


def _run_data_run(cfg: C.DataRunConfig) -> None:
    from lmforge.data.pipeline import format_report, run_pipeline

    stats = run_pipeline(cfg)  # its errors name the input.* options (data.pipeline.INPUT_OPTIONS)
    print(format_report(stats))
    print(f"wrote {cfg.output.dir} (stats.json; `lmforge data report {cfg.output.dir}` plots it)")


def _run_data_report(cfg: C.DataReportConfig) -> None:
    import os

    from lmforge.data.pipeline import format_report, load_stats, write_report_plot

    stats = load_stats(cfg.dir)
    print(format_report(stats))
    print(f"wrote {write_report_plot(stats, cfg.plot or os.path.join(cfg.dir, 'report.png'))}")


def _run_data_classifier(cfg: C.ClassifierTrainConfig) -> None:
    from lmforge.data.safety.classifier import format_classifier_report, train_classifier

    print(format_classifier_report(train_classifier(cfg)))


def _describe_options(options_cls: type) -> list[str]:
    """One indented line per option: name, default, help."""
    import dataclasses

    lines = []
    for f in dataclasses.fields(options_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"    {f.name}: {default!r}  {f.metadata.get('help', '')}")
    return lines


def _describe_data_steps() -> str:
    from lmforge.data.steps import CorpusStep, registered_steps

    lines = []
    for name, spec in registered_steps().items():
        kind = "corpus" if issubclass(spec.cls, CorpusStep) else "document"
        lines.append(f"{name}  ({kind} step) {spec.summary}")
        lines.extend(_describe_options(spec.options_cls))
    return "\n".join(lines)


def _describe_tasks() -> str:
    from lmforge.train.tasks import registered_tasks

    lines = []
    for name, spec in registered_tasks().items():
        lines.append(f"{name}  {spec.summary}")
        lines.extend(_describe_options(spec.options_cls))
    lines.append("(pretrain: --task.name NAME --task.options '{OPTION: VALUE}', or a task section in the recipe)")
    return "\n".join(lines)


def _describe_adapters() -> str:
    from lmforge.finetune.adapters import registered_adapters

    lines = []
    for name, spec in registered_adapters().items():
        lines.append(f"{name}  {spec.summary}")
        lines.extend(_describe_options(spec.options_cls))
    lines.append("(finetune: --adapter.name NAME --adapter.options '{OPTION: VALUE}', or an adapter section in the "
                 "recipe)")
    return "\n".join(lines)


def _run_quickstart(cfg: C.QuickstartConfig) -> None:
    from lmforge.quickstart import quickstart

    quickstart(cfg)


VERBS: dict[str, Verb] = {
    "prepare": Verb(C.PrepareConfig, _run_prepare, "read a source into train/val documents (JSONL)"),
    "tokenizer": Verb(C.TokenizerConfig, _run_tokenizer, "train a tokenizer on prepared documents"),
    "encode": Verb(C.EncodeConfig, _run_encode, "tokenize documents into token shards"),
    "pretrain": Verb(C.PretrainConfig, _run_pretrain,
                     "train on a task (`lmforge tasks`; by default the family's: causal LM, masked LM (BERT) or "
                     "span corruption (T5)) over token shards"),
    "finetune": Verb(C.FinetuneConfig, _run_finetune,
                     "adapt a pretrained model (train.init_from: lmforge checkpoint or HF directory) to a task: "
                     "sft, classification, seq2seq, continued pretraining; fully, partly frozen or with an "
                     "adapter (`lmforge adapters`)"),
    "evaluate": Verb(C.EvaluateConfig, _run_evaluate, "loss, perplexity, bits/byte of a checkpoint",
                     positional="checkpoint"),
    "generate": Verb(C.GenerateConfig, _run_generate, "sample text from a checkpoint", positional="checkpoint"),
    "convert": Verb(C.ConvertConfig, _run_convert, "export a checkpoint to HF format, or import an HF model",
                    positional="source"),
    "sweep": Verb(SweepConfig, _run_sweep,
                  "hyperparameter search (Optuna) over any config fields of pretrain or finetune: ranges, log "
                  "scale, choices; pruning, parallel trials, resume from SQLite; table, best config, plot",
                  positional="config"),
    "quickstart": Verb(C.QuickstartConfig, _run_quickstart,
                       "prepare -> tokenizer -> encode -> pretrain -> evaluate -> generate on the stdlib"),
}

# `lmforge data VERB`: the data pipeline. Positional "config" means the YAML file itself.
DATA_VERBS: dict[str, Verb] = {
    "run": Verb(C.DataRunConfig, _run_data_run, "run a data pipeline (YAML: input, steps, output)",
                positional="config"),
    "report": Verb(C.DataReportConfig, _run_data_report, "table and PNG plot of what each step removed",
                   positional="dir"),
    "train-classifier": Verb(C.ClassifierTrainConfig, _run_data_classifier,
                             "train the hashed n-gram content classifier on labelled JSONL", positional="data"),
}


OPTIONS_EPILOG = (
    "A string option takes the text exactly as typed (--prompt 1e3, --prompt null and --prompt 'a: b' "
    "are those characters); other options are read as YAML (--optim.lr 3e-4, --train.compile true). "
    "A value that starts with '-' is written --OPTION=VALUE (--prompt=-x); a list option then takes "
    "that one value.")


class _Parser(argparse.ArgumentParser):
    """argparse, with a hint for a value that starts with '-' and a value that is just '--'."""

    def error(self, message: str) -> typing.NoReturn:
        if message.endswith("expected one argument"):
            option = message.split(":")[0].removeprefix("argument ").split("/")[0]
            message += f" (a value that starts with '-' is written {option}=VALUE)"
        super().error(message)

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Before Python 3.12 argparse drops '--' even when it is an option's own value
        # (--prompt=--); a single-value option's value cannot be the end-of-options marker.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


def _type_help(tp: Any, check: Optional[C.Check] = None) -> str:
    """The type shown in --help, or what the option's range check allows (``an integer >= 1``).
    Every text is a string for a string option, so an Optional[str] option says where null
    can be given instead."""
    args = typing.get_args(tp)
    if C.takes_text(tp) and type(None) in args:
        shown = " or ".join(C.type_name(a) for a in args if a is not type(None))
        return f"{shown}; null only in a --config recipe"
    if check is not None and typing.get_origin(tp) is not list:
        return check.describe(tp)
    return C.type_name(tp)


def _add_options(parser: argparse.ArgumentParser, verb: Verb) -> None:
    parser.add_argument("--config", metavar="YAML", help="recipe to load before the options below")
    if verb.positional:
        parser.add_argument("positional", nargs="?", metavar=verb.positional.upper(),
                            help="the YAML recipe" if verb.positional == "config" else f"same as --{verb.positional}")
    for dotted, tp, default, help_text in C.iter_fields(verb.config_cls):
        shown = json.dumps(default) if not isinstance(default, str) else repr(default)
        nargs = "*" if C.type_name(tp).startswith("a list") else None
        parser.add_argument(f"--{dotted}", dest=dotted, default=argparse.SUPPRESS, nargs=nargs,
                            metavar=dotted.split(".")[-1].upper(),
                            help=f"{help_text} [{_type_help(tp, C.check_for(verb.config_cls, dotted))}; "
                                 f"default {shown}]".replace("%", "%%"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lmforge", description="Train language models from raw text, on a laptop CPU or a GPU cluster.",
        epilog="Options come from typed configs: `lmforge VERB --help` lists them; any can be set in a "
               "YAML recipe (--config) and overridden by its dotted name. " + OPTIONS_EPILOG)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, verb in VERBS.items():
        _add_options(sub.add_parser(name, help=verb.summary, description=verb.summary, epilog=OPTIONS_EPILOG),
                     verb)
    sub.add_parser("models", help="list model presets with parameter counts and FLOPs/token")
    sub.add_parser("tasks", help="list the training tasks and their options")
    sub.add_parser("adapters", help="list the fine-tuning adapters (LoRA, ...) and their options")
    data = sub.add_parser("data", help="collect, clean, filter, dedup text: `lmforge data run pipeline.yaml`",
                          description="the data pipeline")
    data_sub = data.add_subparsers(dest="data_verb", metavar="DATA_VERB")
    for name, verb in DATA_VERBS.items():
        _add_options(data_sub.add_parser(name, help=verb.summary, description=verb.summary,
                                         epilog=OPTIONS_EPILOG), verb)
    data_sub.add_parser("steps", help="list the pipeline steps and their options")
    return parser


def _load(verb: Verb, args: dict[str, Any]) -> Any:
    """The verb's config from its parsed options: recipe, then the options (``load_config``)."""
    yaml_path = args.pop("config", None)
    positional = args.pop("positional", None)
    if positional is not None and verb.positional == "config":
        yaml_path = positional
    elif positional is not None:
        args[verb.positional] = positional
    return C.load_config(verb.config_cls, yaml_path, args)


def parse_config(argv: list[str]) -> Any:
    """The config ``lmforge ARGV`` would run its verb with, parsed exactly as ``main`` does."""
    args = vars(build_parser().parse_args(argv))
    verb_name, data_verb = args.pop("verb"), args.pop("data_verb", None)
    verb = DATA_VERBS.get(data_verb) if verb_name == "data" else VERBS.get(verb_name)
    if verb is None:
        raise ConfigError(f"`lmforge {' '.join(argv)}` names no verb with options: give one of "
                          f"{', '.join([*VERBS, *(f'data {name}' for name in DATA_VERBS)])}")
    return _load(verb, args)


def _one_line(text: str) -> str:
    """A message as one line: line breaks (from a library's text inside it) become spaces."""
    return " ".join(text.split("\n")).replace("\r", " ")


def describe_os_error(err: OSError) -> str:
    """``<strerror>: '<filename>' (check the path, free space or permissions)``, one line."""
    what = err.strerror or str(err) or type(err).__name__
    names = " -> ".join(repr(str(name)) for name in (err.filename, err.filename2) if name is not None)
    return _one_line(f"{what}: {names}" if names else what) + " (check the path, free space or permissions)"


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    verb_name = args.pop("verb")
    if verb_name is None:
        parser.print_help()
        return 2
    data_verb = args.pop("data_verb", None)
    if verb_name == "data":
        if data_verb is None:
            parser.parse_args(["data", "--help"])
        verb_name = f"data {data_verb}"
    try:
        if verb_name == "models":
            from lmforge.models import describe_presets

            print(describe_presets())
            return 0
        if verb_name == "data steps":
            print(_describe_data_steps())
            return 0
        if verb_name == "tasks":
            print(_describe_tasks())
            return 0
        if verb_name == "adapters":
            print(_describe_adapters())
            return 0
        verb = DATA_VERBS[data_verb] if data_verb else VERBS[verb_name]
        verb.run(_load(verb, args))
    except LmforgeError as err:
        print(f"lmforge {verb_name}: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:
        # The user's environment, not a bug: a disk full, a permission denied, a path that is
        # not a directory, ... (anything else keeps its traceback).
        print(f"lmforge {verb_name}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lmforge {verb_name}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
