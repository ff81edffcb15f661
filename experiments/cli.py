"""Headless experiments: ``uv run lab.py run <experiment> [options]``.

Prints progress on stderr and, as the last line on stdout, the path of the CSV written.
Bad options or inputs exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import yaml

from components.core import PRECISIONS
from components.engines import REGISTRY, EngineConfig, Engines, engine_class
from components.engines.base import LabError
from components.engines.settings import describe, parse_assignments
from components.engines import settings_class
from components.judges import JudgeConfig, Judges, default_choice
from components.store.results import ResultsStore, read_csv
from components.store.voices import VOICE_PREFIX, VoiceLibrary, default_directory, resolve_speaker, saved_name

from . import EXPERIMENTS, spec_from_dict
from .pipeline import run_to_end


def _floats(name: str):
    def parse(value: str) -> tuple[float, ...]:
        try:
            return tuple(float(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be comma-separated numbers, got {value!r}") from None
    return parse


def _ints(name: str):
    def parse(value: str) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be comma-separated integers, got {value!r}") from None
    return parse


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


# -- options of ``lab.py run``: shared groups, then one function per experiment ----------------
# Where a new flag goes: engine or machine options every experiment takes -> add_engine_arguments;
# sampling settings of the synthesising experiments -> add_settings_arguments; one experiment's
# flag -> that experiment's function below (its name is in RUN_OPTIONS).

def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """Where a run writes and who scores it: every experiment (and ``--spec``/``--resume``)."""
    p.add_argument("--out", default="results", help="results folder (default results/)")
    p.add_argument("--judges",
                   help="judges scoring every row: all (every installed judge; the default, or $LAB_JUDGES) | "
                        "fast (dnsmos) | none | names, e.g. dnsmos,asr")
    p.add_argument("--judge-reference", metavar="WAV",
                   help="voice recording the speaker judge compares built-in voices with (rows without a reference)")
    p.add_argument("--asr-model", metavar="DIR",
                   help="a faster-whisper (CTranslate2) model folder for the asr judge, e.g. Whisper large-v3 "
                        "(default: $LAB_ASR_MODEL, else the bundled Whisper base)")


def add_voice_arguments(p: argparse.ArgumentParser) -> None:
    """Which engine speaks, and in whose voice: the experiments with one engine and one voice."""
    p.add_argument("--engine", help=f"engine: {' | '.join(REGISTRY)} (default: the preferred available one)")
    p.add_argument("--speaker", help="built-in voice of the engine")
    p.add_argument("--reference", metavar="WAV", help="reference recording to clone")
    p.add_argument("--voice", help="a saved voice to clone (lab.py voices add NAME WAV); also --speaker voice:NAME")
    p.add_argument("--voices-dir", help="saved voices folder (default: voices/ beside the results folder)")


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The seed and the engine's own settings: every experiment that synthesises."""
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    # The engine's own settings, as it declares them (components.engines.settings): no setting is
    # named here, so an engine with new knobs needs no new flag.
    p.add_argument("--set", action="append", dest="settings", metavar="NAME=VALUE",
                   help="an engine setting, repeatable, e.g. --set length_scale=1.5 (piper) or --set temperature=0.5 "
                        "(xtts); --help-settings lists the engine's")
    p.add_argument("--help-settings", action="store_true",
                   help="list the settings of --engine (or of each of --engines, or of the default engine) and exit")


