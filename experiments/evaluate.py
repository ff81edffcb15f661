"""evaluate: the XTTS paper's kind of table, for any engine the lab has, here or on a Ray cluster.

Engines (each with variants) x languages x sentences x speakers x seeds, one row per synthesis,
logged through the common path (so every row gets the judges' columns), then a summary per
engine x variant x language: CER (mean, and the share of sentences with any error), speaker
similarity and DNSMOS OVRL (mean and std), and RTF. A judge that cannot score a language leaves
its cell empty and the summary says why: an empty cell is never a 0.

Engines are named ``engine`` or ``engine:variant``. A variant is a named set of generation settings
that the engine accepts: ``engine.variants`` (a class attribute, e.g. XTTS's ``int8``), or spelled
out as ``setting=value+setting=value`` (``xtts:temperature=0.3+top_k=10``). Which settings an engine
accepts is its own declaration (its ``Settings`` dataclass, ``components.engines.settings``); the
spec's ``settings`` apply to each engine that declares them.

Resume: every row is keyed by (engine, variant, language, text, speaker, reference, seed); keys
already in the run's CSV with status ok or unsupported are skipped, so running the same spec into
the same run folder (``lab.py run --resume RUN_DIR``) finishes an interrupted evaluation and loses
nothing. Rows that failed (status error) or whose engine was unavailable are tried again.

Executors: ``local`` synthesises in this process; ``ray`` hands the rows to Ray actors (one per
engine instance, see ``experiments.ray_executor``) and streams their results back. Either way
this process alone writes the CSV, in the order rows finish, and every row records ``executor``
and ``worker``.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from components.engines import REGISTRY, Engines, engine_class
from components.engines.base import (
    EngineUnavailable, LabError, Progress, SynthRequest, no_progress,
)
from components.engines.settings import NoSettings, as_dict, build, describe
from components.engines import check_overrides, settings_class
from components.store.results import Run
from components.core.stats import fmt_ci, mean_ci, paired_verdict, tidy

from .common import log_result
from .jobs import Job, LocalExecutor, Outcome, row_key
from .loop import error_row
from .sentences import read_sentences, select
from .specs import EvaluateSpec

DEFAULT_VARIANT = "default"
KEY_COLUMNS = ("engine", "variant", "language", "text", "speaker", "reference", "seed")
DONE_STATUSES = ("ok", "unsupported")  # rows a resume keeps; others (error, unavailable) are retried
# (summary column, row column, what it is) for the judge columns the summary reads.
JUDGED = (("cer", "cer", "character error rate"), ("spk_sim", "spk_sim", "speaker similarity"),
          ("dnsmos_ovrl", "dnsmos_ovrl", "DNSMOS OVRL"))
# The judge that writes each summary column: only its own notes say why that column's cell is empty.
JUDGE_OF = {"cer": "asr", "spk_sim": "speaker", "dnsmos_ovrl": "dnsmos"}


# -- variants ------------------------------------------------------------------------------------

def parse_entry(entry: str) -> tuple[str, str]:
    """``"xtts:int8"`` -> ``("xtts", "int8")``; ``"espeak"`` -> ``("espeak", "default")``."""
    name, _, variant = entry.partition(":")
    return name.strip(), variant.strip() or DEFAULT_VARIANT


def accepted_settings(cls: Any) -> tuple[str, ...]:
    """The settings engine class ``cls`` declares (its ``Settings`` dataclass)."""
    return tuple(info.name for info in describe(getattr(cls, "Settings", None) or NoSettings))


def variant_settings(cls: Any, name: str, variant: str, base: Any = None) -> Any:
    """Engine ``name``'s settings (an instance of its ``Settings``): ``base`` (the spec's settings:
    a mapping whose names this engine declares apply to it; the rest belong to other engines of the
    run) with variant ``variant`` applied. LabError naming the engine's variants, or its settings,
    when the variant does not fit it."""
    accepted = accepted_settings(cls)
    settings_cls = settings_class(name) if name in REGISTRY else (getattr(cls, "Settings", None) or NoSettings)
    shared = {k: v for k, v in as_dict(base).items() if k in accepted}
    if variant == DEFAULT_VARIANT:
        return build(settings_cls, shared)
    named = dict(getattr(cls, "variants", None) or {})
    if variant in named:
        overrides = dict(named[variant])
    elif "=" in variant:
        overrides = {}
        for part in variant.split("+"):
            key, sep, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise LabError(f"variant {variant!r} of {name}: {part!r} is not setting=value")
            overrides[key] = value.strip()
    else:
        known = ", ".join([DEFAULT_VARIANT, *named]) if named else DEFAULT_VARIANT
        how = f", or setting=value+... with settings from: {', '.join(accepted)}" if accepted else ""
        raise LabError(f"{name} has no variant {variant!r}; its variants: {known}{how}")
    refused = [k for k in overrides if k not in accepted]
    if refused:
        raise LabError(f"{name} does not accept the setting(s) {', '.join(refused)} (variant {variant!r}): "
                       + (f"{name}'s settings: {', '.join(accepted)}" if accepted else f"{name} has no settings"))
    return build(settings_cls, {**shared, **overrides})  # checks each value and names the setting


def done_keys(run: Run) -> set[tuple[str, ...]]:
    """Keys of the rows already in ``run``'s CSV that a resume keeps."""
    if not run.csv_path.exists() or run.csv_path.stat().st_size == 0:
        return set()
    df = pd.read_csv(run.csv_path, dtype=str, keep_default_na=False, on_bad_lines="skip")
    if df.empty or not set(KEY_COLUMNS) <= set(df.columns):
        return set()
    df = df[df["status"].isin(DONE_STATUSES)]
    return {tuple(rec) for rec in df[list(KEY_COLUMNS)].itertuples(index=False, name=None)}


