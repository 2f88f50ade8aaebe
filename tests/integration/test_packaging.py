"""The Debian package and the unit as files: built, read, verified and installed for real.

``packaging/build-deb`` runs once per module (a wheel build and pip downloads, cached in
``.cache/pip``). The package is read with ``dpkg-deb``; the unit is checked with
``systemd-analyze verify`` and ``security``; the sysusers and tmpfiles entries are applied
to a scratch root with ``--root``; the polkit rule runs in duktape, the engine polkitd
embeds. Then the package is installed, reinstalled, removed and
purged with the host's own dpkg inside a throwaway root: an overlay of this machine's root
file system whose writes land in a test folder, in a private mount namespace, so that the
maintainer scripts run exactly as on a Debian host (Debian's python3 builds the virtual
environment) and the host is left as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pockestrator import __version__
from pockestrator.config import AgentConfig, load_config

REPO = Path(__file__).resolve().parents[2]
BUILD_DEB = REPO / "packaging" / "build-deb"
UNIT_FILE = REPO / "systemd" / "pockestrator.service"
PACKAGED_CONFIG = REPO / "packaging" / "config.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
# The package's build (wheels for three Pythons) has a bound of its own, 900 s; on a busy
# machine it outlasted the suite's 300 s per test, which counts the module's set-up
# against its first test: each test gets the build's bound and a minute.
BUILD_SECONDS = 900
pytestmark = pytest.mark.timeout(BUILD_SECONDS + 60)
EXEC_START = "/opt/pockestrator/venv/bin/pockestrator"
WANTED_BY = "/etc/systemd/system/multi-user.target.wants/pockestrator.service"

# Where each shipped file lands, and the file of this repository it must be.
SHIPPED = {
    "usr/lib/systemd/system/pockestrator.service": UNIT_FILE,
    "usr/lib/systemd/system/caddy.service.d/pockestrator.conf": (
        REPO / "packaging/caddy-restart.conf"
    ),
    "usr/share/polkit-1/rules.d/50-pockestrator.rules": REPO / "packaging/50-pockestrator.rules",
    "usr/lib/sysusers.d/pockestrator.conf": REPO / "packaging/sysusers.conf",
    "usr/lib/tmpfiles.d/pockestrator.conf": REPO / "packaging/tmpfiles.conf",
    "etc/pockestrator/config.yaml": PACKAGED_CONFIG,
    "usr/share/doc/pockestrator/operations.md": OPERATIONS,
}


def run(
    *argv: str | Path, check: bool = True, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, check=False, **kwargs
    )
    if check and done.returncode != 0:
        pytest.fail(f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def missing_tools(*tools: str) -> str | None:
    absent = [tool for tool in tools if shutil.which(tool) is None]
    return f"needs {', '.join(absent)}" if absent else None


def namespace_reason() -> str | None:
    """Why this machine cannot build private mount namespaces, or None when it can."""
    if os.geteuid() != 0:
        return "needs root for a private mount namespace"
    return missing_tools("unshare", "mount", "chroot")


# -- the unit as a file -----------------------------------------------------------------


def test_the_unit_passes_systemd_analyze_verify() -> None:
    """``verify`` needs ExecStart to exist: a private tmpfs on /opt provides it."""
    reason = namespace_reason() or missing_tools("systemd-analyze")
    if reason:
        pytest.skip(reason)
    script = (
        'mount -t tmpfs tmpfs /opt && mkdir -p "${1%/*}" && ln -s "$2" "$1" && '
        'exec systemd-analyze verify "$3"'
    )
    entry_point = Path(sys.executable).parent / "pockestrator"
    done = run(
        "unshare", "-m", "--propagation", "private", "sh", "-c", script, "verify",
        EXEC_START, entry_point, UNIT_FILE, check=False, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_the_units_exposure_score_is_the_one_documented() -> None:
    if reason := missing_tools("systemd-analyze"):
        pytest.skip(reason)
    done = run("systemd-analyze", "security", "--offline=true", UNIT_FILE, "--no-pager")
    measured = re.search(
        r"Overall exposure level for pockestrator\.service: ([0-9.]+)", done.stdout
    )
    assert measured, done.stdout
    documented = re.search(r"exposure level \*\*([0-9.]+)", OPERATIONS.read_text())
    assert documented, "docs/operations.md states the score as 'exposure level **N.N'"
    assert measured.group(1) == documented.group(1)
    assert float(measured.group(1)) < 3.0  # systemd's "OK" band starts below 5.0


# -- sysusers, tmpfiles and the default config -----------------------------------------


def test_sysusers_entries_create_both_users_without_a_login_shell(tmp_path: Path) -> None:
    if reason := missing_tools("systemd-sysusers"):
        pytest.skip(reason)
    (tmp_path / "etc").mkdir()
    run("systemd-sysusers", f"--root={tmp_path}", REPO / "packaging/sysusers.conf")
    users = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    assert users["pocketbase"][6] == users["pockestrator"][6] == "/usr/sbin/nologin"
    assert users["pocketbase"][5] == "/var/lib/pockestrator/services"
    assert int(users["pocketbase"][2]) < 1000 and int(users["pockestrator"][2]) < 1000
    assert users["pocketbase"][2] != users["pockestrator"][2]
    groups = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc/group").read_text().splitlines()
    }
    # The local socket's group: no member but the agent's own user (its primary group);
    # the instances' user is never in it (docs/security.md).
    socket_group = groups["pockestrator"]
    assert socket_group[3] == ""
    assert users["pockestrator"][3] == socket_group[2]
    assert users["pocketbase"][3] != socket_group[2]


def test_tmpfiles_entries_create_the_folders_with_their_modes(tmp_path: Path) -> None:
    if reason := missing_tools("systemd-tmpfiles"):
        pytest.skip(reason)
    run("systemd-tmpfiles", f"--root={tmp_path}", "--create", REPO / "packaging/tmpfiles.conf")
    expected = [
        "var/lib/pockestrator",
        "var/lib/pockestrator/services",
        "var/lib/pockestrator/releases",
        "var/cache/pockestrator",
        "etc/pockestrator/specs",
        "etc/caddy/pockestrator.d",
    ]
    for folder in expected:
        info = (tmp_path / folder).lstat()
        assert stat.S_ISDIR(info.st_mode), folder
        assert stat.S_IMODE(info.st_mode) == 0o755, folder
        assert (info.st_uid, info.st_gid) == (0, 0), folder


def test_the_packaged_config_documents_every_key_with_its_default() -> None:
    text = PACKAGED_CONFIG.read_text()
    commented = "\n".join(
        line[2:]
        for line in text.splitlines()
        if re.match(r"# [a-z_]+: ", line) and not line.startswith("# Default: ")
    )
    documented = yaml.safe_load(commented)
    defaults = AgentConfig().model_dump(mode="json")
    assert set(documented) == set(defaults)
    for key, value in documented.items():
        assert value == defaults[key], key
    # Nothing is set: the file as shipped means the built-in defaults, among them a release
    # cache on the same mount as base_dir (service binaries are hard links into it).
    loaded = load_config(PACKAGED_CONFIG, environ={})
    assert loaded == AgentConfig()
    assert loaded.release_cache_dir.parent == loaded.base_dir.parent


# The interface polkitd gives rules (polkit(8), "AUTHORIZATION RULES"): polkit.addRule,
# polkit.Result, action.id and action.lookup(detail), subject.user. Rules run in order
# until one answers; null or undefined means "not handled". Then every case is asked.
_POLKIT_INTERFACE = """
var polkit = {
    Result: {NO: "no", YES: "yes", AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep",
             AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep", NOT_HANDLED: null},
    rules: [],
    addRule: function (rule) { this.rules.push(rule); },
    log: function () {}
};
"""
_POLKIT_CASES = """
(function (cases) {
    var answers = [];
    for (var i = 0; i < cases.length; i++) {
        var details = cases[i].details;
        var action = {id: cases[i].action, lookup: function (key) { return details[key]; }};
        var subject = {user: cases[i].user};
        var answer = null;
        for (var r = 0; r < polkit.rules.length && answer === null; r++) {
            answer = polkit.rules[r](action, subject) || null;
        }
        answers.push(answer);
    }
    return JSON.stringify(answers);
})(%s)
"""
# duktape.h 2.7: duk_peval_string(ctx, src) is duk_eval_raw(ctx, src, 0, these flags).
_DUK_PEVAL_STRING = (1 << 3) | (1 << 7) | (1 << 9) | (1 << 10) | (1 << 11)


def evaluate_with_duktape(source: str) -> str:
    """Run ``source`` in duktape, the JavaScript engine Debian's polkitd embeds."""
    library = ctypes.util.find_library("duktape")
    if library is None:
        pytest.skip("needs libduktape (Debian package libduktape207)")
    duk = ctypes.CDLL(library)
    duk.duk_create_heap.restype = ctypes.c_void_p
    duk.duk_create_heap.argtypes = [ctypes.c_void_p] * 5
    duk.duk_eval_raw.restype = ctypes.c_int
    duk.duk_eval_raw.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint]
    duk.duk_safe_to_lstring.restype = ctypes.c_char_p
    duk.duk_safe_to_lstring.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    duk.duk_destroy_heap.argtypes = [ctypes.c_void_p]
    heap = duk.duk_create_heap(None, None, None, None, None)
    assert heap
    try:
        failed = duk.duk_eval_raw(heap, source.encode(), 0, _DUK_PEVAL_STRING)
        result = (duk.duk_safe_to_lstring(heap, -1, None) or b"").decode()
    finally:
        duk.duk_destroy_heap(heap)
    assert failed == 0, f"the rule does not run in duktape: {result}"
    return result


