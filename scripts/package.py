"""Build the plugin zip that plugins.qgis.org expects, and refuse it where the site would.

One top-level folder ``masktalk/`` holding what QGIS and the engine need at run time:
``metadata.txt``, ``__init__.py``, ``plugin/``, ``engine/``, ``resources/``,
``requirements.txt`` (the engine set-up installs it), ``README.md``, ``LICENSE`` and the
compiled translations ``i18n/masktalk_<locale>.qm`` (``scripts/i18n.py release``, lrelease).
No tests, benchmarks, caches, virtual environments, VCS data or model weights.

Before the zip is written, the staged tree goes through the checks plugins.qgis.org
applies to an upload (``qgis-app/plugins/validator.py`` and ``security_scanner.py`` of the
QGIS-Plugins-Website repository); any finding fails the build:

- :func:`check_metadata`: the site's required fields (name, description, version,
  qgisMinimumVersion, author, email, about, tracker, repository), links that are real
  URLs (no placeholder or ``example.org``), an e-mail address, an author without ``/``,
  plus this project's promise to QGIS 4 (``qgisMaximumVersion`` 4.x, ``supportsQt6=True``);
- :func:`check_zip`: at most 25 MB, one top folder named ``[A-Za-z][A-Za-z0-9-_]+``,
  ``__init__.py``, ``metadata.txt`` and ``LICENSE`` in it, no path tricks (``..``,
  absolute names), no ``.pyc``/``__pycache__``/``.git``/``__MACOSX``, no hidden file, no
  executable or library (``.exe .dll .so .dylib .pyd .bat .cmd .ps1 .sh``), no executable
  ``.py``, no binary file other than images and ``.qm``, a zip that tests clean;
- :func:`security_scan`: ``bandit`` and ``detect-secrets`` as the site runs them. Bandit
  findings fail the build when their severity is medium or high, or when the site lists
  their test as mandatory (it cannot be waived there: ``exec``/``eval``, pickle, shell
  injection, hard-coded passwords, unverified TLS, Hugging Face downloads without a pinned
  revision ...). Low-severity findings of the other tests are printed as notes, as the site
  shows them as skippable warnings; the tests it switches off (B109, B404, B410, B411) are
  not shown. A true finding is fixed, or justified in the code with
  a narrow ``# nosec BXXX - why`` comment. Every detect-secrets finding fails the build
  (``# pragma: allowlist secret`` marks a false positive).

Usage: ``python scripts/package.py [--out dist/]`` (``make package``, with the Python of
``.venv-qgis``, which has bandit and detect-secrets). Prints the zip path on stdout, notes
and findings on stderr; exits 1 on a finding.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import stat
import subprocess  # nosec B404 - runs lrelease, bandit and detect-secrets
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import i18n  # noqa: E402 - scripts/i18n.py, beside this file

PACKAGE = "masktalk"
INCLUDE = ["metadata.txt", "__init__.py", "LICENSE", "README.md", "requirements.txt", "plugin", "engine", "resources"]
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints", ".git", ".venv",
                 ".venv-qgis", "tests", "onnx-cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".pt", ".pth", ".safetensors", ".ckpt", ".onnx", ".zip"}
#: plugins.qgis.org's PLUGIN_MAX_UPLOAD_SIZE (bytes).
MAX_BYTES = 25_000_000
REQUIRED_METADATA = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about", "tracker",
                     "repository")
BOOLEAN_METADATA = ("experimental", "deprecated", "server", "supportsQt6")
FORBIDDEN_DIRS = ("__MACOSX", ".git", "__pycache__")
SUSPICIOUS_SUFFIXES = (".exe", ".dll", ".so", ".dylib", ".pyd", ".bat", ".cmd", ".ps1", ".sh")
#: Binary files a plugin legitimately ships.
BINARY_OK = (".png", ".jpg", ".jpeg", ".gif", ".ico", ".webp", ".qm")
PLACEHOLDER_HOSTS = ("example.org", "example.com", "example.net", "localhost")
#: Bandit tests plugins.qgis.org marks mandatory (not skippable), whatever their severity.
BANDIT_MANDATORY = {
    "B102", "B103", "B105", "B106", "B107", "B111", "B201", "B202", "B301", "B302", "B304", "B305", "B306", "B307",
    "B312", "B321", "B323", "B401", "B402", "B412", "B413", "B501", "B502", "B503", "B505", "B506", "B507", "B601",
    "B602", "B604", "B605", "B609", "B610", "B611", "B612", "B613", "B615", "B701",
}
#: Bandit tests the site switches off (informational only): not even a note here.
BANDIT_OFF = {"B109", "B404", "B410", "B411"}


class PackageError(SystemExit):
    """The package would be refused; ``findings`` says why."""

    def __init__(self, findings: list) -> None:
        self.findings = list(findings)
        super().__init__("package: refused (what plugins.qgis.org would refuse):\n" + "\n".join(f"- {f}" for f in findings))


# -- what goes in --------------------------------------------------------------------------------
def files_to_pack(root: Path = ROOT) -> list:
    out: list = []
    for name in INCLUDE:
        path = root / name
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            for f in sorted(path.rglob("*")):
                rel = f.relative_to(root)
                hidden = any(part.startswith(".") for part in rel.parts)
                if f.is_file() and not hidden and not (set(rel.parts) & EXCLUDED_DIRS) and f.suffix not in EXCLUDED_SUFFIXES:
                    out.append(f)
        else:
            raise SystemExit(f"package: {name} is missing from {root}")
    return out


def stage(target: Path, root: Path = ROOT) -> Path:
    """Copy the package tree into ``target/masktalk`` and compile the translations there."""
    top = target / PACKAGE
    for f in files_to_pack(root):
        dest = top / f.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)  # contents only: no executable bits from the checkout
    i18n.release(top / "i18n", root / "i18n")
    return top


# -- checks -----------------------------------------------------------------------------------------
def read_metadata(path: Path) -> dict:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    parser.read(path, encoding="utf-8")
    if not parser.has_section("general"):
        raise PackageError([f"{path.name}: no [general] section"])
    return dict(parser.items("general"))


def _version(text: str) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def check_metadata(meta: dict, tree: Optional[Path] = None) -> list:
    """Findings in ``metadata.txt``'s fields (``tree``: the package folder, to find the icon)."""
    found = [f"metadata.txt lacks {key}" for key in REQUIRED_METADATA if not str(meta.get(key, "")).strip()]
    for key in ("tracker", "repository", "homepage"):
        url = str(meta.get(key, "")).strip()
        if not url:
            continue
        m = re.match(r"^https?://([^/\s]+)(/\S*)?$", url)
        host = m.group(1).lower() if m else ""
        if not m or "." not in host or host.endswith(PLACEHOLDER_HOSTS) or url in ("http://bugs", "http://repo", "http://homepage"):
            found.append(f"metadata.txt {key}={url} is not a real web address")
    email = str(meta.get("email", "")).strip()
    if email and (not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email) or email.lower().endswith(PLACEHOLDER_HOSTS)):
        found.append(f"metadata.txt email={email} is not a real address")
    if "/" in str(meta.get("author", "")):
        found.append("metadata.txt author cannot contain slashes")
    version = str(meta.get("version", ""))
    if version and not re.match(r"^\d+\.\d+(\.\d+)?([-.]?[A-Za-z0-9]+)?$", version):
        found.append(f"metadata.txt version={version} should look like 1.2.3")
    for key in BOOLEAN_METADATA:
        if key in meta and str(meta[key]).strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
            found.append(f"metadata.txt {key}={meta[key]} is not a boolean (True/False)")
    low, high = _version(str(meta.get("qgisMinimumVersion", ""))), _version(str(meta.get("qgisMaximumVersion", "")))
    if not high or high[0] < 4:
        found.append("metadata.txt qgisMaximumVersion must reach QGIS 4 (4.99): QGIS 4 does not offer the plugin otherwise")
    elif low and low > high:
        found.append("metadata.txt qgisMinimumVersion is above qgisMaximumVersion")
    if str(meta.get("supportsQt6", "")).strip().lower() not in ("true", "1", "yes"):
        found.append("metadata.txt needs supportsQt6=True (plugins.qgis.org lists Qt6-ready plugins from it)")
    if tree is not None:
        icon = str(meta.get("icon", "")).strip()
        if icon and not (tree / icon.removeprefix("./")).is_file():
            found.append(f"metadata.txt icon={icon} is not in the package")
    return found


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def check_zip(path: Path, max_bytes: int = MAX_BYTES) -> list:
    """Findings in a built zip, as plugins.qgis.org's validator and scanner see it."""
    found = []
    size = path.stat().st_size
    if size > max_bytes:
        found.append(f"{path.name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return found + [f"{path.name} is not a zip file"]
    with zf:
        names = zf.namelist()
        bad = zf.testzip()
        if bad:
            found.append(f"bad zip entry (CRC error) {bad}")
        tops = {n.split("/")[0] for n in names}
        if len(tops) != 1:
            found.append(f"the zip must hold one folder, not {sorted(tops)}")
        top = sorted(tops)[0] if tops else ""
        if top and not re.match(r"^[A-Za-z][A-Za-z0-9-_]+$", top):
            found.append(f"top folder {top!r}: ASCII letters, digits, '-' and '_' only, starting with a letter")
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{top}/{required}" not in names:
                found.append(f"{top}/{required} is missing")
        for info in zf.infolist():
            name = info.filename
            parts = name.rstrip("/").split("/")
            base = parts[-1]
            if ".." in parts or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
                found.append(f"{name}: path information is not allowed")
            if ".pyc" in name or name.endswith(".pyo"):
                found.append(f"{name}: compiled Python is not allowed")
            for forbidden in FORBIDDEN_DIRS:
                if forbidden in parts[:-1] or (forbidden == base and name.endswith("/")):
                    found.append(f"{name}: a {forbidden} folder is not allowed")
            if base.startswith(".") and base not in (".gitignore", ".gitattributes"):
                found.append(f"{name}: hidden file")
            if name.lower().endswith(SUSPICIOUS_SUFFIXES):
                found.append(f"{name}: executable or library file")
            mode = info.external_attr >> 16
            if name.endswith(".py") and mode & 0o111:
                found.append(f"{name}: Python file with the executable bit")
            if not name.endswith("/") and not name.lower().endswith(BINARY_OK) and _is_binary(zf.read(name)):
                found.append(f"{name}: binary file (only images and .qm translations may be binary)")
        if f"{top}/metadata.txt" in names:
            with tempfile.TemporaryDirectory() as tmp:
                meta_path = Path(tmp) / "metadata.txt"
                meta_path.write_bytes(zf.read(f"{top}/metadata.txt"))
                meta = read_metadata(meta_path)
                icon = str(meta.get("icon", "")).strip().removeprefix("./")
                if icon and f"{top}/{icon}" not in names:
                    found.append(f"metadata.txt icon={icon} is not in the zip")
                found += check_metadata(meta)
    return found


def _tool(args: list, cwd: Path, what: str) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)  # nosec B603
    except subprocess.TimeoutExpired as exc:
        raise PackageError([f"{what} took longer than 600 s"]) from exc
    if "No module named" in done.stderr and done.returncode != 0:
        raise PackageError([f"{what} is not installed in {sys.executable}; pip install -r requirements-qgis-test.txt"])
    return done