def voices_for(spec: EvaluateSpec, facts: Any) -> list[tuple[str | None, str | None]]:
    """(speaker, reference) pairs this engine runs: the named built-in voices it has, and the
    references when it can clone; its default voice when that leaves nothing."""
    own = facts.speakers()
    pairs: list[tuple[str | None, str | None]] = [(s, None) for s in spec.speaker_list if s in own]
    if facts.capabilities.cloning:
        pairs += [(None, ref) for ref in spec.reference_list]
    return pairs or [(own[0] if own else None, None)]


def plan(spec: EvaluateSpec, entries: Sequence[tuple[str, str, Any]], facts: dict[str, Any],
         sentences: dict[str, list[str]]) -> tuple[list[Job], list[dict[str, Any]]]:
    """Every job of the evaluation, and one 'unsupported' row per engine entry and language it
    does not speak (instead of failing or faking it)."""
    jobs, unsupported = [], []
    for name, variant, settings in entries:
        if name not in facts:
            continue
        f = facts[name]
        seeds = spec.seed_list if f.capabilities.seeded else (None,)
        for lang in spec.langs:
            if lang not in f.languages:
                unsupported.append({"engine": name, "variant": variant, "language": lang, "status": "unsupported",
                                    "note": f"{name} does not speak {lang}; it speaks {', '.join(f.languages)}"})
                continue
            for n, text in enumerate(sentences[lang], 1):
                for speaker, reference in voices_for(spec, f):
                    for seed in seeds:
                        request = SynthRequest(text=text, lang=lang, speaker=speaker, reference=reference,
                                               speed=spec.speed, seed=seed, settings=settings)
                        jobs.append(Job(len(jobs), name, variant, request, n))
    return jobs, unsupported


def make_executor(spec: EvaluateSpec, engines: Engines, run: Run) -> Any:
    if spec.executor == "ray":
        from .ray_executor import RayExecutor  # Ray is imported only when asked for

        return RayExecutor(spec, engines.config, run.run_id)
    return LocalExecutor(engines)


# -- the experiment -------------------------------------------------------------------------------

def run(spec: EvaluateSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """Synthesise every row of ``spec`` not already in ``run`` (see the module docstring); returns the
    run's whole table (earlier rows of a resumed run included), once the judges are done with it."""
    sentences = select(read_sentences(spec.sentence_file, spec.sentence_lang), spec.langs, spec.sentences)
    # Every variant is checked before any model loads: a typo costs nothing.
    entries = []
    check_overrides([parse_entry(e)[0] for e in spec.engines], spec.settings)
    for entry in spec.engines:
        name, variant = parse_entry(entry)
        entries.append((name, variant, variant_settings(engine_class(name), name, variant, spec.settings)))
    done = done_keys(run)
    executor = make_executor(spec, engines, run)
    try:
        facts: dict[str, Any] = {}
        for name in dict.fromkeys(name for name, _, _ in entries):
            progress(0.0, desc=f"loading {name} ({executor.name})")
            try:
                facts[name] = executor.open(name, progress)
            except EngineUnavailable as e:
                for n, variant, _ in entries:
                    if n == name:
                        run.append({"engine": name, "variant": variant, "status": "unavailable", "note": str(e),
                                    "executor": executor.name})
        jobs, unsupported = plan(spec, entries, facts, sentences)
        for row in unsupported:
            if row_key(row["engine"], row["variant"], row["language"], "", "", "", "") not in done:
                run.append({**row, "executor": executor.name})
        todo = [job for job in jobs if job.key not in done]
        skipped = len(jobs) - len(todo)
        progress(0.0, desc=f"{len(todo)} rows to synthesise" + (f" ({skipped} already done)" if skipped else ""))
        for i, outcome in enumerate(executor.run(todo, spec.batch_size, progress), 1):
            log_outcome(outcome, facts[outcome.job.engine], run, executor.name)
            progress(i / max(len(todo), 1), desc=f"{i}/{len(todo)} rows · {outcome.job.engine}:{outcome.job.variant} "
                                                 f"{outcome.job.request.lang} · {outcome.worker}")
    finally:
        executor.close()
    wait = getattr(run, "wait_for_judges", None)
    if wait is not None:
        progress(1.0, desc="waiting for the judges")
        wait()
    progress(1.0, desc="done")
    return run.frame()


def log_outcome(outcome: Outcome, engine: Any, run: Run, executor: str) -> dict[str, Any]:
    """Write one finished job's row (and WAV) through the common logging path."""
    job, request = outcome.job, outcome.job.request
    fields: dict[str, Any] = {"variant": job.variant, "executor": executor, "worker": outcome.worker,
                              "sentence": job.sentence}
    if job.attempt > 1:
        fields["attempt"] = job.attempt
    if outcome.error is not None or outcome.result is None:
        return error_row(engine, request, run, outcome.error or "no result", **fields)
    return log_result(engine, request, outcome.result, outcome.seconds, run,
                      stem=f"{job.engine}-{job.variant}-{request.lang}-{job.sentence}", **fields)


# -- the summary ----------------------------------------------------------------------------------

def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, index=df.index)