def _text(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", help="text to speak")
    p.add_argument("--lang", help="language code, e.g. en, ko, ja, zh-cn")


def _synth(p: argparse.ArgumentParser) -> None:
    _text(p)
    p.add_argument("--speed", type=float, help="speed factor (default 1)")
    p.add_argument("--stream", action="store_true", default=None, help="stream (records time to first audio)")


def _speed_sweep(p: argparse.ArgumentParser) -> None:
    _text(p)
    p.add_argument("--speeds", type=_floats("--speeds"), help="speeds, e.g. 0.5,1,1.5")
    p.add_argument("--sentences", type=int, help="texts swept: --text, then the next of the built-in set "
                   "(2 or more give each speed a 95%% interval; default 1)")


def _ref_length(p: argparse.ArgumentParser) -> None:
    _text(p)
    p.add_argument("--lengths", type=_floats("--lengths"), help="reference lengths in seconds, e.g. 3,6,10,15,30")
    p.add_argument("--repeats", type=int, help="seeds per length (seed, seed+1, ...; default 1)")


def _languages(p: argparse.ArgumentParser) -> None:
    p.add_argument("--langs", type=_names, help="languages, e.g. en,ko,ja (default: every language some engine speaks)")
    p.add_argument("--speed", type=float, help="speed factor (default 1)")
    p.add_argument("--sentences", type=int, help="sentences per language (2 or more give each language a 95%% "
                   "interval; default 1)")


def _benchmark(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engines", type=_names, help="engines to compare, e.g. espeak,kokoro")
    p.add_argument("--lang", help="language code of the texts (default en)")
    p.add_argument("--repeats", type=int, help="warm runs per engine and text, after one cold run (default 3)")


def _judge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", metavar="FILE_OR_DIR", help="an audio file or a folder of them")
    p.add_argument("--manifest", metavar="CSV", help="a CSV with columns audio,text,lang,reference")
    p.add_argument("--text", help="what the audio should say (asr judge: CER, WER)")
    p.add_argument("--lang", help="its language code (picks the recogniser)")
    p.add_argument("--reference", metavar="WAV", help="voice recording to compare with (speaker judge)")


def _script(p: argparse.ArgumentParser) -> None:
    p.add_argument("--script", metavar="FILE", help="script to read aloud: 'Name: text' per line")
    p.add_argument("--voices", help="voices: 'Name=engine:speaker,Me=xtts:ref=me.wav' or a YAML file")
    p.add_argument("--lang", help="language of lines without a [xx] tag (default en)")
    p.add_argument("--pause", type=float, help="seconds between lines (default 0.3)")
    p.add_argument("--paragraph-pause", type=float, help="seconds at a blank line (default 0.8)")
    p.add_argument("--format", choices=["script", "text", "markdown"],
                   help="what --script is written in (default: markdown for .md files, else script)")
    p.add_argument("--max-cer", type=float, help="a take with a higher CER is retaken (default 0.2)")
    p.add_argument("--takes", type=int, help="takes per line at most (default 3; engines that use a seed)")
    p.add_argument("--speed", type=float, help="speed factor for every voice (default 1)")


def _evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engines", type=_names,
                   help="engines or variants, e.g. espeak,xtts:int8,xtts:temperature=0.3 (default: --engine)")
    p.add_argument("--langs", type=_names, help="languages, e.g. en,ja (default en)")
    p.add_argument("--sentences", type=int, help="the first N sentences per language")
    p.add_argument("--sentence-file", metavar="CSV_OR_TXT",
                   help="sentences as CSV (lang,text) or TXT (one per line, language from --lang)")
    p.add_argument("--lang", help="language of a TXT --sentence-file")
    p.add_argument("--speakers", type=_names, help="built-in voices, e.g. female,male (each engine uses those it has)")
    p.add_argument("--references", type=_names, metavar="WAV,...", help="recordings to clone (engines that clone)")
    p.add_argument("--seeds", type=_ints("--seeds"), help="seeds, e.g. 0,1,2 (engines that sample)")
    p.add_argument("--speed", type=float, help="speed factor (default 1)")
    _executor_arguments(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run in its folder "
                   "(rows already written are skipped)")


def _listen_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test", help="the listening test id (results/listen/ID)")


def _executor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"], help="synthesise here (local, default) or on Ray")
    p.add_argument("--ray-address", help="Ray cluster, auto or HOST:PORT (default: start a local instance)")
    p.add_argument("--workers", type=int, help="Ray: actors per engine (default 1)")
    p.add_argument("--worker-cpus", type=float, help="Ray: CPUs per actor (default 1)")
    p.add_argument("--worker-gpus", type=float, help="Ray: GPUs per actor (default 0; 1 with --device cuda)")


# experiment -> (one line for ``lab.py run --help``, its own options, takes the voice and settings groups)
RUN_OPTIONS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], bool]] = {
    "synth": ("speak one text once", _synth, True),
    "speed-sweep": ("one text at several speeds", _speed_sweep, True),
    "ref-length": ("clone from the first 3, 6, 10, ... seconds of a reference", _ref_length, True),
    "languages": ("one sentence in each language", _languages, True),
    "benchmark": ("cold and warm timings of engines on short, medium and long texts", _benchmark, True),
    "judge": ("score recordings made elsewhere with the judges", _judge, False),
    "script": ("read a dialogue aloud, one voice per speaker, stitched with subtitles", _script, False),
    "evaluate": ("engines x languages x sentences x voices x seeds, judged, with a summary", _evaluate, True),
    "listen-report": ("a listening test's ranking, intervals and judge agreement (CSV + PNG)", _listen_report, False),
}


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``lab.py run``: ``--spec``/``--resume`` and the shared groups here, then one
    subparser per experiment (``lab.py run synth --help`` lists synth's options only).

    The namespace has every option of every experiment (None where the chosen one has no such
    flag), so :func:`spec_from_args` reads one shape whichever experiment ran."""
    p.add_argument("--spec", help="reproduce a run from its saved spec.yaml (or its run folder)")
    p.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted evaluate or script run in its folder (what is written is not redone)")
    add_output_arguments(p)
    add_engine_arguments(p)
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", parser_class=type(p),
                           title="experiments", description=f"one of: {', '.join(EXPERIMENTS)}; "
                           "'lab.py run EXPERIMENT --help' lists its options")
    parsers = {}
    for name, (summary, own, synthesises) in RUN_OPTIONS.items():
        q = sub.add_parser(name, help=summary, description=f"{name}: {summary}.")
        own(q)
        if synthesises:
            add_voice_arguments(q.add_argument_group("engine and voice"))
        if synthesises or name == "script":
            add_settings_arguments(q.add_argument_group("seed and engine settings (--help-settings lists them)"))
        add_output_arguments(q.add_argument_group("output and judges"))
        add_engine_arguments(q.add_argument_group("engine setup (every experiment)"))
        parsers[name] = q
    shared = {a.dest for a in p._actions}
    every = set().union(*({a.dest for a in q._actions} for q in parsers.values())) - {"help"}
    for q in parsers.values():
        own_dests = {a.dest for a in q._actions}
        for action in q._actions:
            # argparse copies a subparser's defaults over what the run parser read
            # ("lab.py run --out X synth"): leave the run parser's values alone.
            if action.dest in shared:
                action.default = argparse.SUPPRESS
        q.set_defaults(**dict.fromkeys(every - own_dests - shared))
    p.set_defaults(**dict.fromkeys(every - shared))


def settings_help(args: argparse.Namespace, engines: Engines) -> str:
    """What ``--help-settings`` prints: each named engine's settings, with type, range and help."""
    from components.engines import help_text

    names = [n.partition(":")[0] for n in (getattr(args, "engines", None) or ())] or [args.engine or engines.default()]
    return "\n\n".join(help_text(n) for n in dict.fromkeys(names))


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Machine-level engine options, shared by the app and ``run``."""
    p.add_argument("--xtts-dir", help="XTTS v2 folder (config.json, model.pth, vocab.json, speakers_xtts.pth)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="XTTS GPT precision (default fp32, exact; bf16, int8 and int4 are faster)")
    p.add_argument("--agree-cpml", action="store_true",
                   help="accept the Coqui Public Model License so XTTS weights may be downloaded")
    p.add_argument("--melo-python", help="python of MeloTTS's own environment (or MELO_PYTHON)")
    p.add_argument("--cache-dir", help="speaker-latent cache folder (default ~/.cache/xtts-lab)")
    p.add_argument("--batch", type=int, default=8, metavar="N",
                   help="rows an experiment decodes together on engines that batch (XTTS); default 8, "
                        "1 = one at a time (see bench/xtts_speed.py --batch)")
    p.add_argument("--threads", type=int, help="CPU threads per model call of engines that take a setting "
                                               "(ONNX intra-op threads; default: the cores this process may use)")
    p.add_argument("--piper-voices", metavar="DIR", help="folder of extra Piper voices, NAME.onnx + NAME.onnx.json "
                                                         "(default: $PIPER_VOICES, else voices/piper/)")


def engine_config(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(xtts_dir=args.xtts_dir, device=args.device, precision=args.precision or "fp32",
                        agree_cpml=args.agree_cpml, melo_python=args.melo_python, cache_dir=args.cache_dir,
                        threads=args.threads, batch=getattr(args, "batch", 8),
                        piper_voices=getattr(args, "piper_voices", None))


def spec_from_args(args: argparse.Namespace, engines: Engines) -> tuple[str, Any]:
    """The experiment name and its spec, from a saved spec.yaml or from the options."""
    if args.spec:
        path = Path(args.spec)
        if path.is_dir():
            path = path / "spec.yaml"
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise LabError(f"--spec {args.spec!r} cannot be read: {e}") from None
        if not isinstance(doc, dict) or doc.get("experiment") not in EXPERIMENTS:
            raise LabError(f"--spec {args.spec!r} is not a spec.yaml written by the lab")
        name = doc["experiment"]
        data = dict(doc.get("spec") or {})
        ref = data.get("reference")
        if isinstance(ref, str) and ref and not Path(ref).is_absolute() and not Path(ref).exists() \
                and (path.parent / ref).is_file():
            data["reference"] = str(path.parent / ref)  # an exported run names it relative to its folder
        return name, spec_from_dict(EXPERIMENTS[name][0], data)
    if not args.experiment:
        raise LabError(f"name an experiment ({', '.join(EXPERIMENTS)}) or give --spec")
    cls = EXPERIMENTS[args.experiment][0]
    names = {f.name for f in fields(cls)}
    given = {
        "engine": args.engine or engines.default(), "speaker": args.speaker, "text": args.text,
        "lang": args.lang, "reference": args.reference, "speed": args.speed, "speeds": args.speeds,
        "lengths": args.lengths, "langs": args.langs, "engines": args.engines, "repeats": args.repeats,
        "seed": args.seed, "stream": args.stream, "audio": args.audio, "manifest": args.manifest,
        "sentences": args.sentences, "sentence_file": args.sentence_file,
        "sentence_lang": args.lang if args.sentence_file else None, "speakers": args.speakers,
        "references": args.references, "seeds": args.seeds, **_executor_options(args),
    }
    if args.experiment == "script":
        given.update(_script_arguments(args))
    if args.reference and not Path(args.reference).is_file():
        raise LabError(f"--reference {args.reference!r} does not exist")
    voice = getattr(args, "voice", None) or saved_name(args.speaker)
    if voice:
        if args.reference:
            raise LabError("give --voice (a saved voice) or --reference (a recording), not both")
        library = VoiceLibrary(getattr(args, "voices_dir", None) or default_directory(args.out))
        _, saved = resolve_speaker(library, given["engine"], engine_class(given["engine"]).capabilities,
                                   VOICE_PREFIX + voice)
        given["reference"], given["speaker"] = saved.path, None
    kwargs = {k: v for k, v in given.items() if v is not None and k in names}
    if args.experiment == "benchmark" and not args.engines:
        # Side by side: every engine that can run here (espeak, kokoro, piper; xtts where its weights are).
        kwargs["engines"] = tuple(n for n, why in engines.available().items() if why is None) or (kwargs["engine"],)
    if args.experiment == "evaluate" and not args.engines:
        kwargs["engines"] = (kwargs["engine"],)  # --engine, else the lab's default engine
    settings = parse_assignments(getattr(args, "settings", None))
    if getattr(args, "precision", None) and "precision" not in settings \
            and "precision" in {i.name for i in describe(settings_class(kwargs.get("engine") or engines.default()))}:
        settings["precision"] = args.precision  # saved with the spec: --spec reruns in the same precision
    if settings:
        kwargs["settings"] = settings  # the spec checks them against the engine's declaration
    return args.experiment, cls(**kwargs)


def _script_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The script experiment's fields from --script FILE and --voices (inline or a YAML file)."""
    from .script_format import MAX_SCRIPT_CHARS, parse_voices

    if not args.script:
        raise LabError("script needs --script FILE ('Name: text' per line)")
    path = Path(args.script)
    if not path.is_file():
        raise LabError(f"--script {args.script!r} does not exist")
    if path.stat().st_size > 4 * MAX_SCRIPT_CHARS:
        raise LabError(f"--script {args.script!r} is too large; the limit is {MAX_SCRIPT_CHARS} characters")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabError(f"--script {args.script!r} cannot be read as UTF-8 text: {e}") from None
    if not args.voices:
        raise LabError("script needs --voices, e.g. 'Narrator=espeak:male,Me=espeak:female'")
    voices = parse_voices(args.voices)
    for name, voice in voices.items():  # the spec keeps absolute paths: --spec works from anywhere
        engine, _, rest = voice.partition(":")
        if rest.startswith("ref="):
            voices[name] = f"{engine}:ref={Path(rest[4:]).resolve()}"
    fmt = args.format or ("markdown" if path.suffix.lower() in (".md", ".markdown") else "script")
    return {"script": text, "voices": voices, "pause": args.pause, "paragraph_pause": args.paragraph_pause,
            "format": fmt, "max_cer": args.max_cer, "takes": args.takes}
def _executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """Where an evaluation runs: options that may differ between a run and its resumption."""
    return {k: v for k, v in {"executor": args.executor, "ray_address": args.ray_address, "workers": args.workers,
                              "worker_cpus": args.worker_cpus, "worker_gpus": args.worker_gpus}.items()
            if v is not None}


def resume(args: argparse.Namespace, engines: Engines) -> tuple[str, Any, Any]:
    """``--resume RUN_DIR``: the run's saved spec (with this call's executor options) and the run
    itself, reopened so that its rows continue."""
    from dataclasses import replace

    from .specs import EvaluateSpec, ScriptSpec

    run_dir = Path(args.resume)
    if not (run_dir / "spec.yaml").is_file():
        raise LabError(f"--resume {args.resume!r} is not a run folder (it has no spec.yaml)")
    args.spec = str(run_dir / "spec.yaml")
    name, spec = spec_from_args(args, engines)
    if isinstance(spec, ScriptSpec):  # its takes on disk are kept; the rest are made and checked
        return name, spec, ResultsStore(run_dir.parent).reopen(run_dir.name)
    if not isinstance(spec, EvaluateSpec):
        raise LabError(f"--resume works for evaluate and script runs; {args.resume!r} is a {name} run")
    spec = replace(spec, **_executor_options(args))
    return name, spec, ResultsStore(run_dir.parent).reopen(run_dir.name)


def stderr_progress(fraction: float = 0.0, desc: str = "", **_: Any) -> None:
    print(f"[{fraction:4.0%}] {desc}", file=sys.stderr, flush=True)


def run_command(args: argparse.Namespace) -> int:
    """Run one experiment headless; prints the CSV path last. Returns the exit status."""
    if args.experiment == "listen-report":  # not an experiment: the report of a listening test
        from .listen.command import report_command

        return report_command(args)
    try:
        engines = Engines(engine_config(args))
        if getattr(args, "help_settings", False):
            print(settings_help(args, engines))
            return 0
        resumed = None
        if getattr(args, "resume", None):
            name, spec, resumed = resume(args, engines)  # an interrupted run's folder: its rows stay
        else:
            name, spec = spec_from_args(args, engines)
        judges = Judges(JudgeConfig(asr_model=getattr(args, "asr_model", None)))
        choice = getattr(args, "judges", None) or default_choice()
        judges.select(choice)  # an unknown judge name fails before any synthesis
        reference = getattr(args, "judge_reference", None)
        if reference and not Path(reference).is_file():
            raise LabError(f"--judge-reference {reference!r} does not exist")
        # Judge columns included before the CSV path is printed last: a complete run.
        last = run_to_end(name, spec, engines=engines, run=resumed,
                          store=None if resumed else ResultsStore(args.out), judges=judges, judge_choice=choice,
                          judge_reference=reference, progress=stderr_progress)
        run, df = last.run, last.rows
        if name in ("benchmark", "languages", "speed-sweep", "ref-length"):
            from components.core.stats import ci_view

            from . import summarize

            print(ci_view(summarize(name, df)).to_string(index=False), file=sys.stderr)
        if name == "script":
            from .script import SPEAKERS_CSV, STITCHED_WAV

            from .script import REPORT_CSV, summarize_report

            print(f"{run.dir / STITCHED_WAV} (+ script.srt, script.vtt, {REPORT_CSV})", file=sys.stderr)
            print((run.dir / SPEAKERS_CSV).read_text(), file=sys.stderr)
            print(summarize_report(read_csv(run.dir / REPORT_CSV)), file=sys.stderr)
        if name == "evaluate":
            from .evaluate import format_summary, format_verdicts, summarize as summarize_evaluation, verdicts

            print(format_summary(summarize_evaluation(df)), flush=True)
            print(format_verdicts(verdicts(df)), flush=True)
    except LabError as e:
        print(f"lab.py: error: {e}", file=sys.stderr)
        return 2
    print(run.csv_path)
    return 0