def bandit_findings(tree: Path) -> tuple:
    """(findings that fail the build, notes) of ``bandit -r tree``."""
    done = _tool(["-m", "bandit", "-r", ".", "-f", "json", "-q"], tree, "bandit")
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise PackageError([f"bandit gave no report: {(done.stdout + done.stderr).strip()[:500]}"]) from exc
    failures, notes = [], []
    for r in report.get("results", []):
        if r["test_id"] in BANDIT_OFF:
            continue
        where = f"{r['filename'].removeprefix('./')}:{r['line_number']}"
        text = f"bandit {r['test_id']} ({r['issue_severity'].lower()}) {where}: {r['issue_text']}"
        if r["issue_severity"] in ("MEDIUM", "HIGH") or r["test_id"] in BANDIT_MANDATORY:
            failures.append(text + " -- fix it, or justify it with '# nosec " + r["test_id"] + " - why' on that line")
        else:
            notes.append(text)
    for e in report.get("errors", []):
        failures.append(f"bandit could not read {e.get('filename')}: {e.get('reason')}")
    return failures, notes


def secrets_findings(tree: Path) -> list:
    """``detect-secrets scan --all-files`` of the tree (metadata.txt left out, as the site does)."""
    done = _tool(["-m", "detect_secrets", "scan", "--all-files", "--exclude-files", r"metadata\.txt", "."], tree, "detect-secrets")
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise PackageError([f"detect-secrets gave no report: {(done.stdout + done.stderr).strip()[:500]}"]) from exc
    return [f"detect-secrets {s.get('type')} in {name}:{s.get('line_number')} -- remove it, or mark a false positive "
            "with '# pragma: allowlist secret'" for name, secrets in report.get("results", {}).items() for s in secrets]