def test_the_polkit_rule_grants_the_agent_user_its_instances_and_caddy_reload_only() -> None:
    rule = (REPO / "packaging/50-pockestrator.rules").read_text()
    units = "org.freedesktop.systemd1.manage-units"
    cases = [
        # (user, action, unit, verb) -> what the rule answers
        (("pockestrator", units, "notes-pocketbase.service", "start"), "yes"),
        (("pockestrator", units, "notes-pocketbase.service", "stop"), "yes"),
        (("pockestrator", units, "notes-pocketbase.service", "restart"), "yes"),
        (("pockestrator", units, "notes-pocketbase.service", "reset-failed"), "yes"),
        (("pockestrator", units, "a1-b2-pocketbase.service", "start"), "yes"),
        (("pockestrator", units, "notes-pocketbase.service", "kill"), None),
        (("pockestrator", units, "notes-pocketbase.service", "set-property"), None),
        (("pockestrator", units, "caddy.service", "reload"), "yes"),
        (("pockestrator", units, "caddy.service", "stop"), None),
        (("pockestrator", units, "caddy.service", "restart"), None),
        (("pockestrator", units, "ssh.service", "stop"), None),
        (("pockestrator", units, "pocketbase.service", "start"), None),
        (("pockestrator", units, "1st-pocketbase.service", "start"), None),
        (("pockestrator", units, "Notes-pocketbase.service", "start"), None),
        (("pockestrator", units, "notes-pocketbase.service.d", "start"), None),
        (("pockestrator", units, "", "start"), None),
        (("pockestrator", "org.freedesktop.systemd1.reload-daemon", "", ""), "yes"),
        (("pockestrator", "org.freedesktop.systemd1.manage-unit-files", "", ""), "yes"),
        (("pockestrator", "org.freedesktop.login1.power-off", "", ""), None),
        (("pockestrator", "org.freedesktop.systemd1.set-environment", "", ""), None),
        (("alice", units, "notes-pocketbase.service", "start"), None),
        (("alice", "org.freedesktop.systemd1.reload-daemon", "", ""), None),
        (("pocketbase", units, "notes-pocketbase.service", "restart"), None),
    ]
    asked = [
        {"user": user, "action": action, "details": {"unit": unit, "verb": verb}}
        for (user, action, unit, verb), _answer in cases
    ]
    source = _POLKIT_INTERFACE + rule + _POLKIT_CASES % json.dumps(asked)
    answers = json.loads(evaluate_with_duktape(source))
    assert answers == [answer for _case, answer in cases]