def _why_empty(group: pd.DataFrame, col: str, label: str) -> str:
    if col not in group:
        return f"{label}: no judge wrote it (judges off or not installed)"
    from components.judges import REGISTRY

    # judge_notes joins every judge's reason with "; " (a reason may hold "; " itself): split where
    # the next judge's name starts, and keep the notes of the judge that writes this column.
    starts = re.compile(r"; (?=(?:%s)\b)" % "|".join(map(re.escape, REGISTRY)))
    judge = JUDGE_OF.get(col)
    notes = []
    for text in dict.fromkeys(group.get("judge_notes", pd.Series(dtype=str)).dropna().astype(str)):
        notes += [n for n in starts.split(text) if n and (judge is None or n.startswith(judge))]
    notes = list(dict.fromkeys(notes))
    return f"{label}: " + ("; ".join(notes[:2]) if notes else "no judge scored these rows")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per engine x variant x language: rows, errors, and for CER, speaker similarity, DNSMOS OVRL
    and RTF the mean with its 95% bootstrap interval over sentences (``cer_mean``, ``cer_ci_low``,
    ``cer_ci_high``...), the standard deviation of the judges' scores, the share of sentences
    with CER > 0, and ``notes`` saying why any cell is empty (a judge that cannot score the
    language, an engine that does not speak it)."""
    if df is None or df.empty or "engine" not in df:
        return pd.DataFrame()
    d = df.copy()
    d["variant"] = d["variant"].fillna(DEFAULT_VARIANT) if "variant" in d else DEFAULT_VARIANT
    d["language"] = d["language"].fillna("") if "language" in d else ""
    d["status"] = d["status"].fillna("ok") if "status" in d else "ok"
    out = []
    for (engine, variant, lang), g in d.groupby(["engine", "variant", "language"], sort=False):
        ok = g[g["status"] == "ok"]
        rec: dict[str, Any] = {"engine": engine, "variant": variant, "language": lang, "rows": len(ok),
                               "errors": int((g["status"] == "error").sum())}
        notes = []
        if ok.empty:
            notes += [str(n) for n in dict.fromkeys(g.get("note", pd.Series(dtype=str)).dropna()) if str(n)][:1]
        cer = _num(ok, "cer")
        rec.update(mean_ci(cer, "cer"))
        rec["cer_nonzero"] = (cer[cer.notna()] > 0).mean() if cer.notna().any() else np.nan
        for name, col, label in JUDGED[1:]:
            v = _num(ok, col)
            rec.update(mean_ci(v, name))
            rec[f"{name}_std"] = v.std() if v.notna().sum() > 1 else np.nan
        rec.update(mean_ci(_num(ok, "rtf"), "rtf"))
        if "asr_judge" in ok:
            judges = [str(j) for j in dict.fromkeys(ok["asr_judge"].dropna()) if str(j)]
            rec["asr_judge"] = ", ".join(judges) or None
        if not ok.empty:
            for name, col, label in JUDGED:
                if not _num(ok, col).notna().any():
                    notes.append(_why_empty(ok, col, label))
        rec["notes"] = "; ".join(notes) or None
        out.append({k: tidy(v) for k, v in rec.items()})
    # Engines in the order they ran, languages in the built-in set's order: the same table however
    # the rows finished (a Ray run writes them in any order).
    order = {lang: i for i, lang in enumerate(read_sentences())}
    first = {k: i for i, k in enumerate(dict.fromkeys(zip(d["engine"], d["variant"])))}
    table = pd.DataFrame(out)
    table["_e"] = [first[(e, v)] for e, v in zip(table["engine"], table["variant"])]
    table["_l"] = [order.get(lang, len(order)) for lang in table["language"]]
    return table.sort_values(["_e", "_l", "language"], kind="stable").drop(columns=["_e", "_l"]).reset_index(drop=True)


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the paper's kind of table: ``mean [95% interval]`` strings rounded to what the
    interval supports, CER>0 as a percentage, and the reasons for empty cells in ``notes`` (what
    the CLI prints and the Evaluate tab shows)."""
    if summary is None or summary.empty:
        return pd.DataFrame()

    def ci(name: str) -> list[str]:
        cols = [f"{name}_mean", f"{name}_ci_low", f"{name}_ci_high"]
        if cols[0] not in summary:
            return [""] * len(summary)
        return [fmt_ci(*(r.get(c) for c in cols)) for r in summary.to_dict("records")]

    def pct(v: Any) -> str:
        return "" if v is None or pd.isna(v) else f"{100 * v:.0f}%"

    return pd.DataFrame({
        "engine": summary["engine"], "variant": summary["variant"], "lang": summary["language"],
        "rows": summary["rows"], "CER": ci("cer"),
        "CER>0": [pct(v) for v in summary["cer_nonzero"]],
        "spk_sim": ci("spk_sim"), "DNSMOS OVRL": ci("dnsmos_ovrl"), "RTF": ci("rtf"),
        "notes": summary["notes"].fillna(""),
    })


