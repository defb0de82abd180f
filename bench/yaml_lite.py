"""The resolved config of `lowband validate --print`, read without a YAML library.

lowband prints block maps of plain scalars, with flow lists ([0.9, 0.95]) and flow maps for
tier items; this reads exactly that shape (Debian's python3 has no yaml module by default).
"""
import subprocess


def _scalar(text):
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(t) for t in text[1:-1].split(",") if t.strip()]
    return text.strip('"')


def resolved(lowband, config_path):
    out = subprocess.run([lowband, "validate", "--print", config_path], check=True,
                         capture_output=True, text=True).stdout
    root = {}
    stack = [(-1, root)]
    for line in out.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "- ")):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if value.strip():
            parent[key] = _scalar(value)
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
    return root