# -- the package ------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltPackage:
    deb: Path
    data: Path  # the package's files, unpacked
    control: Path  # DEBIAN/: control, conffiles, md5sums, maintainer scripts

    def field(self, name: str) -> str:
        return run("dpkg-deb", "--field", self.deb, name).stdout.strip()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> BuiltPackage:
    if reason := missing_tools("dpkg-deb", "dpkg"):
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("deb")
    environment = {**os.environ, "PYTHON": sys.executable, "DEB_REVISION": "1"}
    environment.pop("PYTHON_VERSIONS", None)
    built = run(BUILD_DEB, out / "dist", env=environment, timeout=BUILD_SECONDS)
    deb = Path(built.stdout.strip().splitlines()[-1])
    assert deb.parent == out / "dist" and deb.exists()
    run("dpkg-deb", "--extract", deb, out / "data")
    run("dpkg-deb", "--control", deb, out / "control")
    return BuiltPackage(deb, out / "data", out / "control")


def test_the_package_takes_its_version_from_the_python_package(package: BuiltPackage) -> None:
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert package.field("Package") == "pockestrator"
    assert package.field("Version") == f"{__version__}-1"
    assert package.field("Architecture") == arch
    assert package.deb.name == f"pockestrator_{__version__}-1_{arch}.deb"


