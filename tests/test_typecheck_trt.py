"""mypy over the TensorRT code against NVIDIA's published stubs (tensorrt-stubs), where TensorRT cannot be installed.

The stubs are installed with ``pip install --no-deps`` into ``.cache/trt-stubs`` (gitignored) on first use; a
temporary copy gets their two known syntax errors patched (``add_scale_nd``'s non-default argument after
defaults, a parameter named ``in``). Skips with the reason when mypy is missing or the stubs cannot be fetched.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "trt-stubs"
STUBS = "tensorrt-stubs==10.13.0.35.1"
MODULES = ["semshare/engine/build.py", "semshare/engine/runner.py", "semshare/engine/manifest.py",
           "semshare/engine/plugins.py"]


def _install_stubs() -> Path:
    if not (CACHE / "tensorrt_bindings" / "tensorrt.pyi").is_file():
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(CACHE), STUBS],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot install {STUBS}: {r.stderr.strip().splitlines()[-1:]}")
    return CACHE


def patch_stub_source(text: str) -> str:
    """The two syntax errors of tensorrt-stubs 10.13 (the file does not parse as Python otherwise)."""
    text = re.sub(r"(power: Weights = None, channel_axis: int)\)", r"\1 = ...)", text)
    return re.sub(r"\bin: list\[", "in_: list[", text)


def test_engine_modules_typecheck_against_tensorrt_stubs(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the [dev] extra")
    stubs = _install_stubs()
    typeshed = tmp_path / "stubs"
    for pkg in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(stubs / pkg, typeshed / pkg)
    pyi = typeshed / "tensorrt_bindings" / "tensorrt.pyi"
    pyi.write_text(patch_stub_source(pyi.read_text()))
    import ast

    ast.parse(pyi.read_text())  # the patch made it valid Python
    config = tmp_path / "mypy.ini"  # the stubs' own errors (e.g. a module-level ``bool``) are not ours to fix
    config.write_text("[mypy]\n[mypy-tensorrt_bindings.*]\nignore_errors = True\n[mypy-tensorrt.*]\nignore_errors = True\n")
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(tmp_path / "mypy-cache"),
           "--follow-imports=silent", "--ignore-missing-imports", "--python-version", "3.10",
           "--check-untyped-defs", "--warn-unused-ignores", *MODULES]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={"MYPYPATH": str(typeshed), "PATH": ""})
    assert r.returncode == 0, r.stdout + r.stderr


def _stub_enum_members(pyi: str) -> dict[str, set[str]]:
    """``{enum class: member names}`` from the stubs (members are ``NAME: typing.ClassVar[Class]``)."""
    import ast

    out: dict[str, set[str]] = {}
    for node in ast.parse(pyi).body:
        if isinstance(node, ast.ClassDef):
            names = {st.target.id for st in node.body if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)
                     and ast.unparse(st.annotation) == f"typing.ClassVar[{node.name}]"}
            if names:
                out[node.name] = names
    return out


def test_enum_names_exist_in_tensorrt_stubs():
    """mypy cannot see enum members semshare looks up by NAME (``_enum(trt, "BuilderFlag", "GPU_FALLBACK")`` and
    the plan's flag/pool/level strings): each one must be a member of that enum in tensorrt-stubs 10.13."""
    import ast

    from semshare.engine.build import HARDWARE_COMPAT, dla_policy

    stubs = _install_stubs()
    members = _stub_enum_members(patch_stub_source((stubs / "tensorrt_bindings" / "tensorrt.pyi").read_text()))
    wanted: set[tuple[str, str]] = set()
    for module in MODULES:
        for node in ast.walk(ast.parse((ROOT / module).read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_enum" and len(node.args) == 3
                    and all(isinstance(a, ast.Constant) for a in node.args[1:])):
                wanted.add((node.args[1].value, node.args[2].value))
    assert ("DeviceType", "DLA") in wanted and ("LayerInformationFormat", "JSON") in wanted  # the walk found them
    for version in ("10.3.0.30", "11.4.1"):
        policy = dla_policy(version)
        wanted |= {("BuilderFlag", f) for f in (*policy.builder_flags, "INT8")}
        wanted |= {("NetworkDefinitionCreationFlag", f) for f in policy.network_flags}
    wanted |= {("HardwareCompatibilityLevel", v) for v in HARDWARE_COMPAT.values()} | {("MemoryPoolType", "WORKSPACE")}
    missing = sorted(f"{e}.{m}" for e, m in wanted if m not in members.get(e, set()))
    assert not missing, f"not in {STUBS}: {missing}"
