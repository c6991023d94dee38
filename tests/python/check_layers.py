#!/usr/bin/env python3
"""The library's layers point one way: every #include of a halfserve header is checked against the order below,
and the library never reaches into the CLI, never starts Python, never knows its source tree.

    check_layers.py [REPO_ROOT]

Layers (a layer may include itself and the ones listed for it; `version.h` at the top of include/halfserve is
free for all):
  util                                  the bottom: errors, files, UTF-8, status codes
  format  <- util                       frozen files, tensors, metadata, vocabulary
  import  <- format                     readers of other formats into frozen files
  engine  <- format                     the model, its backends (cpu and cuda side by side), the precision cast
  synth   <- format                     the default model
  text    <- engine                     tokenizer, punctuation, evaluation
  bench   <- engine, text, synth        timing (a client: never serve)
  serve   <- import, engine, text       servers (import: model sources it hot-reloads)
Standard library only; prints every wrong include and exits 1 when there is one.
"""
import pathlib
import re
import sys

ALLOWED = {
    "util": {"util"},
    "format": {"util", "format"},
    "import": {"util", "format", "import"},
    "engine": {"util", "format", "engine"},
    "synth": {"util", "format", "synth"},
    "text": {"util", "format", "engine", "text"},
    "bench": {"util", "format", "engine", "text", "synth", "bench"},
    "serve": {"util", "format", "import", "engine", "text", "serve"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
# What only a tool may do: run Python, or find files through the source tree it was built from.
TOOL_ONLY = re.compile(r'python-env\.sh|run_peer\.py|"python3?"|HALFSERVE_SOURCE_DIR|tools/halfserve')


def layer_of_file(root, path):
    parts = path.relative_to(root).parts
    if parts[0] == "include":
        return parts[2] if len(parts) > 3 else None  # include/halfserve/version.h belongs to no layer
    return parts[1]


def layer_of_include(target):
    """The layer a quoted include names: "halfserve/LAYER/x.h" or a library-private "LAYER/x.h"."""
    parts = target.split("/")
    if parts[0] == "halfserve":
        return parts[1] if len(parts) > 2 else None
    return parts[0] if parts[0] in ALLOWED else None


def engine_side(path):
    """cpu or cuda for a backend file, so the two can be kept apart."""
    parts = path.parts
    for side in ("cpu", "cuda"):
        if "engine" in parts and side in parts:
            return side
    return None


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
    files = [p for folder in ("src", "include/halfserve") for p in (root / folder).rglob("*")
             if p.suffix in (".h", ".cc", ".cu", ".cuh")]
    problems = []
    for path in sorted(files):
        text = path.read_text(encoding="utf-8", errors="replace")
        layer = layer_of_file(root, path)
        where = path.relative_to(root)
        if TOOL_ONLY.search(re.sub(r"//.*", "", text)):
            problems.append(f"{where}: the library names Python or its source tree (that belongs in tools/)")
        if layer is None:
            continue
        if layer not in ALLOWED:
            problems.append(f"{where}: folder '{layer}' is no known layer (add it to check_layers.py's ALLOWED)")
            continue
        for target in INCLUDE.findall(text):
            included = layer_of_include(target)
            if included is not None and included not in ALLOWED[layer]:
                problems.append(f'{where}: layer {layer} includes "{target}" (layer {included})')
            side = engine_side(path.relative_to(root))
            other = {"cpu": "cuda", "cuda": "cpu"}.get(side)
            if other and re.search(rf"(^|/)engine/{other}/|^{other}/", target):
                problems.append(f'{where}: the {side} backend includes "{target}" (the {other} backend\'s)')
    for problem in problems:
        print(problem)
    print(f"check_layers: {len(files)} files, {len(problems)} wrong includes")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