def security_scan(tree: Path, echo=None) -> list:
    """bandit + detect-secrets on a package tree; the findings that fail the build."""
    failures, notes = bandit_findings(tree)
    for note in notes:
        (echo or _stderr)(f"note: {note}")
    return failures + secrets_findings(tree)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


# -- build ------------------------------------------------------------------------------------------
def _zip(top: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for f in sorted(p for p in top.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo.from_file(f, f"{PACKAGE}/{f.relative_to(top).as_posix()}")
            info.external_attr = (stat.S_IFREG | 0o644) << 16  # plain files, never executable
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(f, "rb") as handle:
                zf.writestr(info, handle.read(), compresslevel=9)


def build(out_dir: Path, root: Path = ROOT, scan: bool = True, echo=None) -> Path:
    """Stage, check, scan and zip; the zip path. Raises :class:`PackageError` on a finding."""
    meta = read_metadata(root / "metadata.txt")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PACKAGE}-{meta.get('version', '0')}.zip"
    with tempfile.TemporaryDirectory(prefix="masktalk-package-") as tmp:
        top = stage(Path(tmp), root)
        findings = check_metadata(meta, top)
        if scan:
            findings += security_scan(top, echo)
        part = Path(tmp) / target.name
        _zip(top, part)
        findings += [f for f in check_zip(part) if f not in findings]
        if findings:
            raise PackageError(findings)
        tmp_target = target.with_name(target.name + ".part")
        shutil.copyfile(part, tmp_target)
        os.replace(tmp_target, target)
    return target


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
