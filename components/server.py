"""Serving: the Gradio UI (and, in the same server, the REST API)."""

from __future__ import annotations

import argparse
import sys

from .context import LabContext


def serve(args: argparse.Namespace) -> int:
    """Build the lab, start loading the default engine in the background, serve until stopped."""
    from experiments.cli import engine_config

    from .engines.base import LabError
    from .ui.app import build_app

    try:
        lab = LabContext.create(engine_config(args), results=args.out)
    except LabError as e:
        print(f"lab.py: error: {e}", file=sys.stderr)
        return 2
    default = lab.engines.default()
    lab.engines.preload(default)  # the page is usable while the model loads
    demo = build_app(lab)
    demo.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port,
                                                   share=args.share, show_error=True)
    return 0