# Columns two systems are compared on, paired over the sentences both of them spoke.
VERDICT_COLUMNS = ("cer", "dnsmos_ovrl", "spk_sim", "rtf")


def verdicts(df: pd.DataFrame, columns: Sequence[str] = VERDICT_COLUMNS) -> pd.DataFrame:
    """Paired verdicts between every two systems (engine:variant) per language, one row per
    column. The unit is the sentence: each system's rows are averaged per text (over its voices,
    seeds and references), A and B are paired on the texts both spoke, and the 95% interval of
    the mean difference A - B says "A better", "B better", "no detectable difference" or "too
    few pairs" (fewer than 5 sentences)."""
    if df is None or df.empty or "engine" not in df or "text" not in df:
        return pd.DataFrame()
    d = df[df["status"].fillna("ok") == "ok"].copy() if "status" in df else df.copy()
    d["variant"] = d["variant"].fillna(DEFAULT_VARIANT) if "variant" in d else DEFAULT_VARIANT
    d["system"] = d["engine"].astype(str) + ":" + d["variant"].astype(str)
    d["language"] = d["language"].fillna("") if "language" in d else ""
    present_cols = [c for c in columns if c in d and _num(d, c).notna().any()]
    for c in present_cols:
        d[c] = _num(d, c)
    per_text = d.groupby(["language", "system", "text"])[present_cols].mean().sort_index()
    out = []
    systems = list(dict.fromkeys(d["system"]))
    for lang in dict.fromkeys(d["language"]):
        here = [s for s in systems if (lang, s) in {k[:2] for k in per_text.index}]
        for i, a in enumerate(here):
            for b in here[i + 1:]:
                ta, tb = per_text.loc[(lang, a)], per_text.loc[(lang, b)]
                both = ta.index.intersection(tb.index)
                for col in present_cols:
                    v = paired_verdict(ta.loc[both, col], tb.loc[both, col], col)
                    out.append({"language": lang, "a": a, "b": b,
                                **{k: tidy(val) for k, val in v.as_row().items()}})
    return pd.DataFrame(out)


def format_verdicts(table: pd.DataFrame) -> str:
    """One line per comparison: ``en cer: espeak:default vs kokoro:default -> B better (diff ...)``."""
    if table is None or table.empty:
        return ""
    lines = []
    for r in table.to_dict("records"):
        diff = fmt_ci(r["diff_mean"], r["ci_low"], r["ci_high"])
        lines.append(f"  {r['language']} {r['column']}: A={r['a']} vs B={r['b']}: {r['verdict']} "
                     f"(A-B {diff or 'n/a'}, {r['pairs']} pairs)")
    return "Paired verdicts (95% bootstrap over the same sentences):\n" + "\n".join(lines)


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a text table (``summary_view``), the reasons for empty cells listed below it."""
    view = summary_view(summary)
    if view.empty:
        return "(no rows)"
    table = view.drop(columns="notes").to_string(index=False)
    notes = [f"  {r.engine}:{r.variant} {r.lang}: {r.notes}" for r in view.itertuples() if r.notes]
    return table + ("\nEmpty cells:\n" + "\n".join(notes) if notes else "")
