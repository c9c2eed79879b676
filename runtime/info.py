"""`ddpm-info [MODEL]`: what a model file is — classes, shapes, schedule, precision, the backend that
runs it, provenance (source checkpoint, exporter, version), sha256 — without sampling anything.

With no MODEL, the shipped default. `--json` prints the same as one JSON object.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .cli_errors import make_app, one_line_errors, run_app, version_option

app = make_app("Describe a model file: classes, shapes, schedule, precision, backend, provenance, sha256.")


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props, read off the protobuf (ModelProto field 14) without onnx or an
    inference session; {} when the file is not a readable ONNX protobuf."""
    from .backends.common import _fields

    meta: dict[str, str] = {}
    try:
        for number, wire, value in _fields(memoryview(Path(path).read_bytes())):
            if number == 14 and wire == 2:
                entry = {k: bytes(v).decode() for k, w, v in _fields(value) if w == 2}
                meta[entry.get(1, "")] = entry.get(2, "")
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return {}
    return meta


def shipped_classes() -> tuple[str, ...]:
    """The shipped model's class names (for help texts); () when no model is shipped or readable."""
    from .backends import default_model_path

    try:
        names = json.loads(onnx_metadata(default_model_path()).get("context_names", "[]"))
    except Exception:  # noqa: BLE001 - a help text must never fail
        return ()
    return tuple(str(n) for n in names) if isinstance(names, list) else ()


def onnx_header(path: Path) -> dict:
    """IR version, opsets and producer of an ONNX file, read with the onnx package when installed (the
    runtime does not need it: then only what ONNX Runtime reports)."""
    try:
        import onnx
    except ImportError:
        return {}
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the backend has already loaded it; the header is a bonus
        return {}
    return {"ir_version": proto.ir_version,
            "opsets": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
            "producer": f"{proto.producer_name} {proto.producer_version}".strip()}


def describe(path: str | Path | None = None, backend: str = "auto", precision: str | None = None) -> dict:
    """Everything ddpm-info prints, as a dict. Loads the model on the CPU (nothing runs)."""
    from .backends import default_model_path, load_unet

    path = default_model_path() if path is None else Path(path)
    unet = load_unet(path, device="cpu", backend=backend, precision=precision)
    spec = unet.spec
    shapes = {name: ["N" if d == "batch" else d for d in shape] for name, shape in spec.shapes().items()}
    fixed = getattr(unet, "fixed_batch", None)
    if fixed:
        shapes = {name: [fixed, *shape[1:]] for name, shape in shapes.items()}
    info = {
        "file": str(path), "size_bytes": path.stat().st_size, "sha256": unet.sha256,
        "backend": unet.backend, "precision": unet.precision,
        "classes": list(spec.context_names),
        "shapes": shapes,
        "schedule": {"T": spec.T, "beta1": spec.beta1, "beta2": spec.beta2},
        "provenance": {"source_sha256": spec.source_sha256 or None, "shortcut": spec.shortcut,
                       "written_by": f"ddpm-edge {spec.version}" if spec.version else None,
                       **{k: v for k, v in sorted(spec.extra.items())}},
    }
    if path.suffix.lower() == ".onnx":
        info["onnx"] = onnx_header(path)
    return info


def render(info: dict) -> str:
    shapes = ", ".join(f"{name}[{','.join(map(str, shape))}]" for name, shape in info["shapes"].items())
    s, p = info["schedule"], info["provenance"]
    lines = [
        f"model      {info['file']}",
        f"sha256     {info['sha256']}  ({info['size_bytes'] / 1e6:.1f} MB)",
        f"backend    {info['backend']}, precision {info['precision']}",
        f"classes    {', '.join(info['classes'])}  (ddpm-run --context NAME)",
        f"shapes     {shapes}",
        f"schedule   DDPM T={s['T']}, betas linear {s['beta1']:g} .. {s['beta2']:g}",
        f"source     checkpoint sha256 {p['source_sha256'] or 'unknown'}, shortcut {p['shortcut']}",
        f"written by {p['written_by'] or 'unknown (no ddpm-edge metadata)'}",
    ]
    extra = {k: v for k, v in p.items() if k not in ("source_sha256", "shortcut", "written_by")}
    if extra:
        lines.append("metadata   " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    onnx = info.get("onnx")
    if onnx:
        opsets = ", ".join(f"{d} {v}" for d, v in onnx["opsets"].items())
        lines.append(f"onnx       IR {onnx['ir_version']}, opset {opsets}, producer {onnx['producer']}")
    return "\n".join(lines)


@app.command()
@one_line_errors("ddpm-info")
def info(
    model: Optional[Path] = typer.Argument(None, help="unet.onnx, an OpenVINO .xml or a TensorRT .plan; "
                                                      "default: the shipped model"),
    backend: str = typer.Option("auto", help="auto (by file type), onnxruntime, openvino, tensorrt"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of text"),
    version: bool = version_option("ddpm-info"),
) -> None:
    """Describe MODEL: its classes (the names --context takes), tensor shapes, schedule, precision, the
    backend that runs it, where it came from and its sha256."""
    details = describe(model, backend=backend)
    typer.echo(json.dumps(details, indent=2) if as_json else render(details))


def main() -> None:
    run_app(app, "ddpm-info")