def test_the_package_depends_on_debians_python_venv_systemd_and_recommends_caddy(
    package: BuiltPackage,
) -> None:
    depends = [part.strip() for part in package.field("Depends").split(",")]
    assert "python3 (>= 3.11)" in depends
    assert "python3 (<< 3.14)" in depends  # the newest CPython whose wheels are inside
    assert {"python3-venv", "systemd"} <= set(depends)
    assert package.field("Recommends") == "caddy"


def test_the_package_ships_the_unit_rule_entries_and_config_of_this_repository(
    package: BuiltPackage,
) -> None:
    listing = run("dpkg-deb", "--contents", package.deb).stdout
    for destination, source in SHIPPED.items():
        assert f" ./{destination}\n" in listing + "\n", destination
        assert (package.data / destination).read_bytes() == source.read_bytes(), destination
        mode = (package.data / destination).stat().st_mode
        assert stat.S_IMODE(mode) == 0o644, destination
    # Every member belongs to root, whoever built the package.
    owners = {line.split()[1] for line in listing.splitlines()}
    assert owners == {"root/root"}
    assert os.readlink(package.data / "usr/bin/pockestrator") == EXEC_START


COMPLETIONS = {
    "bash": "usr/share/bash-completion/completions/pockestrator",
    "zsh": "usr/share/zsh/vendor-completions/_pockestrator",
    "fish": "usr/share/fish/vendor_completions.d/pockestrator.fish",
}


def test_the_package_ships_shell_completion_generated_from_the_cli(package: BuiltPackage) -> None:
    from pockestrator.cli import build_parser
    from pockestrator.client.completion import render

    for shell, destination in COMPLETIONS.items():
        shipped = package.data / destination
        assert shipped.read_text() == render(shell, build_parser()), shell
        assert stat.S_IMODE(shipped.stat().st_mode) == 0o644, shell
    run("bash", "-n", package.data / COMPLETIONS["bash"])


def test_the_config_is_the_only_conffile(package: BuiltPackage) -> None:
    assert (package.control / "conffiles").read_text().split() == ["/etc/pockestrator/config.yaml"]


def test_md5sums_cover_every_shipped_file(package: BuiltPackage) -> None:
    listed = {}
    for line in (package.control / "md5sums").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    files = {
        str(path.relative_to(package.data))
        for path in package.data.rglob("*")
        if path.is_file() and not path.is_symlink()
    }
    assert set(listed) == files
    checked = run("md5sum", "--check", "--quiet", package.control / "md5sums", cwd=package.data)
    assert checked.returncode == 0


def test_the_maintainer_scripts_are_executable_posix_shell_with_the_version_filled_in(
    package: BuiltPackage,
) -> None:
    for script in ("postinst", "prerm", "postrm"):
        path = package.control / script
        assert path.stat().st_mode & 0o111 == 0o111, script
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n"), script
        assert not re.search(r"@[A-Z_]+@", text), f"{script}: a placeholder is left"
        run("sh", "-n", path)  # dash on Debian
        if shutil.which("bash"):
            run("bash", "--posix", "-n", path)
    postinst = (package.control / "postinst").read_text()
    assert f"VERSION={__version__}-1\n" in postinst
    assert "/usr/bin/python3 -m venv" in postinst and "--no-index" in postinst


