"""XTTS Lab: ``uv run lab.py`` serves the lab; ``uv run lab.py run <experiment>`` runs one headless."""

from __future__ import annotations

import argparse
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse, but bad options end with one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_asr_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--asr-model", metavar="DIR",
                   help="a faster-whisper (CTranslate2) model folder for the asr judge, e.g. Whisper large-v3 "
                        "(default: $LAB_ASR_MODEL, else the bundled Whisper base)")


def parser() -> argparse.ArgumentParser:
    from components.store.voices import add_voices_arguments
    from experiments.cli import add_engine_arguments, add_run_arguments

    p = OneLineParser(prog="lab.py", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also create a temporary public Gradio link")
    p.add_argument("--auth", help="user:pass, or a file of user:pass lines, required for the UI and REST API "
                                  "(without it, --share or a network --host makes a random access token)")
    p.add_argument("--no-auth", action="store_true",
                   help="with --share or a network --host: no credentials at all, anyone who reaches the lab "
                        "can use everything (see docs/sharing.md)")
    p.add_argument("--max-upload-mb", type=float, default=50.0,
                   help="largest reference upload accepted by the UI and REST API (default 50 MB)")
    p.add_argument("--out", default="results", help="results folder (default results/)")
    p.add_argument("--strict-engine", action="store_true",
                   help="REST requests that name no engine get 503 when XTTS cannot answer, never another engine")
    p.add_argument("--judges", help="judges scoring every row by default in the UI: all (default, or $LAB_JUDGES) | "
                                    "fast (dnsmos) | none | names, e.g. dnsmos,asr")
    p.add_argument("--judge-backlog", type=int, default=None, metavar="N",
                   help="REST and /v1 rows waiting for judges at most (default 64); past it a row is marked "
                        "'not judged: backlog' instead of queued; 0 = judge none of them")
    p.add_argument("--voices-dir", help="saved voices folder (default: voices/ beside the results folder)")
    p.add_argument("--api-key", help="a key, or a file of keys (one a line), that REST clients may send as "
                                     "'Authorization: Bearer KEY' (OpenAI clients' api_key)")
    add_asr_argument(p)  # the server's judges; 'run' has it among each experiment's output options
    add_engine_arguments(p)
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)
    run = sub.add_parser("run", help="run one experiment headless and write its CSV",
                         description="Run one experiment headless and write its CSV; "
                                     "'lab.py run EXPERIMENT --help' lists that experiment's options.")
    add_run_arguments(run)  # one subparser per experiment, each with the engine options
    voices = sub.add_parser("voices", help="saved voices: add NAME WAV | list | remove NAME")
    add_engine_arguments(add_voices_arguments(voices))  # "voices add" conditions the cloning engines
    from components.app.results_cli import add_results_arguments

    add_results_arguments(sub.add_parser("results", help="list, filter, export or query (--sql) every run"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        from experiments.cli import run_command

        return run_command(args)
    if args.command == "voices":
        from components.store.voices import voices_command
        from experiments.cli import engine_config

        return voices_command(args, engine_config(args))
    if args.command == "results":
        from components.app.results_cli import results_command

        return results_command(args)
    from components.app.server import serve

    return serve(args)


def exit_now(code: int) -> None:
    """Leave with ``code`` once every file is written, skipping the interpreter's teardown: freeing
    CTranslate2's models (the Whisper judge) there can abort a finished command with "terminate
    called without an active exception" (faster-whisper issues #480/#489), which would turn its
    exit status 0 into 134. Rows, judges.csv and summaries are fsynced before ``main`` returns."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
