"""The registry as documents: ``docs/LOSSES.md`` and the presets behind the Learn page's links.

``python -m dmlviz.losses.catalog`` rewrites ``docs/LOSSES.md``; a test keeps the file in sync.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dmlviz.losses.base import FAMILIES, LossSpec
from dmlviz.losses.registry import get_spec, loss_names

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "LOSSES.md"
STATUS_PUBLISHED = "as published"
STATUS_RECONSTRUCTED = "reconstructed from the abstract"
STATUS_DESIGN = "our design from published parts"


def specs_by_family() -> dict[str, list[LossSpec]]:
    grouped: dict[str, list[LossSpec]] = {family: [] for family in FAMILIES}
    for name in loss_names():
        spec = get_spec(name)
        grouped[spec.family].append(spec)
    return {family: specs for family, specs in grouped.items() if specs}


def status(spec: LossSpec) -> str:
    if spec.reconstructed:
        return STATUS_RECONSTRUCTED
    return STATUS_DESIGN if spec.our_design else STATUS_PUBLISHED


def preset(spec: LossSpec, dim: int) -> dict[str, Any]:
    """The run settings that train ``spec`` well with ``dim``-wide features (``RunConfig.from_dict`` keys)."""
    return {"loss": spec.name, "feature_dim": dim, **spec.recommended.get(dim, {})}


def paper_text(spec: LossSpec) -> str:
    if spec.paper is None:
        return "—"
    p = spec.paper
    arxiv = f", arXiv:{p.arxiv}" if p.arxiv else ""
    return f"{p.authors}, *{p.title}*, {p.venue} {p.year}{arxiv}"


def _settings_text(settings: dict[str, Any]) -> str:
    flat = {**settings, **settings.get("loss_params", {})}
    return ", ".join(f"`{k}={v}`" for k, v in flat.items() if k not in ("loss", "loss_params"))


def markdown() -> str:
    """docs/LOSSES.md: every registered loss, as implemented, with its sources."""
    lines = [
        "# Losses",
        "",
        "Generated from the loss registry (`python -m dmlviz.losses.catalog`); do not edit by hand.",
        f"*{STATUS_RECONSTRUCTED.capitalize()}* marks losses whose paper could not be read in full: their "
        "formula is our reading of the abstract, and dmlviz does not claim to reproduce the paper's numbers. "
        f"*{STATUS_DESIGN.capitalize()}* marks losses for which no paper gives a formula.",
        "",
    ]
    for family, specs in specs_by_family().items():
        lines += [f"## {FAMILIES[family]}", ""]
        for spec in specs:
            lines += [
                f"### {spec.display_name} (`{spec.name}`)",
                "",
                f"- **Formula** ({status(spec)}): ${spec.formula}$",
                f"- **Paper**: {paper_text(spec)}",
                f"- **Implementation**: {spec.implementation}",
                f"- **Features**: {'normalised (directions only)' if spec.normalized else 'raw (Euclidean)'}; "
                f"learns: {spec.learns}; dims: {spec.dims}"
                + ("; batches hold ≥ 2 samples per class" if spec.needs_pairs else ""),
                "",
                spec.description,
                "",
            ]
            if spec.hparams:
                lines += ["| hyperparameter | default | range | meaning |", "|---|---|---|---|"]
                lines += [f"| `{hp.name}` | {hp.default} | {hp.range_text()} | {hp.help} |" for hp in spec.hparams]
                lines.append("")
            for dim in sorted(spec.recommended):
                lines.append(f"- **Recommended in {dim}-D**: {_settings_text(preset(spec, dim))}")
            if spec.pitfalls:
                lines.append(f"- **Pitfalls**: {spec.pitfalls}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    DOC_PATH.write_text(markdown())
    sys.stdout.write(f"wrote {DOC_PATH}\n")