def test_the_wheels_install_offline_for_every_supported_python(
    package: BuiltPackage, tmp_path: Path
) -> None:
    """A complete, pinned set: pip resolves every target from the package's folder alone."""
    wheels = package.data / "opt/pockestrator/wheels"
    assert (wheels / "requirements.txt").read_text().split() == [f"pockestrator=={__version__}"]
    pins = (wheels / "constraints.txt").read_text().split()
    assert all(re.fullmatch(r"[A-Za-z0-9_.]+==[A-Za-z0-9_.+!]+", pin) for pin in pins), pins
    machine = os.uname().machine
    for version in PYTHON_VERSIONS:
        run(
            sys.executable, "-m", "pip", "download", "--quiet", "--no-index",
            "--isolated", "--find-links", wheels, "--only-binary=:all:",
            "--python-version", version, "--implementation", "cp",
            "--abi", f"cp{version.replace('.', '')}",
            "--platform", f"manylinux_2_28_{machine}", "--platform", f"manylinux2014_{machine}",
            "--platform", f"manylinux_2_17_{machine}", "--platform", f"manylinux1_{machine}",
            "--platform", f"manylinux_2_5_{machine}", "--platform", f"manylinux_2_26_{machine}",
            "--constraint", wheels / "constraints.txt",
            "--dest", tmp_path / version, "--requirement", wheels / "requirements.txt",
        )  # fmt: skip
        got = {path.name.split("-")[0].lower() for path in (tmp_path / version).glob("*.whl")}
        assert {"pockestrator", "aiohttp", "pydantic_core", "dbus_fast", "sdnotify"} <= got


# -- installed for real, in a throwaway root ----------------------------------------------

# Runs one command chrooted into an overlay of / whose upper layer is "$1/upper": the
# changes persist there between calls and nowhere else. $2 is the folder holding the .deb,
# bound at /mnt/pockestrator-test; the rest is the command.
_THROWAWAY_ROOT = r"""
set -e
layer="$1"; debs="$2"; shift 2
merged="$layer/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$layer/upper,workdir=$layer/work" "$merged"
mount -t proc proc "$merged/proc"
mount --rbind /dev "$merged/dev"
mount -t tmpfs tmpfs "$merged/run"
mount -t tmpfs tmpfs "$merged/tmp"
mkdir -p "$merged/mnt/pockestrator-test"
mount --bind "$debs" "$merged/mnt/pockestrator-test"
exec chroot "$merged" "$@"
"""


@dataclass(frozen=True)
class ThrowawayRoot:
    layer: Path
    debs: Path

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        environment = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
        }
        return run(
            "unshare", "-m", "--propagation", "private", "sh", "-c", _THROWAWAY_ROOT,
            "throwaway-root", self.layer, self.debs, *argv,
            check=check, env=environment, timeout=600,
        )  # fmt: skip

    def path(self, inside: str) -> str:
        """``stat`` of a path inside the root: ``<octal mode> <user> <group> <type>``."""
        done = self.run("stat", "-c", "%a %U %G %F", inside, check=False)
        return done.stdout.strip() if done.returncode == 0 else "absent"


def _dependencies_missing() -> list[str]:
    wanted = ["python3", "python3-venv", "systemd", "init-system-helpers", "util-linux"]
    done = subprocess.run(
        ["dpkg-query", "--show", "--showformat", "${Package} ${db:Status-Status}\n", *wanted],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0] for line in done.stdout.splitlines() if line.endswith(" installed")
    }
    return [name for name in wanted if name not in installed]


@pytest.fixture(scope="module")
def throwaway_root(
    package: BuiltPackage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThrowawayRoot]:
    reason = namespace_reason() or missing_tools("dpkg-query")
    if reason is None and "overlay" not in Path("/proc/filesystems").read_text():
        reason = "needs overlayfs"
    if reason is None and (absent := _dependencies_missing()):
        reason = f"the host lacks the package's dependencies: {', '.join(absent)}"
    if reason:
        pytest.skip(f"no throwaway root: {reason}")
    layer = tmp_path_factory.mktemp("root")
    for folder in ("upper", "work", "merged"):
        (layer / folder).mkdir()
    yield ThrowawayRoot(layer, package.deb.parent)
    shutil.rmtree(layer, ignore_errors=True)


def _deb_inside(package: BuiltPackage) -> str:
    return f"/mnt/pockestrator-test/{package.deb.name}"


def test_installing_creates_users_folders_and_a_venv_of_debians_python_and_enables_the_unit(
    throwaway_root: ThrowawayRoot, package: BuiltPackage
) -> None:
    root = throwaway_root
    installed = root.run("dpkg", "--install", _deb_inside(package))
    assert "installed and enabled, not started" in installed.stdout
    for user in ("pocketbase", "pockestrator"):
        entry = root.run("getent", "passwd", user).stdout.strip().split(":")
        assert entry[6] == "/usr/sbin/nologin", entry
    # The local socket's group, made if missing (as docker's postinst makes docker's).
    assert root.run("getent", "group", "pockestrator").stdout.startswith("pockestrator:")
    assert root.path("/var/lib/pockestrator/services") == "755 root root directory"
    assert root.path("/etc/caddy/pockestrator.d") == "755 root root directory"
    version = root.run(EXEC_START, "--version").stdout.strip()
    assert version == f"pockestrator {__version__}"
    base = root.run(
        f"{EXEC_START.rsplit('/', 1)[0]}/python", "-c", "import sys; print(sys.base_prefix)"
    )
    assert base.stdout.strip() == "/usr", "the environment must be built on Debian's python3"
    assert root.run("readlink", WANTED_BY).stdout.strip().endswith("/pockestrator.service")
    root.run("dpkg", "--verify", "pockestrator")  # every shipped file matches its md5sum
    verified = root.run(
        "systemd-analyze", "verify", "/usr/lib/systemd/system/pockestrator.service", check=False
    )
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


def test_an_upgrade_switches_to_a_new_venv_and_keeps_the_operators_choices(
    throwaway_root: ThrowawayRoot, package: BuiltPackage
) -> None:
    root = throwaway_root
    before = root.run("readlink", "/opt/pockestrator/venv").stdout.strip()
    assert before.startswith(f"venv-{__version__}-1-"), before
    root.run("sh", "-c", "echo '# edited by the operator' >> /etc/pockestrator/config.yaml")
    root.run("systemctl", "disable", "pockestrator.service")
    root.run("dpkg", "--install", _deb_inside(package))  # an upgrade to the same version
    assert root.path(WANTED_BY) == "absent", "the operator disabled it; upgrades keep that"
    after = root.run("readlink", "/opt/pockestrator/venv").stdout.strip()
    assert after != before
    assert root.run("ls", "/opt/pockestrator").stdout.split() == sorted(["venv", after, "wheels"])
    assert root.run(EXEC_START, "--version").returncode == 0
    config = root.run("cat", "/etc/pockestrator/config.yaml").stdout
    assert config.endswith("# edited by the operator\n")


def test_removing_keeps_config_state_and_service_data_and_drops_the_venv(
    throwaway_root: ThrowawayRoot,
) -> None:
    root = throwaway_root
    root.run(
        "sh", "-c",
        "echo db > /var/lib/pockestrator/pockestrator.db && "
        "mkdir -p /var/lib/pockestrator/services/notes/pb_data && "
        "echo data > /var/lib/pockestrator/services/notes/pb_data/data.db",
    )  # fmt: skip
    root.run("systemctl", "enable", "pockestrator.service")
    root.run("dpkg", "--remove", "pockestrator")
    assert root.path("/opt/pockestrator") == "absent"
    assert root.path("/usr/lib/systemd/system/pockestrator.service") == "absent"
    assert root.path(WANTED_BY) == "absent"
    assert root.path("/etc/pockestrator/config.yaml").endswith("regular file")
    assert root.path("/var/lib/pockestrator/pockestrator.db").endswith("regular file")
    assert root.path("/var/lib/pockestrator/services/notes/pb_data/data.db").endswith(
        "regular file"
    )


def test_installing_again_after_removal_enables_the_unit_as_a_first_installation_does(
    throwaway_root: ThrowawayRoot, package: BuiltPackage
) -> None:
    root = throwaway_root
    root.run("dpkg", "--install", _deb_inside(package))
    assert root.run("readlink", WANTED_BY).stdout.strip().endswith("/pockestrator.service")
    config = root.run("cat", "/etc/pockestrator/config.yaml").stdout
    assert config.endswith("# edited by the operator\n"), "removal keeps the conffile"


def test_purging_removes_the_agents_state_but_never_the_services_data(
    throwaway_root: ThrowawayRoot,
) -> None:
    root = throwaway_root
    root.run("dpkg", "--purge", "pockestrator")  # from installed: remove, then purge
    assert root.path(WANTED_BY) == "absent"
    for gone in ("/etc/pockestrator", "/var/lib/pockestrator/pockestrator.db",
                 "/var/lib/pockestrator/releases", "/var/cache/pockestrator"):  # fmt: skip
        assert root.path(gone) == "absent", gone
    data = "/var/lib/pockestrator/services/notes/pb_data/data.db"
    assert root.run("cat", data).stdout == "data\n"
    assert root.run("getent", "passwd", "pocketbase").returncode == 0
    status = root.run("dpkg-query", "--show", "pockestrator", check=False)
    assert status.returncode != 0  # dpkg has forgotten the package
